// Package micro holds figure 6 of the benchmarks: micro benchmarks of the engine's
// actors against an in-memory backend (no Consul, no network), for
// allocations per acquire, per handover and per renewal.
//
//	go test -run '^$' -bench . -benchmem ./bench/micro/
package micro
