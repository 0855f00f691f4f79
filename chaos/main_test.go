package chaos

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// binaries are the programs under test, built once per test binary by the
// first chaos test that needs them.
var binaries struct {
	once        sync.Once
	dir         string
	consulElect string
	child       string
	api         string // chaos/cmd/apicandidate
	err         error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binaries.dir != "" {
		_ = os.RemoveAll(binaries.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			code = 1
		}
	}
	os.Exit(code)
}
