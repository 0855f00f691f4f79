package consul

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// A listing of a prefix is decoded as it arrives. The api package reads an
// answer whole before it decodes it (a shard of 1,000 lock keys answers
// about 420 KB), then decodes every value, although a watcher needs only the
// entries that changed since its last reading. ListPrefix still asks through
// the api package, so that its address, token, datacenter and headers
// apply, and the transport (streamed) decodes the body as it reads it:
// entries whose key and ModifyIndex are those of the last reading are taken
// from it, values and all. The api package is left an empty list to decode.

// listingKey marks the context of a request whose answer the transport
// decodes into a *listing.
type listingKey struct{}

// listing is a listing's answer, decoded by streamed.
type listing struct {
	last    []Entry // the last reading, sorted by key as Consul lists them
	since   uint64  // the index the last reading returned
	entries []Entry
}

// streamed decodes the answers to listings as they arrive (see listing).
type streamed struct{ next http.RoundTripper }

func (s *streamed) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(req)
	l, ok := req.Context().Value(listingKey{}).(*listing)
	if err != nil || !ok || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	defer resp.Body.Close()
	if index, err := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64); err != nil || index < l.since {
		// Consul's index went back: its state was replaced, and the same
		// index may now name another write.
		l.last = nil
	}
	if err := l.decode(resp.Body); err != nil {
		return nil, fmt.Errorf("reading the listing: %w", err)
	}
	resp.Body, resp.ContentLength = io.NopCloser(strings.NewReader("[]")), 2
	return resp, nil
}

// decode reads a JSON array of KV entries, one at a time.
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
		for len(last) > 0 && last[0].Key < p.Key {
			last = last[1:]
		}
		if len(last) > 0 && last[0].Key == p.Key && last[0].ModifyIndex == p.ModifyIndex {
			l.entries = append(l.entries, last[0]) // every change of an entry moves its ModifyIndex
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

// withListing marks ctx so that the answer is decoded into l.
func withListing(ctx context.Context, l *listing) context.Context {
	return context.WithValue(ctx, listingKey{}, l)
}
