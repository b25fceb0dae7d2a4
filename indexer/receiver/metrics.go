package receiver

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the receiver's Prometheus metrics.
type metrics struct {
	requests *prometheus.CounterVec   // transport, outcome
	spans    *prometheus.CounterVec   // transport, outcome: accepted or rejected (partial success)
	ack      *prometheus.HistogramVec // transport
	inflight prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrace_receiver_requests_total",
			Help: "Export requests by transport (http, grpc, zipkin) and outcome (accepted, or the refusal: unauthenticated, invalid, limit, too_large, busy, rate_limited, log_full, log_error, stopping, cancelled)."},
			[]string{"transport", "outcome"}),
		spans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrace_receiver_spans_total",
			Help: "Spans of decoded requests by transport and outcome: accepted (logged and acknowledged), rejected (invalid span, answered with partial success) or refused (its request was refused)."},
			[]string{"transport", "outcome"}),
		ack: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "meshtrace_receiver_ack_duration_seconds", Help: "Time from reading a request's body to acknowledging it (decode and durable log append).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"transport"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshtrace_receiver_inflight_bytes", Help: "Bytes of the in-flight budget held by requests being read and decoded."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.spans, m.ack, m.inflight} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
