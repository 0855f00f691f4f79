package consul

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

// FuzzListingDecodesAsTheAPIPackage: a listing decoded as it arrives reads
// every answer the api package reads, to the same entries.
func FuzzListingDecodesAsTheAPIPackage(f *testing.F) {
	f.Add([]byte(`[{"LockIndex":1,"Key":"elect/r1","Flags":7165064483209186661,"Value":"eyJ2IjoxfQ==","Session":"4b5b5c5e-0000-0000-0000-000000000001","CreateIndex":12,"ModifyIndex":14}]`))
	f.Add([]byte(`[{"LockIndex":0,"Key":"elect/r1","Flags":0,"Value":null,"CreateIndex":12,"ModifyIndex":12},{"Key":"elect/r2","Value":""}]`))
	f.Add([]byte(`[{"Key":"a\u00e9","Value":"\u0041QI="}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[{"Key":"a","Value":12}]`))
	f.Add([]byte(`{"Key":"a"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var pairs []*api.KVPair
		if err := json.Unmarshal(data, &pairs); err != nil {
			return
		}
		var want []Entry
		for _, p := range pairs {
			if p == nil {
				return // never in Consul's answers; the api package's callers would fail on it
			}
			want = append(want, entryOf(p))
		}
		var l listing
		if err := l.decode(strings.NewReader(string(data))); err != nil {
			t.Fatalf("the api package reads %q, the listing does not: %v", data, err)
		}
		if (len(l.entries) > 0 || len(want) > 0) && !reflect.DeepEqual(l.entries, want) {
			t.Fatalf("%q: got %+v, want %+v", data, l.entries, want)
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestAListingAfterConsulsIndexWentBackDecodesEveryEntry: once Consul's
// state has been replaced, an index may name another write, so nothing of the
// last reading is reused.
func TestAListingAfterConsulsIndexWentBackDecodesEveryEntry(t *testing.T) {
	answer := `[{"Key":"elect/r1","Value":"bmV3","Session":"s-new","ModifyIndex":7}]`
	last := []Entry{{Key: "elect/r1", Value: []byte("old"), Session: "s-old", ModifyIndex: 7}}
	for _, c := range []struct {
		index string
		want  Entry
	}{
		{"9", last[0]}, // not back: the entry at index 7 is the one last read
		{"8", Entry{Key: "elect/r1", Value: []byte("new"), Session: "s-new", ModifyIndex: 7}},
	} {
		s := &streamed{next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			h := http.Header{}
			h.Set("X-Consul-Index", c.index)
			return &http.Response{StatusCode: http.StatusOK, Header: h, Body: io.NopCloser(strings.NewReader(answer))}, nil
		})}
		l := &listing{last: last, since: 9}
		req, _ := http.NewRequestWithContext(withListing(context.Background(), l), "GET", "http://agent/v1/kv/elect?recurse", nil)
		resp, err := s.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(resp.Body)
		if len(l.entries) != 1 || !reflect.DeepEqual(l.entries[0], c.want) || string(rest) != "[]" {
			t.Errorf("X-Consul-Index %s after 9: entries %+v, body left %q; want [%+v], []", c.index, l.entries, rest, c.want)
		}
	}
}
