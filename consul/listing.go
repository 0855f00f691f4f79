package consul

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/hashicorp/consul/api"
)

// A listing of a prefix is decoded by the transport, not by the api package,
// which decodes every entry and value by reflection (a shard of 1,000 lock
// keys answers about 420 KB), although a watcher needs only the entries that
// changed since its last reading. ListPrefix still asks through the api
// package, so that its address, token, datacenter and headers apply. The
// transport (streamed) reads the body into a buffer it reuses and scans it:
// entries whose key and ModifyIndex are those of the last reading are taken
// from it, values and all, and only the others are copied out. The api
// package is left what Consul answers for a prefix without keys, a 404 and
// its headers, which it reads without decoding a body.

// listingKey marks the context of a request whose answer the transport
// decodes into a *listing.
type listingKey struct{}

// listing is a listing's answer, decoded by streamed.
type listing struct {
	last    []Entry // the last reading, sorted by key as Consul lists them
	since   uint64  // the index the last reading returned
	entries []Entry
}

// streamed decodes the answers to listings (see listing) and to
// transactions (see txnAnswer).
type streamed struct{ next http.RoundTripper }

func (s *streamed) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	if t, ok := req.Context().Value(txnKey{}).(*txnAnswer); ok {
		return t.read(resp)
	}
	l, ok := req.Context().Value(listingKey{}).(*listing)
	if !ok {
		return resp, nil
	}
	defer resp.Body.Close()
	if index, err := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64); err != nil || index < l.since {
		// Consul's index went back: its state was replaced, and the same
		// index may now name another write.
		l.last = nil
	}
	buf, err := readPooled(resp.Body)
	defer bodies.Put(buf)
	if err != nil {
		return nil, fmt.Errorf("reading the listing: %w", err)
	}
	if !l.scan(buf.Bytes()) {
		if err := l.decode(bytes.NewReader(buf.Bytes())); err != nil {
			return nil, fmt.Errorf("reading the listing: %w", err)
		}
	}
	resp.StatusCode, resp.Status = http.StatusNotFound, "404 Not Found"
	resp.Body, resp.ContentLength = http.NoBody, 0
	return resp, nil
}

// txnKey marks the context of a transaction whose answer the transport
// scans into a *txnAnswer.
type txnKey struct{}

// txnAnswer is a transaction's results, scanned by streamed from an answer
// as Consul writes it; when scanned is false the api package decodes the
// answer itself.
type txnAnswer struct {
	results api.TxnResults
	scanned bool
}

// read scans resp's body into t; an answer it cannot scan is left whole
// for the api package.
func (t *txnAnswer) read(resp *http.Response) (*http.Response, error) {
	defer resp.Body.Close()
	buf, err := readPooled(resp.Body)
	defer bodies.Put(buf)
	if err != nil {
		return nil, fmt.Errorf("reading the transaction's answer: %w", err)
	}
	if t.results, t.scanned = scanTxn(buf.Bytes()); t.scanned {
		resp.Body, resp.ContentLength = io.NopCloser(strings.NewReader("{}")), 2
	} else {
		resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(bytes.Clone(buf.Bytes()))), int64(buf.Len())
	}
	return resp, nil
}

// scanTxn scans the answer of a transaction of KV operations, as Consul
// writes it: {"Results": [{"KV": entry}, ...], "Errors": null}.
func scanTxn(b []byte) (api.TxnResults, bool) {
	s := scanner{b: b}
	if !s.byte('{') {
		return nil, false
	}
	var results api.TxnResults
	for first := true; !s.byte('}'); first = false {
		name, ok := s.field(first)
		if !ok {
			return nil, false
		}
		switch {
		case string(name) == "Errors" && s.literal("null"): // a rolled-back transaction answers 409
		case string(name) == "Results" && s.literal("null"):
			results = nil
		case string(name) == "Results" && s.byte('['):
			results = nil
			for first := true; !s.byte(']'); first = false {
				if !first && !s.byte(',') || !s.byte('{') {
					return nil, false
				}
				if kind, ok := s.str(); !ok || string(kind) != "KV" || !s.byte(':') {
					return nil, false
				}
				raw, ok := s.entry()
				if !ok || !s.byte('}') {
					return nil, false
				}
				e, ok := raw.copy()
				if !ok {
					return nil, false
				}
				results = append(results, &api.TxnResult{KV: &api.KVPair{Key: e.Key, Value: e.Value, Flags: e.Flags,
					Session: e.Session, LockIndex: e.LockIndex, ModifyIndex: e.ModifyIndex}})
			}
		default:
			return nil, false
		}
	}
	return results, s.end()
}

