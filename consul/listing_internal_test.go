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

// FuzzListingDecodesAsTheAPIPackage: a listing reads every answer the api
// package reads, to the same entries, whether scan takes it or leaves it to
// decode.
func FuzzListingDecodesAsTheAPIPackage(f *testing.F) {
	f.Add([]byte(`[{"LockIndex":1,"Key":"elect/r1","Flags":7165064483209186661,"Value":"eyJ2IjoxfQ==","Session":"4b5b5c5e-0000-0000-0000-000000000001","CreateIndex":12,"ModifyIndex":14}]`))
	f.Add([]byte(`[{"LockIndex":0,"Key":"elect/r1","Flags":0,"Value":null,"CreateIndex":12,"ModifyIndex":12},{"Key":"elect/r2","Value":""}]`))
	f.Add([]byte(`[{"Key":"a\u00e9","Value":"\u0041QI="}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[{"Key":"a","Value":12}]`))
	f.Add([]byte(`{"Key":"a"}`))
	f.Add([]byte("[\n    {\n        \"LockIndex\": 1,\n        \"Key\": \"elect/r1\",\n        \"Flags\": 7,\n        \"Value\": \"eyJ2IjoxfQ==\",\n        \"Session\": \"s\",\n        \"Namespace\": \"default\",\n        \"CreateIndex\": 12,\n        \"ModifyIndex\": 14\n    }\n]\n"))
	f.Add([]byte(`[{"key":"a","VALUE":"QQ==","Key":"b","Value":null,"Value":""}]`))
	f.Add([]byte(`[{"Key":"a","ModifyIndex":18446744073709551615,"Flags":0},{"Key":"b","Flags":01}]`))
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
			t.Fatalf("%q: decoded %+v, want %+v", data, l.entries, want)
		}
		var scanned listing
		if scanned.scan(data) && (len(scanned.entries) > 0 || len(want) > 0) && !reflect.DeepEqual(scanned.entries, want) {
			t.Fatalf("%q: scanned %+v, want %+v", data, scanned.entries, want)
		}
	})
}

// FuzzTxnAnswerScansAsTheAPIPackage: a transaction's answer that scanTxn
// takes reads as the api package reads it.
func FuzzTxnAnswerScansAsTheAPIPackage(f *testing.F) {
	f.Add([]byte(`{"Results":[{"KV":{"LockIndex":1,"Key":"elect/r1","Flags":7,"Value":null,"Session":"s1","CreateIndex":12,"ModifyIndex":14}}],"Errors":null}`))
	f.Add([]byte("{\n    \"Results\": [\n        {\n            \"KV\": {\n                \"Key\": \"k\",\n                \"Value\": \"QQ==\",\n                \"ModifyIndex\": 3\n            }\n        }\n    ],\n    \"Errors\": null\n}\n"))
	f.Add([]byte(`{"Results":null,"Errors":null}`))
	f.Add([]byte(`{"Results":[{"KV":null}],"Errors":[{"OpIndex":0,"What":"x"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		results, ok := scanTxn(data)
		if !ok {
			return
		}
		var resp api.TxnResponse
		if err := json.Unmarshal(data, &resp); err != nil {
			t.Fatalf("scanTxn takes %q, the api package does not: %v", data, err)
		}
		if len(results) != len(resp.Results) {
			t.Fatalf("%q: scanned %d results, want %d", data, len(results), len(resp.Results))
		}
		for i, r := range resp.Results {
			if r == nil || r.KV == nil || !reflect.DeepEqual(entryOf(results[i].KV), entryOf(r.KV)) {
				t.Fatalf("%q: result %d scanned %+v, want %+v", data, i, results[i].KV, r)
			}
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
		if len(l.entries) != 1 || !reflect.DeepEqual(l.entries[0], c.want) || resp.StatusCode != http.StatusNotFound || len(rest) != 0 {
			t.Errorf("X-Consul-Index %s after 9: entries %+v, answer %d %q; want [%+v], the 404 of no keys", c.index, l.entries, resp.StatusCode, rest, c.want)
		}
	}
}

// TestAListingAsConsulWritesItIsScanned: scan takes a listing as Consul
// writes it (a dev agent indents it), and leaves one with an escape to decode.
func TestAListingAsConsulWritesItIsScanned(t *testing.T) {
	pretty := "[\n    {\n        \"LockIndex\": 1,\n        \"Key\": \"elect/r1\",\n        \"Flags\": 7,\n        \"Value\": \"eyJ2IjoxfQ==\",\n" +
		"        \"Session\": \"s1\",\n        \"CreateIndex\": 12,\n        \"ModifyIndex\": 14\n    },\n" +
		"    {\n        \"LockIndex\": 0,\n        \"Key\": \"elect/r2\",\n        \"Flags\": 7,\n        \"Value\": null,\n        \"CreateIndex\": 15,\n        \"ModifyIndex\": 15\n    }\n]\n"
	want := []Entry{
		{Key: "elect/r1", Value: []byte(`{"v":1}`), Flags: 7, Session: "s1", LockIndex: 1, ModifyIndex: 14},
		{Key: "elect/r2", Flags: 7, ModifyIndex: 15},
	}
	var l listing
	if !l.scan([]byte(pretty)) || !reflect.DeepEqual(l.entries, want) {
		t.Errorf("scanned %+v; want %+v", l.entries, want)
	}
	if l.scan([]byte(`[{"Key":"elect/a\u0026b","ModifyIndex":3}]`)) {
		t.Error("scan took a key with an escape; want it left to decode")
	}
}
