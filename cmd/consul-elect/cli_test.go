//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBadCommandLinesExitWithCode2NamingTheProblem(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want []string // each in the one-line error
	}{
		{[]string{}, []string{"Usage"}},
		{[]string{"elect"}, []string{`unknown command "elect"`}},
		{[]string{"run", "--", "true"}, []string{"--resource is required"}},
		{[]string{"run", "--resource", "r"}, []string{"COMMAND is missing"}},
		{[]string{"run", "--resource", "r", "--", "/no/such/command"}, []string{`COMMAND "/no/such/command"`}},
		{[]string{"run", "--resource", "r", "--ttl", "soon", "--", "true"}, []string{"--ttl"}},
		{[]string{"run", "--resource", "r", "--ttl", "500ms", "--", "true"}, []string{"--ttl is 500ms", "between 1s and 24h0m0s"}},
		// A kill grace set on the command line is taken as given, and
		// refused when it does not fit; the default gives way (run_test.go).
		{[]string{"run", "--resource", "r", "--ttl", "10s", "--kill-grace", "5s", "--", "true"},
			[]string{"--kill-grace is 5s", "between 0s and 3.9s for the fence window 10s (min(--ttl, --lock-delay))", "lower --kill-grace or raise --ttl and --lock-delay"}},
		{[]string{"run", "--resource", "r", "--lock-delay", "2m", "--", "true"}, []string{"--lock-delay is 2m0s"}},
		{[]string{"run", "--resource", "r", "--fast-failover", "--fast-failover-ttl", "2s", "--kill-grace", "5s", "--", "true"},
			[]string{"--kill-grace is 5s; with --fast-failover it must be at most 700ms for --fast-failover-ttl 2s", "lower --kill-grace or raise --fast-failover-ttl"}},
		{[]string{"run", "--resource", "r", "--fast-failover", "--fast-failover-ttl", "1m", "--", "true"},
			[]string{"--fast-failover-ttl is 1m0s; it must be between 1s and --ttl (30s)"}},
		{[]string{"run", "--resource", "r", "--fast-failover-ttl", "5s", "--", "true"}, []string{"--fast-failover-ttl is set without --fast-failover"}},
		{[]string{"run", "--resource", "r", "--fast-failover", "--datacenter", "dc2", "--", "true"}, []string{"--fast-failover cannot be used with --datacenter"}},
		{[]string{"run", "--resource", "r", "--kill-grace", "-1s", "--", "true"}, []string{"--kill-grace is -1s"}},
		{[]string{"run", "--resource", "r", "--id", strings.Repeat("x", 300), "--", "true"}, []string{"--id must be at most 256 characters"}},
		{[]string{"run", "--resource", "r", "--health-check", " check", "--", "true"}, []string{`--health-check " check" has leading or trailing spaces`}},
		{[]string{"run", "--resource", "r", "--timeout", "-1s", "--", "true"}, []string{"--timeout is -1s"}},
		// Every problem at once, each naming its flag.
		{[]string{"run", "--resource", "r", "--ttl", "500ms", "--lock-delay", "-1s", "--prefix", "/p", "--", "true"},
			[]string{"--ttl is 500ms", "--lock-delay is -1s", "--prefix"}},
		{[]string{"run", "--resource", "r", "--metrics-addr", "9100", "--", "true"}, []string{"--metrics-addr"}},
		{[]string{"run", "--resource", "r", "--service-port", "80", "--service-address", "10.0.0.1", "--", "true"},
			[]string{"--service-port is set without --service", "--service-address is set without --service"}},
		{[]string{"run", "--resource", "r", "--service", "web app", "--service-port", "70000", "--", "true"},
			[]string{`--service "web app" must have no spaces`, "--service-port is 70000"}},
		{[]string{"run", "--resource", "r", "--priority", "high", "--", "true"}, []string{"--priority"}},
		{[]string{"list", "--resource", "r"}, []string{"--resource"}},
		{[]string{"list", "--prefix", "/abs"}, []string{"--prefix"}},
		{[]string{"switchover"}, []string{"--resource is required"}},
		{[]string{"switchover", "--resource", "r", "--timeout", "0s"}, []string{"--timeout is 0s"}},
		{[]string{"run", "--resource", "r", "--no-such-flag", "--", "true"}, []string{"--no-such-flag"}},
		{[]string{"status", "--resource", "a/b"}, []string{"--resource", `'/'`}},
		{[]string{"status", "--resource", "r", "--prefix", "/abs"}, []string{"--prefix"}},
		{[]string{"status", "--resource", "r", "--address", "ftp://consul:8500"}, []string{"--address", "ftp"}},
		{[]string{"status", "--resource", "r", "--token", "t", "--token-file", tokenFile}, []string{"--token and --token-file"}},
		{[]string{"status", "--resource", "r", "--token-file", "/no/such/file"}, []string{"--token-file"}},
		{[]string{"watch", "--resource", "r", "--log-format", "xml"}, []string{`--log-format "xml"`}},
		{[]string{"watch", "--resource", "r", "--log-level", "loud"}, []string{`--log-level "loud"`}},
		{[]string{"release"}, []string{"--resource is required"}},
		{[]string{"status", "--resource", "r", "extra"}, []string{`unexpected argument "extra"`}},
		{[]string{"demo", "--log-format", "xml"}, []string{"--log-format"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := consulElect(t, "", tc.args...)
			if code != exitUsage {
				t.Fatalf("exit code %d, want %d; stdout %q, stderr %q", code, exitUsage, stdout, stderr)
			}
			if len(tc.args) > 0 && strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Fatalf("want a one-line error, got %q", stderr)
			}
			for _, want := range tc.want {
				if !strings.Contains(stderr, want) {
					t.Fatalf("stderr %q does not say %q", stderr, want)
				}
			}
		})
	}
}

