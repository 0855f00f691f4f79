// Command consul-elect is leader election on HashiCorp Consul for operators:
// run a command only while leader, see and watch who leads and who stands
// by, hand leadership over safely, release a stuck lock, or try it all on a
// local agent with `consul-elect demo`.
//
//	consul-elect run --resource orders --priority 10 -- ./process-orders
//	consul-elect status --resource orders --json
//	consul-elect list
//	consul-elect switchover --resource orders --to host-b-4242
//
// `run` campaigns for <prefix>/<resource> and runs COMMAND while, and only
// while, it leads. The command gets CONSUL_ELECT_RESOURCE, CONSUL_ELECT_ID
// (the engine's candidate id: --id, else <hostname>-<pid>),
// CONSUL_ELECT_SESSION, CONSUL_ELECT_KEY and CONSUL_ELECT_FENCING_TOKEN; its
// stdin is /dev/null, its stdout and stderr are consul-elect's. When the
// leadership ends, the command gets SIGTERM and, --kill-grace later, SIGKILL,
// early enough to be gone before Consul could let another candidate in. On
// Linux no process of the command's tree outlives consul-elect, even when
// consul-elect is killed with SIGKILL (see shim_linux.go); elsewhere, run it
// under a service manager that stops the whole service.
//
// Every flag of `run` works with the others at their defaults. The flags'
// checks are actors.Options.Validate's, with the options named by their
// flags. When the default --kill-grace does not fit the fence window
// (min(--ttl, --lock-delay), and the --fast-failover check's TTL), the most
// that fits is used; --fast-failover without --fast-failover-ttl uses the
// shortest whole-second check TTL from 2s that leaves room for the kill
// grace. Both choices are logged at info. Only values set on the command line
// are refused.
//
// SIGINT, SIGTERM, SIGHUP and SIGQUIT end `run` the same way: stop the
// command, release the lock, destroy the session, exit 0, so that a standby
// takes over at once. `run --timeout D` gives up after D without having led:
// exit 1, the command never started.
//
// `run --priority N` ranks the candidates (higher leads first: a freed lock
// is left to the live, healthy candidate of highest priority); with
// `--preempt` a leader hands over, once its term has lasted
// actors.PreemptAfter, to such a candidate of higher priority that appears.
// `run --service NAME` registers the candidate as an instance of service NAME
// on the local agent, tagged "leader" while it leads and "standby"
// otherwise, so that clients find the leader through Consul
// (leader.NAME.service.consul). `--metrics-addr` serves /metrics, /healthz
// and /leader (200 on the leader only, for a load balancer's check).
//
// `status` and `watch` show the leader, its fencing token and the metadata
// it wrote (Options.Metadata, Election.Proclaim); `--json` always has a
// "metadata" object, {} when there is none. `status` shows the live
// candidates too (`--json`: "candidates"), and `list` shows every resource
// under the prefix, with its leader and candidates.
//
// `switchover` hands leadership over safely: the leader stops its command,
// then releases the lock, and the target (--to, else the healthy candidate
// of highest priority) takes over while the others hold back. `release` is
// for a stuck holder: it ends the term in Consul at once, but the holder
// hears of it only with its next blocking query, so its command may still
// run while another candidate's starts.
//
// Exit codes: 0 success, 1 a runtime error (Consul unreachable, a denied
// token, --timeout passed, a switchover refused), 2 a usage error (bad
// flags); `run` exits with its command's code when the command ends on its
// own.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// command is one subcommand. Its function parses args itself, so that every
// subcommand has its own flags and --help.
type command struct {
	name    string
	summary string
	run     func(env *cli, args []string) error
}

var commands = []command{
	{"run", "campaign for a resource and run a command while (and only while) leader", runCommand},
	{"status", "print who leads a resource now, and its candidates", statusCommand},
	{"list", "print every resource under the prefix: its leader and candidates", listCommand},
	{"watch", "print every change of a resource's leader until interrupted", watchCommand},
	{"switchover", "hand a resource's leadership over safely: the leader stops its command, then releases", switchoverCommand},
	{"release", "end a stuck holder's term at once; its command may still run (prefer switchover)", releaseCommand},
	{"demo", "start a local Consul agent and show three candidates failing over", demoCommand},
	{"version", "print the version", versionCommand},
}

// cli is what a subcommand talks to: the standard streams, injectable so
// that the same code serves the binary and its tests.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// usageError is a mistake in the command line: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitCodeError ends consul-elect with code, saying nothing more: `run`
// passes on its command's exit code this way.
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return fmt.Sprintf("exit code %d", e.code) }

func main() {
	if len(os.Args) > 1 && os.Args[1] == shimCommand {
		os.Exit(shimMain(os.Args[2:]))
	}
	os.Exit(execute(&cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:]))
}

// execute runs the subcommand named by args[0] and returns the exit code.
func execute(env *cli, args []string) int {
	if len(args) == 0 {
		printUsage(env.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		printUsage(env.stdout)
		return exitOK
	case "-version", "--version":
		name = "version"
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		err := c.run(env, args[1:])
		var usage *usageError
		var exit *exitCodeError
		switch {
		case err == nil:
			return exitOK
		case errors.As(err, &exit):
			return exit.code
		case errors.As(err, &usage):
			fmt.Fprintf(env.stderr, "consul-elect %s: %s (see consul-elect %s --help)\n", name, oneLine(err), name)
			return exitUsage
		default:
			fmt.Fprintf(env.stderr, "consul-elect %s: %s\n", name, oneLine(err))
			return exitRuntime
		}
	}
	fmt.Fprintf(env.stderr, "consul-elect: unknown command %q (see consul-elect --help)\n", name)
	return exitUsage
}

// oneLine keeps an error on one line: errors joined by errors.Join, or
// Consul's multi-line answers, would otherwise break it up.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `consul-elect: leader election on HashiCorp Consul.

Usage:
  consul-elect run --resource NAME [flags] -- COMMAND [ARGS...]
  consul-elect status --resource NAME [flags] [--json]
  consul-elect list [flags] [--json]
  consul-elect watch --resource NAME [flags] [--json]
  consul-elect switchover --resource NAME [flags] [--to ID] [--yes] [--timeout D]
  consul-elect release --resource NAME [flags] [--destroy-session] [--yes]
  consul-elect demo
  consul-elect version

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'consul-elect COMMAND --help' for a command's flags.
Exit codes: 0 success, 1 runtime error, 2 usage error; run exits with its
command's exit code when the command ends on its own, and 1 when --timeout
passes before it leads. SIGINT, SIGTERM, SIGHUP and SIGQUIT stop run: it
stops the command, releases the lock and exits 0.

To move leadership, use switchover: the leader stops its command before it
releases. release ends the term in Consul at once; the holder hears of it one
blocking query later, and its command may still run meanwhile.
`)
}
