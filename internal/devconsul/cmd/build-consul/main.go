// Command build-consul builds (or finds) the Consul binary that
// internal/devconsul runs, and prints its path. CI and the Makefile run it
// first so that the minutes-long first build is not charged to a test's
// timeout.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/excalibur/consul-elect/internal/devconsul"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	// Ctrl-C cancels the build and takes the compilers down with it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bin, err := devconsul.Binary(ctx, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Println(bin)
	return nil
}
