# The two commands a newcomer needs are `make demo` and `make test`
# (README.md). Both build Consul v1.14.11 from the Go module proxy the first
# time (~5 min on 2 cores) and cache it under ~/.cache/consul-elect.

.PHONY: test demo consul bench

test: consul
	go vet ./...
	go test -race -count=1 -timeout 30m ./...

demo:
	go run ./cmd/consul-elect demo

consul:
	go run ./internal/devconsul/cmd/build-consul

bench: consul
	go run ./bench/cmd/electbench all
