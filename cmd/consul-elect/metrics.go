package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// runMetrics are what `run --metrics-addr` serves: the engine's (package
// metrics, the engine's Observer) and the command's.
type runMetrics struct {
	resource       string
	registry       *prometheus.Registry
	engine         *metrics.Metrics
	commandRunning prometheus.Gauge
	commandStarts  prometheus.Counter
}

func newRunMetrics(resource string, timing actors.Timing) (*runMetrics, error) {
	registry := prometheus.NewRegistry()
	engine, err := metrics.New(registry, timing)
	if err != nil {
		return nil, err
	}
	labels := prometheus.Labels{"resource": resource}
	m := &runMetrics{
		resource: resource,
		registry: registry,
		engine:   engine,
		commandRunning: prometheus.NewGauge(prometheus.GaugeOpts{Name: "consul_elect_command_running",
			Help: "1 while the leader's command runs, else 0.", ConstLabels: labels}),
		commandStarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "consul_elect_command_starts_total",
			Help: "Times the command was started, once per term of leadership.", ConstLabels: labels}),
	}
	// The Go runtime's and the process's own series (goroutines, fds,
	// memory) show leaks inside consul-elect from outside.
	for _, c := range []prometheus.Collector{m.commandRunning, m.commandStarts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := registry.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// serve serves /metrics, /healthz (200 while session renewals succeed) and
// /leader (200 while this candidate leads the resource) on addr until the
// returned function is called.
func (m *runMetrics) serve(addr string, logger *zap.Logger) (stop func(), err error) {
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	mux.Handle("/healthz", m.engine.Healthz())
	mux.Handle("/leader", m.engine.Leader(m.resource))
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := server.Serve(listener); !errors.Is(err, http.ErrServerClosed) {
			logger.Error("serving metrics failed", zap.Error(err))
		}
	}()
	logger.Info("serving /metrics, /healthz and /leader", zap.String("addr", listener.Addr().String()))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = server.Shutdown(ctx)
		<-done
	}, nil
}
