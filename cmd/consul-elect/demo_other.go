//go:build !linux

package main

import "errors"

// The demo's Consul harness (internal/devconsul) controls the agent with
// Linux process calls.
func demoCommand(*cli, []string) error {
	return errors.New("demo runs on Linux only; elsewhere, start a Consul dev agent (consul agent -dev) and use run, status and watch against it")
}
