//go:build !linux

package main

import "go.uber.org/zap"

// prepared is what starts a term's command (see start in child_unix.go and
// child_windows.go). Without a supervising shim there is nothing to start
// ahead of the term.
type prepared struct {
	argv   []string
	logger *zap.Logger
}

func prepareChild(argv []string, logger *zap.Logger) (*prepared, error) {
	return &prepared{argv: argv, logger: logger}, nil
}

func (p *prepared) close() {}
