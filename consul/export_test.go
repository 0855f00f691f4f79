package consul

// Scans reports whether scanTxn takes a transaction's answer b, for the
// tests of package consul_test, which read real answers.
func Scans(b []byte) bool {
	_, ok := scanTxn(b)
	return ok
}
