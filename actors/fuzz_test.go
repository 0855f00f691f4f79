package actors_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/excalibur/consul-elect/actors"
)

// keySafe reports whether s could be part of a Consul key path without
// surprises: printable ASCII, no spaces, no path games.
func keySafe(s string) bool {
	for _, r := range s {
		if r <= ' ' || r > '~' || strings.ContainsRune(`?#%\"'`, r) {
			return false
		}
	}
	return true
}

func FuzzValidateResource(f *testing.F) {
	for _, seed := range []string{"order-processor", "a.b_c-1", "", ".", "..", "a/b", "a b", "ä", strings.Repeat("x", 129), "%2e%2e"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, resource string) {
		err := actors.ValidateResource(resource)
		if err == nil {
			if resource == "" || resource == "." || resource == ".." || strings.Contains(resource, "/") ||
				len(resource) > 128 || !keySafe(resource) {
				t.Fatalf("accepted %q", resource)
			}
		} else if !strings.Contains(err.Error(), "resource") || !utf8.ValidString(err.Error()) && utf8.ValidString(resource) {
			t.Fatalf("error %q does not name the resource", err)
		}
	})
}

func FuzzValidatePrefix(f *testing.F) {
	for _, seed := range []string{"excalibur/leader-election", "a", "a//b", "/a", "a/", "a/../b", "a/./b", "a b/c", strings.Repeat("p/", 130)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, prefix string) {
		if actors.ValidatePrefix(prefix) != nil {
			return
		}
		if prefix == "" || len(prefix) > 256 || strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/") ||
			strings.Contains(prefix, "//") || !keySafe(prefix) {
			t.Fatalf("accepted %q", prefix)
		}
		for _, segment := range strings.Split(prefix, "/") {
			if segment == "." || segment == ".." {
				t.Fatalf("accepted %q with segment %q", prefix, segment)
			}
		}
	})
}
