package plugin

import (
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/meshtrace/meshtrace/filter/otlp"
	"github.com/meshtrace/meshtrace/filter/policy"
	"github.com/meshtrace/meshtrace/filter/span"
)

// Metric names (proxy-wasm counters; Istio exposes them with its wasm stats prefix).
const (
	MetricSpansExported  = "meshtrace_spans_exported_total"
	MetricSpansDropped   = "meshtrace_spans_dropped_total"
	MetricExportFailures = "meshtrace_export_failures_total"
)

// exporter batches finished spans per VM and sends them as OTLP/HTTP protobuf with dispatch_http_call.
//
// Spans are encoded when submitted, into batches of at most batch_size spans. The oldest batch is sent when
// it is full or on a tick; one export call is in flight at a time, and a failed call is retried (on later
// ticks, or after Retry-After) up to max_retries times before its spans are dropped. At most max_buffered
// spans are held: beyond that, new spans are dropped and counted. Calls are dispatched only from root
// context callbacks (tick, queue, call response) so a call never belongs to a stream that may be gone when
// its response arrives; a stream that fills a batch wakes the root context through a per-VM shared queue.
type exporter struct {
	cfg      policy.Export
	resource *otlp.Resource
	headers  [][2]string

	batches  []*otlp.Batch // oldest first; batches[0] is in flight while sending
	free     []*otlp.Batch // emptied batches kept for reuse, so memory stays flat
	buffered int           // spans in batches
	sending  bool          // batches[0] is being sent or waits for a retry
	calling  bool          // an export call is outstanding
	attempts int           // failed attempts of batches[0]
	retryAt  uint64        // earliest retry time (Unix ns)
	body     []byte        // request buffer, reused

	queueID      uint32 // wake-up queue; 0 when the host has no shared queues
	wakeAsked    bool
	draining     bool // the plugin is shutting down: send what is left once, then report done
	doneDeferred bool // proxy_on_done returned false; call proxy_done when the drain ends

	exported, dropped, failures proxywasm.MetricCounter
}

func newExporter(cfg policy.Export, res *otlp.Resource, nonce uint64) *exporter {
	e := &exporter{
		cfg: cfg, resource: res,
		headers: [][2]string{
			{":method", "POST"}, {":path", cfg.Path}, {":authority", cfg.Authority},
			{"content-type", otlp.ContentType},
		},
		exported: proxywasm.DefineCounterMetric(MetricSpansExported),
		dropped:  proxywasm.DefineCounterMetric(MetricSpansDropped),
		failures: proxywasm.DefineCounterMetric(MetricExportFailures),
	}
	if cfg.Token != "" { // the indexer's ingest token (export.token_env), never logged
		e.headers = append(e.headers, [2]string{"authorization", "Bearer " + cfg.Token})
	}
	id, err := proxywasm.RegisterSharedQueue("meshtrace.flush." + strconv.FormatUint(nonce, 16))
	if err != nil {
		logProblem("no flush queue, batches are sent on ticks only", err)
	} else {
		e.queueID = id
	}
	return e
}

// submit adds a finished span, or drops and counts it when the buffer is full. It may be called from any
// context; it never dispatches a call itself.
func (e *exporter) submit(s *span.Span) {
	if e.buffered >= e.cfg.MaxBuffered {
		e.dropped.Increment(1)
		return
	}
	n := len(e.batches)
	if n == 0 || e.batches[n-1].Len() >= e.cfg.BatchSize || (n == 1 && e.sending) {
		e.batches = append(e.batches, e.newBatch())
		n++
	}
	e.batches[n-1].Add(s)
	e.buffered++
	if e.readyToSend() && e.queueID != 0 && !e.wakeAsked {
		if err := proxywasm.EnqueueSharedQueue(e.queueID, []byte{1}); err == nil {
			e.wakeAsked = true
		}
	}
}

// readyToSend reports whether a full batch waits and no call is under way.
func (e *exporter) readyToSend() bool {
	return !e.sending && len(e.batches) > 0 && e.batches[0].Len() >= e.cfg.BatchSize
}

func (e *exporter) newBatch() *otlp.Batch {
	if n := len(e.free); n > 0 {
		b := e.free[n-1]
		e.free = e.free[:n-1]
		return b
	}
	return &otlp.Batch{}
}