// decode reads a JSON array of KV entries with encoding/json.
func (l *listing) decode(body io.Reader) error {
	dec := json.NewDecoder(body)
	if t, err := dec.Token(); err != nil || t == nil { // null: no entries
		return err
	} else if t != json.Delim('[') {
		return fmt.Errorf("want a JSON array, got %v", t)
	}
	var p struct {
		Key                           string
		Flags, LockIndex, ModifyIndex uint64
		Session                       string
		Value                         json.RawMessage // base64, or null
	}
	last := l.last
	l.entries = make([]Entry, 0, len(last))
	for dec.More() {
		p.Key, p.Flags, p.LockIndex, p.ModifyIndex, p.Session, p.Value = "", 0, 0, 0, "", p.Value[:0]
		if err := dec.Decode(&p); err != nil {
			return err
		}
		var reused bool
		if last, reused = l.reuse(last, []byte(p.Key), p.ModifyIndex); reused {
			continue
		}
		var value []byte
		if len(p.Value) > 0 {
			if err := json.Unmarshal(p.Value, &value); err != nil {
				return fmt.Errorf("the value of %s: %w", p.Key, err)
			}
		}
		l.entries = append(l.entries, Entry{Key: p.Key, Value: value, Flags: p.Flags, Session: p.Session,
			LockIndex: p.LockIndex, ModifyIndex: p.ModifyIndex})
	}
	_, err := dec.Token() // ]
	return err
}

// bodies are the buffers answers are read into.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readPooled reads body whole into a buffer of bodies, to be put back there.
func readPooled(body io.Reader) (*bytes.Buffer, error) {
	buf := bodies.Get().(*bytes.Buffer)
	buf.Reset()
	_, err := buf.ReadFrom(body)
	return buf, err
}

// reuse appends to l.entries the entry of the last reading with key and
// modifyIndex, if there is one; last is what is left of the last reading,
// sorted by key.
func (l *listing) reuse(last []Entry, key []byte, modifyIndex uint64) ([]Entry, bool) {
	for len(last) > 0 && last[0].Key < string(key) {
		last = last[1:]
	}
	if len(last) > 0 && last[0].Key == string(key) && last[0].ModifyIndex == modifyIndex {
		l.entries = append(l.entries, last[0]) // every change of an entry moves its ModifyIndex
		return last, true
	}
	return last, false
}

// scan decodes b as Consul writes a listing, without reflection, and
// reports whether it could: anything else (a string with an escape, a field
// named in another case, a number that is not a plain unsigned integer) is
// left to decode, which reads JSON as the api package does.
func (l *listing) scan(b []byte) bool {
	s := scanner{b: b}
	if s.literal("null") {
		l.entries = nil
		return s.end()
	}
	if !s.byte('[') {
		return false
	}
	last := l.last
	l.entries = make([]Entry, 0, len(last))
	for first := true; !s.byte(']'); first = false {
		if !first && !s.byte(',') {
			return false
		}
		raw, ok := s.entry()
		if !ok {
			return false
		}
		var reused bool
		if last, reused = l.reuse(last, raw.key, raw.ModifyIndex); reused {
			continue
		}
		e, ok := raw.copy()
		if !ok {
			return false
		}
		l.entries = append(l.entries, e)
	}
	return s.end()
}

// rawEntry is an entry as scanned, its strings still in the scanned bytes.
type rawEntry struct {
	Entry               // its numbers
	key, session, value []byte
	valueNull           bool
}

