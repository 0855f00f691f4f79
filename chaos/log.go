package chaos

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EventKind is what a leader's command says in the log.
type EventKind string

const (
	// Start is written once, when the command starts as leader.
	Start EventKind = "start"
	// Beat is written every few milliseconds while the command runs: a
	// command killed with SIGKILL cannot say that it stopped.
	Beat EventKind = "beat"
	// Stop is written when the command exits after SIGTERM.
	Stop EventKind = "stop"
)

// Event is one line of the leadership log: "KIND ID TOKEN UNIXNANOS".
type Event struct {
	Kind  EventKind
	ID    string // the candidate's id, CONSUL_ELECT_ID
	Token uint64 // the leadership's fencing token, CONSUL_ELECT_FENCING_TOKEN
	At    time.Time
}

// String is the event's line, without the newline.
func (e Event) String() string {
	return fmt.Sprintf("%s %s %d %d", e.Kind, e.ID, e.Token, e.At.UnixNano())
}

// ParseEvents parses a leadership log. A last line without its newline is
// ignored (its writer may have been killed, or be writing it now); any other
// line that does not parse is an error naming it.
func ParseEvents(data []byte) ([]Event, error) {
	var events []Event
	err := eachLine(data, func(n int, fields []string) error {
		if len(fields) < 4 {
			return fmt.Errorf("line %d: want KIND ID TOKEN UNIXNANOS, got %q", n, strings.Join(fields, " "))
		}
		kind := EventKind(fields[0])
		if kind != Start && kind != Beat && kind != Stop {
			return fmt.Errorf("line %d: unknown event %q", n, fields[0])
		}
		token, err := strconv.ParseUint(fields[2], 10, 64)
		if err != nil {
			return fmt.Errorf("line %d: token: %v", n, err)
		}
		at, err := strconv.ParseInt(fields[3], 10, 64)
		if err != nil {
			return fmt.Errorf("line %d: time: %v", n, err)
		}
		events = append(events, Event{Kind: kind, ID: fields[1], Token: token, At: time.Unix(0, at)})
		return nil
	})
	return events, err
}

// eachLine calls fn with the fields of every complete line of data, numbered
// from 1; empty lines are skipped.
func eachLine(data []byte, fn func(n int, fields []string) error) error {
	complete := data[:bytes.LastIndexByte(data, '\n')+1]
	n := 0
	for len(complete) > 0 {
		i := bytes.IndexByte(complete, '\n')
		line := complete[:i]
		complete = complete[i+1:]
		n++
		fields := strings.Fields(string(line))
		if len(fields) == 0 {
			continue
		}
		if err := fn(n, fields); err != nil {
			return err
		}
	}
	return nil
}

// LeaderLog writes one term's lines to the leadership log, each with one
// write(2) to a file opened with O_APPEND, so that lines of different
// processes never mix. It is safe for concurrent use.
type LeaderLog struct {
	mu      sync.Mutex
	file    *os.File
	id      string
	token   uint64
	stopped bool
}

// OpenLeaderLog opens the log at path for the term of candidate id with
// this fencing token.
func OpenLeaderLog(path, id string, token uint64) (*LeaderLog, error) {
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &LeaderLog{file: file, id: id, token: token}, nil
}

// Write appends a line of this kind, stamped now; after Stop, nothing.
func (l *LeaderLog) Write(kind EventKind) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return nil // no beat after the stop line
	}
	l.stopped = kind == Stop
	line := Event{Kind: kind, ID: l.id, Token: l.token, At: time.Now()}.String() + "\n"
	_, err := l.file.WriteString(line)
	return err
}

// Close closes the log's file.
func (l *LeaderLog) Close() error { return l.file.Close() }
