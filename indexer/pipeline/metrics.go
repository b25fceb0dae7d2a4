package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the pipeline's Prometheus metrics.
type metrics struct {
	spansWritten prometheus.Counter
	writeSeconds prometheus.Histogram
	writeErrors  *prometheus.CounterVec
	deadLettered prometheus.Counter
	lag          prometheus.Histogram
}

// newMetrics creates the metrics and registers them with reg (nil: nowhere).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		spansWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrace_store_spans_written_total", Help: "Span documents written to the store."}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshtrace_store_write_duration_seconds", Help: "Duration of store write attempts (spans and trace documents of one shard's batch).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrace_store_write_errors_total", Help: "Failed store write attempts: failed (retried) or refused (the batch is split, refused spans dead-lettered)."},
			[]string{"kind"}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrace_store_spans_dead_lettered_total", Help: "Spans the store refused as invalid, kept in the dead-letter file."}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshtrace_index_lag_seconds", Help: "Time from acknowledging a request to its spans being searchable (committed).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16)}),
	}
	m.writeErrors.WithLabelValues("failed")
	m.writeErrors.WithLabelValues("refused")
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.spansWritten, m.writeSeconds, m.writeErrors, m.deadLettered, m.lag} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