func TestUnreachableConsulIsARuntimeError(t *testing.T) {
	unused := "http://" + freeAddress(t)
	for _, args := range [][]string{
		{"run", "--address", unused, "--resource", "r", "--", "true"},
		{"status", "--address", unused, "--resource", "r"},
		{"watch", "--address", unused, "--resource", "r"},
		{"release", "--address", unused, "--resource", "r", "--yes"},
		{"list", "--address", unused},
		{"switchover", "--address", unused, "--resource", "r", "--yes"},
	} {
		code, _, stderr := consulElect(t, "", args...)
		if code != exitRuntime || !strings.Contains(stderr, unused) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("consul-elect %s: exit %d, stderr %q; want 1 and one line naming %s", args[0], code, stderr, unused)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, command := range []string{"run", "status", "list", "watch", "switchover", "release", "demo", "version"} {
		code, stdout, stderr := consulElect(t, "", command, "--help")
		if code != 0 || !strings.Contains(stdout, "Usage: consul-elect "+command) {
			t.Errorf("%s --help: exit %d, stdout %q, stderr %q", command, code, stdout, stderr)
		}
	}
	_, help, _ := consulElect(t, "", "run", "--help")
	for _, flag := range []string{"--address", "--token", "--token-file", "--datacenter", "--prefix", "--resource",
		"--log-level", "--log-format", "--id", "--ttl", "--lock-delay", "--health-check", "--kill-grace", "--fast-failover",
		"--fast-failover-ttl", "--timeout", "--metrics-addr", "--priority", "--preempt", "--release-only", "--service", "--service-port",
		"--service-address"} {
		if !strings.Contains(help, "  "+flag+" ") && !strings.Contains(help, "  "+flag+"\n") {
			t.Errorf("run --help does not list %s:\n%s", flag, help)
		}
	}
	for _, signal := range []string{"SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"} {
		if !strings.Contains(help, signal) {
			t.Errorf("run --help does not say what %s does:\n%s", signal, help)
		}
	}
	_, statusHelp, _ := consulElect(t, "", "status", "--help")
	if !strings.Contains(statusHelp, "metadata") || !strings.Contains(statusHelp, "{} when there is none") {
		t.Errorf("status --help does not document the metadata key:\n%s", statusHelp)
	}
	_, releaseHelp, _ := consulElect(t, "", "release", "--help")
	if !strings.Contains(releaseHelp, "may still run") || !strings.Contains(releaseHelp, "consul-elect switchover") {
		t.Errorf("release --help does not say what it risks and what to use instead:\n%s", releaseHelp)
	}
	code, stdout, _ := consulElect(t, "", "version")
	if code != 0 || !strings.HasPrefix(stdout, "consul-elect ") {
		t.Errorf("version: exit %d, %q", code, stdout)
	}
}