// copy is the entry, its strings copied out and its value decoded.
func (r *rawEntry) copy() (Entry, bool) {
	e := r.Entry
	e.Key, e.Session = string(r.key), string(r.session)
	if !r.valueNull {
		e.Value = make([]byte, base64.StdEncoding.DecodedLen(len(r.value)))
		n, err := base64.StdEncoding.Decode(e.Value, r.value)
		if err != nil {
			return Entry{}, false
		}
		e.Value = e.Value[:n]
	}
	return e, true
}

// entry reads one KV entry, a JSON object, as encoding/json would read it
// into an api.KVPair: a field given twice keeps the last, null leaves a
// string or a number as it was and makes the value nil.
func (s *scanner) entry() (rawEntry, bool) {
	r := rawEntry{valueNull: true}
	if !s.byte('{') {
		return r, false
	}
	for first := true; !s.byte('}'); first = false {
		name, ok := s.field(first)
		if !ok {
			return r, false
		}
		var text *[]byte
		var number *uint64
		switch string(name) {
		case "Key":
			text = &r.key
		case "Session":
			text = &r.session
		case "Flags":
			number = &r.Flags
		case "LockIndex":
			number = &r.LockIndex
		case "ModifyIndex":
			number = &r.ModifyIndex
		}
		switch {
		case text != nil && !s.literal("null"):
			v, ok := s.str()
			if !ok {
				return r, false
			}
			*text = v
		case number != nil && !s.literal("null"):
			n, ok := s.uint()
			if !ok {
				return r, false
			}
			*number = n
		case text != nil, number != nil: // null: left as it was
		case string(name) == "Value":
			if s.literal("null") {
				r.value, r.valueNull = nil, true
				continue
			}
			v, ok := s.str()
			if !ok {
				return r, false
			}
			r.value, r.valueNull = v, false
		case foldsTo(name, "Key", "Session", "Flags", "LockIndex", "ModifyIndex", "Value"):
			return r, false
		default:
			if !s.skip() {
				return r, false
			}
		}
	}
	return r, true
}

// foldsTo reports whether name is one of names in another case, which
// encoding/json would take for it.
func foldsTo(name []byte, names ...string) bool {
	for _, n := range names {
		if bytes.EqualFold(name, []byte(n)) {
			return true
		}
	}
	return false
}

// scanner reads the JSON of a listing from b.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\n' || s.b[s.i] == '\t' || s.b[s.i] == '\r') {
		s.i++
	}
}

// byte consumes c, after white space, if it comes next.
func (s *scanner) byte(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) literal(word string) bool {
	s.space()
	if bytes.HasPrefix(s.b[s.i:], []byte(word)) {
		s.i += len(word)
		return true
	}
	return false
}

// end reports whether only white space is left.
func (s *scanner) end() bool {
	s.space()
	return s.i == len(s.b)
}

// field reads the name of an object's next field and the colon after it,
// after a comma unless it is the first.
func (s *scanner) field(first bool) ([]byte, bool) {
	if !first && !s.byte(',') {
		return nil, false
	}
	name, ok := s.str()
	return name, ok && s.byte(':')
}

// str reads a string without escapes, in valid UTF-8.
func (s *scanner) str() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			return v, utf8.Valid(v)
		case c == '\\' || c < 0x20:
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// uint reads a plain unsigned integer.
func (s *scanner) uint() (uint64, bool) {
	s.space()
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	if s.i == start || s.b[start] == '0' && s.i-start > 1 {
		return 0, false
	}
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return 0, false
	}
	n, err := strconv.ParseUint(string(s.b[start:s.i]), 10, 64)
	return n, err == nil
}

// skip reads a value of a field the listing does not keep: a string
// without escapes, a plain unsigned integer, or a literal.
func (s *scanner) skip() bool {
	if _, ok := s.str(); ok {
		return true
	}
	if _, ok := s.uint(); ok {
		return true
	}
	return s.literal("null") || s.literal("true") || s.literal("false")
}

// withListing marks ctx so that the answer is decoded into l.
func withListing(ctx context.Context, l *listing) context.Context {
	return context.WithValue(ctx, listingKey{}, l)
}
