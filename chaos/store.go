//go:build unix

package chaos

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Store is a fenced store shared by processes: a write carries the writer's
// fencing token and is accepted only if no higher token has been accepted
// before. Every write, accepted or rejected, is recorded in order in a log.
//
// It lives in a directory: "state" holds the highest accepted token and is
// the flock(2) that orders writers; "writes" is the record. The lock is
// released by the kernel when a writer dies, even by SIGKILL. A writer frozen
// inside a write holds the lock until it is resumed, so writers should not
// block anything else on Write.
type Store struct {
	state *os.File
	log   *os.File
}

// OpenStore opens (creating if need be) the store in dir.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	state, err := os.OpenFile(filepath.Join(dir, storeState), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	log, err := os.OpenFile(filepath.Join(dir, storeLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		state.Close()
		return nil, err
	}
	return &Store{state: state, log: log}, nil
}

// Write stores a write by candidate id with token: accepted if token is at
// least the highest token accepted so far (the same leader writes many
// times), rejected otherwise.
func (s *Store) Write(id string, token uint64) (accepted bool, err error) {
	fd := int(s.state.Fd())
	for {
		err = syscall.Flock(fd, syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return false, fmt.Errorf("store: lock: %w", err)
	}
	defer func() { _ = syscall.Flock(fd, syscall.LOCK_UN) }()

	var buf [8]byte
	n, err := s.state.ReadAt(buf[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("store: read state: %w", err)
	}
	var highest uint64
	if n == len(buf) {
		highest = binary.BigEndian.Uint64(buf[:])
	}
	w := Write{Accepted: token >= highest, ID: id, Token: token, At: time.Now(), Highest: highest}
	if w.Accepted && token != highest {
		binary.BigEndian.PutUint64(buf[:], token)
		if _, err := s.state.WriteAt(buf[:], 0); err != nil {
			return false, fmt.Errorf("store: write state: %w", err)
		}
	}
	// The record follows the state: a writer killed in between leaves an
	// accepted write unrecorded, never a recorded one unapplied.
	if _, err := s.log.Write([]byte(w.String() + "\n")); err != nil {
		return false, fmt.Errorf("store: record: %w", err)
	}
	return w.Accepted, nil
}

// Close closes the store's files.
func (s *Store) Close() error {
	return errors.Join(s.state.Close(), s.log.Close())
}
