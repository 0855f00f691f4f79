package consul_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/consul"
)

func FuzzDecodeValue(f *testing.F) {
	f.Add([]byte(`{"v":1,"candidate_id":"a","node":"n","acquired_at":"2026-01-02T03:04:05Z","metadata":{"k":"v"}}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Add([]byte(`{"v":1,"acquired_at":"not a time"}`))
	f.Add([]byte{0xff, 0xfe})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := consul.DecodeValue(data)
		if err != nil {
			return
		}
		// Whatever decodes must survive a round trip unchanged.
		again, err := consul.DecodeValue(consul.EncodeValue(v))
		if err != nil {
			t.Fatalf("re-decoding %+v: %v", v, err)
		}
		if len(data) > 0 && !again.AcquiredAt.Equal(v.AcquiredAt) {
			t.Fatalf("acquired_at changed: %v → %v", v.AcquiredAt, again.AcquiredAt)
		}
		again.AcquiredAt, v.AcquiredAt = time.Time{}, time.Time{}
		if len(data) > 0 && (again.CandidateID != v.CandidateID || again.Node != v.Node ||
			len(v.Metadata) > 0 && !reflect.DeepEqual(again.Metadata, v.Metadata)) {
			t.Fatalf("round trip changed %+v into %+v", v, again)
		}
	})
}
