package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
)

// FleetCandidateArg, as the first argument of a program, makes it one
// candidate process of figure 7: the program passes the arguments after it
// to RunFleetCandidate. electbench and this package's test binary both
// re-execute themselves this way.
const FleetCandidateArg = "-fleet-candidate"

// Bounds of a fleet candidate's own calls.
const (
	fleetStartTimeout = 30 * time.Second // Start: reach Consul, create the session
	fleetStopTimeout  = 60 * time.Second // Stop: release up to K keys, destroy the session
	// fleetErrorLines is how many ElectionError events a candidate reports
	// in full; the rest are only counted.
	fleetErrorLines = 20
)

// fleetLine is one JSON line of the conversation between the harness and a
// fleet candidate, on the candidate's stdout:
//
//	ready    Start returned (Took)
//	fail     Start failed (Err); the process exits 1
//	acq      LeadershipAcquired of R (At, Session)
//	lost     LeadershipLost of R (At, Why)
//	err      ElectionError (R, Why: the op, Err), the first fleetErrorLines
//	counts   the answer to "snap SEQ" on stdin (Seq, Counts)
//	stopped  after SIGTERM (or stdin closed): Stop took Took; Before and
//	         Counts are the counters just before and after Stop, Err its error
//
// At is the event's own At (the engine's clock, which is the host's: the
// harness compares it with its own time.Now).
type fleetLine struct {
	T       string       `json:"t"`
	R       string       `json:"r,omitempty"`
	At      int64        `json:"at,omitempty"` // Unix nanoseconds
	Session string       `json:"s,omitempty"`
	Why     string       `json:"why,omitempty"`
	Err     string       `json:"err,omitempty"`
	Took    int64        `json:"took,omitempty"` // nanoseconds
	Seq     int          `json:"seq,omitempty"`
	Counts  *fleetCounts `json:"counts,omitempty"`
	Before  *fleetCounts `json:"before,omitempty"`
}

// fleetCounts is what a candidate counted since it started, but for
// PeakInFlight, which is the peak since the previous fleetCounts.
type fleetCounts struct {
	HTTP         Counts        // requests, 429s, transport errors, bytes read, by endpoint
	PeakInFlight int64         // most requests in flight at once (Meter.TakePeakInFlight)
	PeakRSS      int64         // VmHWM, bytes
	CPU          time.Duration // user + system
	Acquired     int64         // LeadershipAcquired events
	Lost         int64         // LeadershipLost events
	Changed      int64         // LeaderChanged events
	Errors       int64         // ElectionError events
	// Refused is the 429 answers that came on an idle connection, before
	// any request was sent on it: the agent refusing a connection over its
	// http_max_conns_per_client. net/http only logs them ("Unsolicited
	// response received on idle HTTP channel"); no RoundTrip sees them.
	Refused int64
}

// httpLog is the standard logger's output in a candidate: it counts
// net/http's unsolicited 429 answers and passes every other line to
// stderr.
type httpLog struct{ refused atomic.Int64 }

func (l *httpLog) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("Unsolicited response")) && bytes.Contains(p, []byte(" 429 ")) {
		l.refused.Add(1)
		return len(p), nil
	}
	return os.Stderr.Write(p)
}

// lineWriter writes fleetLines to the harness; events are flushed every
// few milliseconds (their time is in them), answers at once.
type lineWriter struct {
	mu  sync.Mutex
	w   *bufio.Writer
	enc *json.Encoder
}

func newLineWriter(w io.Writer) *lineWriter {
	bw := bufio.NewWriterSize(w, 64<<10)
	return &lineWriter{w: bw, enc: json.NewEncoder(bw)}
}

func (l *lineWriter) write(line fleetLine, flush bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.enc.Encode(line)
	if flush {
		_ = l.w.Flush()
	}
}

func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.w.Flush()
}

