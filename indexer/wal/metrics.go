package wal

import (
	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics registers the log's Prometheus metrics with reg: its size, segments, limit, appends and
// failed writes, read from Stats at each scrape.
func (w *WAL) RegisterMetrics(reg prometheus.Registerer) error {
	gauge := func(name, help string, v func(Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return v(w.Stats()) })
	}
	counter := func(name, help string, v func(Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return v(w.Stats()) })
	}
	for _, c := range []prometheus.Collector{
		gauge("meshtrace_wal_bytes", "Bytes of the write-ahead log on disk (records not yet committed, and the segments holding them).",
			func(s Stats) float64 { return float64(s.Bytes) }),
		gauge("meshtrace_wal_segments", "Segment files of the write-ahead log.", func(s Stats) float64 { return float64(s.Segments) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshtrace_wal_max_bytes", Help: "Size at which the write-ahead log refuses appends (clients get 429)."},
			func() float64 { return float64(w.cfg.MaxBytes) }),
		counter("meshtrace_wal_records_appended_total", "Records (accepted requests) appended since start.",
			func(s Stats) float64 { return float64(s.Appended) }),
		counter("meshtrace_wal_write_errors_total", "Failed writes or fsyncs of the write-ahead log since start (their requests were answered 503).",
			func(s Stats) float64 { return float64(s.SyncErrors) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
