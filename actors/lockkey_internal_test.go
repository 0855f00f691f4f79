package actors

import "testing"

// TestIsLockKeyNeedsThePrefixAndASlash: a lock key is <prefix>/<resource>,
// and its resource is what follows the slash.
func TestIsLockKeyNeedsThePrefixAndASlash(t *testing.T) {
	for _, c := range []struct {
		key      string
		lock     bool
		resource string
	}{
		{"elect/orders", true, "orders"},
		{"elect/shard-00001", true, "shard-00001"},
		{"electorders", false, ""},
		{"/orders", false, ""}, // not under the prefix, though it has a slash
		{"other/orders", false, ""},
		{"elect/", false, ""},
	} {
		if got := isLockKey("elect", c.key); got != c.lock {
			t.Errorf("isLockKey(elect, %q) = %v, want %v", c.key, got, c.lock)
		}
		if c.lock {
			if got := resourceOf("elect", c.key); got != c.resource {
				t.Errorf("resourceOf(elect, %q) = %q, want %q", c.key, got, c.resource)
			}
		}
	}
}
