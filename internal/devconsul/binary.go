package devconsul

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ConsulVersion is the Consul release the harness builds and runs unless
// $CONSUL_ELECT_CONSUL_VERSION names another.
const ConsulVersion = "v1.14.11"

// BinaryEnv names the environment variable that, when set, points at a
// ready-made consul binary and skips the build entirely.
const BinaryEnv = "CONSUL_ELECT_CONSUL_BIN"

// VersionEnv names the environment variable that selects another Consul
// release ("v1.15.6") to build and run instead of ConsulVersion, for running
// the tests against it once. Each version is built and cached on its own.
const VersionEnv = "CONSUL_ELECT_CONSUL_VERSION"

// Version is the Consul release that Binary builds and runs:
// $CONSUL_ELECT_CONSUL_VERSION, or ConsulVersion.
func Version() string {
	if v := strings.TrimSpace(os.Getenv(VersionEnv)); v != "" {
		if !strings.HasPrefix(v, "v") {
			v = "v" + v
		}
		return v
	}
	return ConsulVersion
}

// The tools module that pins ConsulVersion and all of its dependencies. The
// files carry a .txt suffix because a real go.mod inside this directory would make
// it a separate module, and go:embed cannot reach into another module.
var (
	//go:embed toolmod/go.mod.txt
	toolGoMod []byte
	//go:embed toolmod/go.sum.txt
	toolGoSum []byte
)

// toolsGo keeps the materialized module self-describing: with it, `go mod
// tidy` in the cache directory keeps Consul required instead of dropping it.
const toolsGo = `//go:build tools

package tools

import _ "github.com/hashicorp/consul"
`

// progressEvery is how often a long build reports that it is still alive.
const progressEvery = 15 * time.Second

// Binary returns the path of a runnable consul binary.
//
// In order of preference: $CONSUL_ELECT_CONSUL_BIN; the cached build in
// $XDG_CACHE_HOME (or ~/.cache)/consul-elect/consul-<Version()>/consul if it
// runs; otherwise Consul is built from the Go module proxy into that cache.
// The first build takes minutes, so progress lines are written to progress
// (which may be nil). A file lock keeps concurrent test binaries from
// building twice.
func Binary(ctx context.Context, progress io.Writer) (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		return p, nil
	}
	if progress == nil {
		progress = io.Discard
	}
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "consul")
	if binaryWorks(ctx, bin) {
		return bin, nil
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("devconsul: create cache dir: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, "build.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()

	// Whoever held the lock before us has probably just built it.
	if binaryWorks(ctx, bin) {
		return bin, nil
	}
	if err := build(ctx, dir, bin, progress); err != nil {
		return "", err
	}
	if !binaryWorks(ctx, bin) {
		return "", fmt.Errorf("devconsul: freshly built %s does not run `consul version`", bin)
	}
	return bin, nil
}

func cacheDir() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("devconsul: no cache dir: set XDG_CACHE_HOME or HOME, or %s: %w", BinaryEnv, err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "consul-elect", "consul-"+Version()), nil
}

// binaryWorks guards against a truncated or foreign file in the cache: only a
// binary that answers `consul version` with the selected version is reused.
func binaryWorks(ctx context.Context, bin string) bool {
	if _, err := os.Stat(bin); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	return err == nil && bytes.Contains(out, []byte("Consul "+Version()+"\n"))
}