// RunFleetCandidate is one candidate process of figure 7: a consulelect
// Election (the Go API) for K resources, with its own counted Consul client,
// that reports its events and counters as JSON lines (fleetLine) on stdout
// and answers "snap SEQ" lines on stdin. SIGTERM, SIGINT or the end of stdin
// stop it: Stop releases its keys and destroys its session. It returns the
// process's exit code.
//
// Flags: -consul URL, -prefix KEYPREFIX, -id CANDIDATE, -k RESOURCES,
// -options JSON (decoded over consulelect.DefaultOptions()).
func RunFleetCandidate(args []string, stdin io.Reader, stdout io.Writer) int {
	flags := flag.NewFlagSet("fleet-candidate", flag.ContinueOnError)
	url := flags.String("consul", "", "the agent's URL")
	prefix := flags.String("prefix", "", "KeyPrefix")
	id := flags.String("id", "", "CandidateID")
	k := flags.Int("k", 1, "resources to campaign for (r00000 …)")
	options := flags.String("options", "", "JSON decoded over consulelect.DefaultOptions()")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	out := newLineWriter(stdout)
	defer out.flush()
	fail := func(err error) int {
		out.write(fleetLine{T: "fail", Err: err.Error()}, true)
		return 1
	}

	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stopSignals()

	opts := consulelect.DefaultOptions()
	if *options != "" {
		if err := json.Unmarshal([]byte(*options), &opts); err != nil {
			return fail(fmt.Errorf("-options: %w", err))
		}
	}
	opts.ConsulAddress, opts.KeyPrefix, opts.CandidateID = *url, *prefix, *id
	opts.Resources = resourceNames(*k)
	meter := NewMeter()
	ccfg := opts.ConsulConfig()
	ccfg.WrapTransport = meter.Wrap
	client, err := consul.NewClient(ccfg)
	if err != nil {
		return fail(err)
	}
	defer client.Close()
	opts.Backend = client

	stdLog := &httpLog{}
	log.SetOutput(stdLog)
	var acquired, lost, changed, errs atomic.Int64
	counts := func() *fleetCounts {
		cpu, _ := cpuTime("self")
		return &fleetCounts{HTTP: meter.Snapshot(), PeakInFlight: meter.TakePeakInFlight(), PeakRSS: vmHWM("self"), CPU: cpu,
			Acquired: acquired.Load(), Lost: lost.Load(), Changed: changed.Load(), Errors: errs.Load(), Refused: stdLog.refused.Load()}
	}

	t0 := time.Now()
	startCtx, cancel := context.WithTimeout(ctx, fleetStartTimeout)
	e, err := consulelect.Start(startCtx, opts)
	cancel()
	if err != nil {
		return fail(err)
	}
	out.write(fleetLine{T: "ready", Took: int64(time.Since(t0))}, true)

	drained := make(chan struct{})
	go func() {
		defer close(drained)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		events := e.Events()
		for {
			select {
			case evt, ok := <-events:
				if !ok {
					return
				}
				reportEvent(out, evt, &acquired, &lost, &changed, &errs)
			case <-tick.C:
				out.flush()
			}
		}
	}()

	stdinDone := make(chan struct{})
	go func() {
		defer close(stdinDone)
		scanner := bufio.NewScanner(stdin)
		for scanner.Scan() {
			if seq, ok := strings.CutPrefix(scanner.Text(), "snap "); ok {
				n, _ := strconv.Atoi(seq)
				out.write(fleetLine{T: "counts", Seq: n, Counts: counts()}, true)
			}
		}
	}()
	select {
	case <-ctx.Done():
	case <-stdinDone:
	}

	before := counts()
	t1 := time.Now()
	stopCtx, cancel := context.WithTimeout(context.Background(), fleetStopTimeout)
	err = e.Stop(stopCtx)
	cancel()
	took := time.Since(t1)
	<-drained // Events is closed after Stop: every event has been written
	line := fleetLine{T: "stopped", Took: int64(took), Before: before, Counts: counts()}
	if err != nil {
		line.Err = err.Error()
	}
	out.write(line, true)
	return 0
}

func reportEvent(out *lineWriter, evt messages.Event, acquired, lost, changed, errs *atomic.Int64) {
	at := func(t time.Time) int64 {
		if t.IsZero() {
			t = time.Now()
		}
		return t.UnixNano()
	}
	switch e := evt.(type) {
	case messages.LeadershipAcquired:
		acquired.Add(1)
		out.write(fleetLine{T: "acq", R: e.Resource, At: at(e.At), Session: e.Session}, false)
	case messages.LeadershipLost:
		lost.Add(1)
		out.write(fleetLine{T: "lost", R: e.Resource, At: at(e.At), Why: string(e.Reason)}, false)
	case messages.LeaderChanged:
		changed.Add(1)
	case messages.ElectionError:
		if errs.Add(1) <= fleetErrorLines {
			out.write(fleetLine{T: "err", R: e.Resource, At: at(e.At), Why: e.Op, Err: fmt.Sprint(e.Err)}, false)
		}
	}
}
