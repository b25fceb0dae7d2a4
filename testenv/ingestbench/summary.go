package ingestbench

import (
	"math"
	"slices"
	"time"
)

// summarise fills the load figures of res from the records.
func (l *load) summarise(res *Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var lat []time.Duration
	var first, last time.Time
	for _, r := range l.records {
		res.Requests++
		res.SentSpans += r.spans
		if first.IsZero() || (!r.sent.IsZero() && r.sent.Before(first)) {
			first = r.sent
		}
		if r.acked.IsZero() {
			res.Failed++
			continue
		}
		res.AckedRequests++
		res.AckedSpans += r.spans
		lat = append(lat, r.latency)
		if r.acked.After(last) {
			last = r.acked
		}
	}
	res.Status429, res.Status503 = int(l.s429.Load()), int(l.s503.Load())
	res.StatusOther, res.TransportErrors = int(l.sOther.Load()), int(l.sTransport.Load())
	if !last.IsZero() {
		res.Load = last.Sub(first)
		if res.Load > 0 {
			res.AckedPerSec = float64(res.AckedSpans) / res.Load.Seconds()
		}
	}
	res.AckP50, res.AckP99, res.AckMax = quantile(lat, 0.50), quantile(lat, 0.99), quantile(lat, 1)
}

func (l *load) summariseLag(res *Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var lags []time.Duration
	for _, r := range l.records {
		if !r.sampled || r.acked.IsZero() {
			continue
		}
		res.LagSamples++
		if r.lag < 0 {
			res.LagMissing++
			continue
		}
		lags = append(lags, r.lag)
	}
	res.LagP50, res.LagP99 = quantile(lags, 0.50), quantile(lags, 0.99)
}

// quantile returns the q-quantile (nearest rank) of d; 0 for none.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}