// lockFile takes an exclusive flock, polling so that ctx can abort the wait.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("devconsul: open build lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("devconsul: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("devconsul: waiting for another Consul build (%s): %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// build materializes the tools module under dir/src and runs go build there,
// writing to a temporary name first so that a killed build never leaves a
// half-written binary where binaryWorks would look.
func build(ctx context.Context, dir, bin string, progress io.Writer) error {
	version := Version()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return fmt.Errorf("devconsul: %w", err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("devconsul: building Consul needs the go command on PATH (or set %s): %w", BinaryEnv, err)
	}
	goMod, goSum := toolGoMod, toolGoSum
	if version != ConsulVersion {
		if goMod, goSum, err = toolModuleFor(ctx, goTool, version); err != nil {
			return err
		}
	}
	for name, data := range map[string][]byte{
		"go.mod":   goMod,
		"go.sum":   goSum,
		"tools.go": []byte(toolsGo),
	} {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			return fmt.Errorf("devconsul: write tools module: %w", err)
		}
	}
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	defer os.Remove(tmp)

	var out tailBuffer
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", tmp, "github.com/hashicorp/consul")
	cmd.Dir = src
	// -mod=mod lets go fill in anything the embedded go.sum lacks instead of
	// failing; it goes last in GOFLAGS so it wins over an inherited -mod
	// while the caller's other flags still apply. GOWORK=off keeps a go.work
	// above the cache dir out of it.
	// `go env` rather than $GOFLAGS, to include flags set with `go env -w`,
	// which a GOFLAGS variable would otherwise replace.
	inherited, _ := exec.CommandContext(ctx, goTool, "env", "GOFLAGS").Output()
	goflags := strings.TrimSpace(string(inherited) + " -mod=mod")
	cmd.Env = append(os.Environ(), "GOFLAGS="+goflags, "GOWORK=off")
	cmd.Stdout = &out
	cmd.Stderr = &out
	// go build forks compilers; on cancellation take the whole group down,
	// and don't let the build outlive a killed caller.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second

	start := time.Now()
	msg := func() {
		fmt.Fprintf(progress, "building Consul %s from the Go module proxy (first time only, ~5 min on 2 cores)… %s\n",
			version, time.Since(start).Round(time.Second))
	}
	msg()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("devconsul: start go build: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ticker := time.NewTicker(progressEvery)
	defer ticker.Stop()
wait:
	for {
		select {
		case <-ticker.C:
			msg()
		case err = <-done:
			break wait
		}
	}
	if err != nil {
		return fmt.Errorf("devconsul: go build github.com/hashicorp/consul@%s in %s failed after %s: %w\n%s",
			version, src, time.Since(start).Round(time.Second), err, out.String())
	}
	if err := os.Rename(tmp, bin); err != nil {
		return fmt.Errorf("devconsul: install consul binary: %w", err)
	}
	fmt.Fprintf(progress, "built Consul %s in %s: %s\n", version, time.Since(start).Round(time.Second), bin)
	return nil
}

// toolModuleFor derives the tools module of a Consul version other than
// ConsulVersion from that release's own go.mod and go.sum, so that it builds
// with the dependency versions Consul was released with: the module line
// becomes ours and requires Consul, and the replace directives that point
// Consul's submodules (api, sdk, ...) at its source tree are dropped, so
// that the submodules come from the proxy at the versions Consul requires.
// Consul's exclude directives stay: a dependency's excludes do not apply.
// Its go.sum also vouches for dependencies the checksum database may lack.
func toolModuleFor(ctx context.Context, goTool, version string) (goMod, goSum []byte, err error) {
	cmd := exec.CommandContext(ctx, goTool, "mod", "download", "-json", "github.com/hashicorp/consul@"+version)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	cmd.Dir = os.TempDir()
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); jerr != nil || mod.Error != "" || mod.Dir == "" {
		return nil, nil, fmt.Errorf("devconsul: download github.com/hashicorp/consul@%s: %v %s", version, err, mod.Error)
	}
	upstream, err := os.ReadFile(filepath.Join(mod.Dir, "go.mod"))
	if err != nil {
		return nil, nil, fmt.Errorf("devconsul: %w", err)
	}
	if goSum, err = os.ReadFile(filepath.Join(mod.Dir, "go.sum")); err != nil {
		return nil, nil, fmt.Errorf("devconsul: %w", err)
	}
	return toolGoModFrom(upstream, version), goSum, nil
}

// toolGoModFrom is the tools module's go.mod for Consul version, made of
// Consul's own go.mod upstream.
func toolGoModFrom(upstream []byte, version string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "module consul-elect-tools/consul\n\ngo 1.26\n\nrequire github.com/hashicorp/consul %s\n", version)
	inReplace := false
	for _, line := range strings.Split(string(upstream), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case inReplace:
			inReplace = trimmed != ")"
		case trimmed == "replace (":
			inReplace = true
		case strings.HasPrefix(trimmed, "module "), strings.HasPrefix(trimmed, "go "),
			strings.HasPrefix(trimmed, "toolchain "), strings.HasPrefix(trimmed, "replace "):
		default:
			b.WriteString(line + "\n")
		}
	}
	return []byte(b.String())
}

// tailBuffer keeps only the end of go build's output: the error is at the
// end, and the download chatter before it can be megabytes.
type tailBuffer struct {
	buf []byte
}

const tailBufferMax = 8 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - tailBufferMax; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	s := string(t.buf)
	if len(t.buf) == tailBufferMax {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = "…" + s[i:]
		}
	}
	return s
}
