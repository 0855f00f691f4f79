package actors_test

import (
	"strings"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/actors"
)

func TestInvalidOptionsNameTheOptionAndTheAllowedRange(t *testing.T) {
	cases := []struct {
		name string
		edit func(*actors.Options)
		want string // a fragment the error must contain
	}{
		{"zero TTL", func(o *actors.Options) { o.SessionTTL = 0 }, "SessionTTL is 0s; it must be between 1s and 24h0m0s"},
		{"negative TTL", func(o *actors.Options) { o.SessionTTL = -time.Second }, "SessionTTL"},
		{"huge TTL", func(o *actors.Options) { o.SessionTTL = 25 * time.Hour }, "SessionTTL"},
		{"negative lock-delay", func(o *actors.Options) { o.LockDelay = -1 }, "LockDelay is -1ns; it must be between 0s and 1m0s"},
		{"huge lock-delay", func(o *actors.Options) { o.LockDelay = time.Hour }, "LockDelay"},
		{"margin too large", func(o *actors.Options) { o.SelfFenceMargin = 20 * time.Second }, "SelfFenceMargin"},
		{"empty prefix", func(o *actors.Options) { o.KeyPrefix = "" }, "KeyPrefix: the key prefix is empty"},
		{"leading slash", func(o *actors.Options) { o.KeyPrefix = "/a" }, "KeyPrefix"},
		{"trailing slash", func(o *actors.Options) { o.KeyPrefix = "a/" }, "KeyPrefix"},
		{"double slash", func(o *actors.Options) { o.KeyPrefix = "a//b" }, "KeyPrefix"},
		{"dot-dot", func(o *actors.Options) { o.KeyPrefix = "a/../b" }, "KeyPrefix"},
		{"space in prefix", func(o *actors.Options) { o.KeyPrefix = "a b" }, "KeyPrefix"},
		{"empty resource", func(o *actors.Options) { o.Resources = []string{""} }, "Resources: the resource name is empty"},
		{"slash in resource", func(o *actors.Options) { o.Resources = []string{"a/b"} }, "Resources"},
		{"dot-dot resource", func(o *actors.Options) { o.Resources = []string{".."} }, "Resources"},
		{"long resource", func(o *actors.Options) { o.Resources = []string{strings.Repeat("r", 200)} }, "Resources"},
		{"bad scheme", func(o *actors.Options) { o.ConsulAddress = "ftp://localhost:8500" }, `ConsulAddress: "ftp://localhost:8500" has scheme "ftp"`},
		{"no host", func(o *actors.Options) { o.ConsulAddress = "http://" }, "ConsulAddress"},
		{"token and file", func(o *actors.Options) { o.Token, o.TokenFile = "t", "/f" }, "Token and TokenFile"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := actors.DefaultOptions()
			tc.edit(&opts)
			err := opts.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v; want an error containing %q", err, tc.want)
			}
			if _, err := actors.NewProps(opts); err == nil {
				t.Fatal("NewProps accepted options Validate refuses")
			}
		})
	}
	if err := actors.DefaultOptions().Validate(); err != nil {
		t.Fatalf("the defaults are invalid: %v", err)
	}
}

func TestMissingFilesAreNamedWhenTheClientIsBuilt(t *testing.T) {
	for _, tc := range []struct {
		edit func(*actors.Options)
		want string
	}{
		{func(o *actors.Options) { o.TLS.CAFile = "/no/such/ca.pem" }, "TLS.CAFile"},
		{func(o *actors.Options) { o.TLS.CertFile = "/no/such/cert.pem" }, "TLS.CertFile"},
		{func(o *actors.Options) { o.TokenFile = "/no/such/token" }, "TokenFile"},
	} {
		opts := actors.DefaultOptions()
		tc.edit(&opts)
		if _, err := actors.NewProps(opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewProps = %v; want an error naming %s", err, tc.want)
		}
	}
}
