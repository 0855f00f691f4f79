package consul

import "testing"

func TestOnThisHostKnowsLoopbackAddresses(t *testing.T) {
	for address, want := range map[string]bool{
		"127.0.0.1:8500":         true,
		"http://127.0.0.1:8500":  true,
		"https://127.0.0.2:8501": true,
		"localhost:8500":         true,
		"http://localhost:8500":  true,
		"[::1]:8500":             true,
		"http://[::1]:8500":      true,
		"localhost":              true,
		"10.0.0.5:8500":          false,
		"http://consul:8500":     false,
		"https://consul.example": false,
		"[2001:db8::1]:8500":     false,
	} {
		if got := onThisHost(address); got != want {
			t.Errorf("onThisHost(%q) = %v; want %v", address, got, want)
		}
	}
}
