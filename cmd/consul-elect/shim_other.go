//go:build !linux

package main

import (
	"fmt"
	"os"
)

// shimMain exists on Linux only; elsewhere the command runs without a shim.
func shimMain([]string) int {
	fmt.Fprintln(os.Stderr, "consul-elect: "+shimCommand+" exists on Linux only")
	return exitUsage
}
