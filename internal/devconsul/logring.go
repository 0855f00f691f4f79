package devconsul

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// logLines is how many of the agent's last output lines are kept for errors.
const logLines = 200

// logRing receives the agent's stdout and stderr. It forwards everything to
// an optional writer and remembers the last logLines lines, so that a failed
// start or a crash can say what Consul itself complained about.
type logRing struct {
	mu      sync.Mutex
	forward io.Writer
	lines   []string // ring of complete lines
	next    int      // index in lines to overwrite once full
	partial []byte   // an unterminated last line
}

func newLogRing(forward io.Writer) *logRing {
	return &logRing{forward: forward}
}

func (r *logRing) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.forward != nil {
		// A broken caller-supplied writer must not stall or kill the agent's
		// output pipe, so its errors are ignored.
		_, _ = r.forward.Write(p)
	}
	data := p
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			r.partial = append(r.partial, data...)
			break
		}
		r.push(string(append(r.partial, data[:i]...)))
		r.partial = r.partial[:0]
		data = data[i+1:]
	}
	return len(p), nil
}

func (r *logRing) push(line string) {
	if len(r.lines) < logLines {
		r.lines = append(r.lines, line)
		return
	}
	r.lines[r.next] = line
	r.next = (r.next + 1) % logLines
}

// reset forgets the remembered lines (not the forwarding writer).
func (r *logRing) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines, r.next, r.partial = nil, 0, nil
}

// Tail returns the remembered lines, oldest first.
func (r *logRing) Tail() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for i := range r.lines {
		b.WriteString(r.lines[(r.next+i)%len(r.lines)])
		b.WriteByte('\n')
	}
	if len(r.partial) > 0 {
		b.Write(r.partial)
		b.WriteByte('\n')
	}
	return b.String()
}