// queueReady drains the wake-up queue and sends a full batch.
func (e *exporter) queueReady(queueID uint32) {
	if queueID != e.queueID {
		return
	}
	for {
		if _, err := proxywasm.DequeueSharedQueue(queueID); err != nil {
			break
		}
	}
	e.wakeAsked = false
	if e.readyToSend() {
		e.flush()
	}
}

// tick retries a failed batch when its time has come, or sends the oldest batch, full or not.
func (e *exporter) tick(now uint64) {
	switch {
	case e.calling:
	case e.sending:
		if now >= e.retryAt {
			e.send()
		}
	default:
		e.flush()
	}
}

// flush starts sending the oldest batch.
func (e *exporter) flush() {
	if e.sending || len(e.batches) == 0 || e.batches[0].Len() == 0 {
		return
	}
	e.sending = true
	e.attempts = 0
	e.send()
}

func (e *exporter) send() {
	e.body = otlp.AppendRequest(e.body[:0], e.resource, e.batches[0])
	_, err := proxywasm.DispatchHttpCall(e.cfg.Cluster, e.headers, e.body, nil, uint32(e.cfg.TimeoutMS), e.onResponse)
	if err != nil {
		logProblem("export call to "+e.cfg.Cluster+" failed", err)
		e.failed(true, 0, hostNow())
		return
	}
	e.calling = true
}

// onResponse settles the in-flight batch. Per OTLP/HTTP, 2xx is success, 429/502/503/504 and transport
// failures (no headers) are retried, anything else drops the batch.
func (e *exporter) onResponse(numHeaders, _, _ int) {
	e.calling = false
	now := hostNow()
	if numHeaders == 0 {
		e.failed(true, 0, now)
		return
	}
	headers, err := proxywasm.GetHttpCallResponseHeaders()
	if err != nil {
		e.failed(true, 0, now)
		return
	}
	status, _ := strconv.Atoi(header(headers, ":status"))
	switch {
	case status >= 200 && status < 300:
		e.exported.Increment(uint64(e.batches[0].Len()))
		e.finish()
		if e.readyToSend() {
			e.flush()
		}
	case status == 429 || status == 502 || status == 503 || status == 504:
		retryAfter, _ := strconv.Atoi(header(headers, "retry-after"))
		e.failed(true, uint64(retryAfter)*1e9, now)
	default:
		proxywasm.LogWarnf("meshtrace: export rejected with status %d, dropping %d spans", status, e.batches[0].Len())
		e.failed(false, 0, now)
	}
}

// drain sends every buffered batch as the plugin shuts down, without retries. It reports true when
// nothing is left; otherwise the exporter calls proxywasm.PluginDone once the last batch is settled.
func (e *exporter) drain() bool {
	if len(e.batches) == 0 || e.batches[0].Len() == 0 {
		return true
	}
	e.draining = true
	switch {
	case e.calling: // the response settles the batch and continues the drain
	case e.sending:
		e.send() // a batch waiting for its retry goes now
	default:
		e.flush()
	}
	if !e.draining {
		return true // everything settled synchronously
	}
	e.doneDeferred = true
	return false
}

// continueDrain sends the next batch of a drain, or ends the drain when none is left.
func (e *exporter) continueDrain() {
	if len(e.batches) > 0 && e.batches[0].Len() > 0 {
		e.flush()
		return
	}
	e.draining = false
	if e.doneDeferred {
		e.doneDeferred = false
		proxywasm.PluginDone()
	}
}

// failed counts a failed export call and either schedules a retry or drops the batch.
func (e *exporter) failed(retryable bool, delay, now uint64) {
	e.failures.Increment(1)
	if retryable && e.attempts < e.cfg.MaxRetries && !e.draining {
		e.attempts++
		e.retryAt = now + delay
		return
	}
	e.dropped.Increment(uint64(e.batches[0].Len()))
	e.finish()
}

// finish removes the in-flight batch and keeps its memory for reuse.
func (e *exporter) finish() {
	b := e.batches[0]
	e.buffered -= b.Len()
	b.Reset()
	e.free = append(e.free, b)
	copy(e.batches, e.batches[1:])
	e.batches[len(e.batches)-1] = nil
	e.batches = e.batches[:len(e.batches)-1]
	e.sending = false
	if e.draining {
		e.continueDrain()
	}
}

// header returns the first value of a header in a header list (names lower case).
func header(headers [][2]string, name string) string {
	for _, h := range headers {
		if h[0] == name {
			return h[1]
		}
	}
	return ""
}
