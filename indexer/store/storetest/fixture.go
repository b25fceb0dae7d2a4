package storetest

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
)

// Now is the instant the fixture is built around: relative windows in the suite (since=1h) count back from it.
var Now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// Fixture is a small, realistic set of traces through a shop: a gateway, frontend, checkout and
// inventory-service over HTTP, postgres over TCP, and service-b consuming from Kafka. Labels ("t1.3") name
// spans in expectations: trace 1, span 3.
type Fixture struct {
	Spans  []document.Span
	Traces []document.Trace
	label  map[string]string // document id -> label
}

// spec describes one span of the fixture, relative to its trace's start.
type spec struct {
	n        int // span number within the trace; 1 is the root
	parent   int
	service  string
	name     string
	kind     string
	offset   time.Duration // start after the trace start
	duration time.Duration
	status   string // "ok", "error", "unset"
	msg      string
	attr     map[string]any
	events   []string
	link     int // a span of the same trace this one links to (as a receive span to its producer's context)
}

// traceSpec is one trace: its number, start (back from Now) and spans.
type traceSpec struct {
	n     int
	ago   time.Duration
	spans []spec
}

func shopTrace(n int, ago time.Duration, customer any, total time.Duration, withInventory bool, invStatus, invMsg string) traceSpec {
	spans := []spec{
		{n: 1, service: "gateway", name: "GET /checkout", kind: "server", duration: total, status: "unset",
			attr: map[string]any{"customer_id": customer, "http.request.method": "GET", "http.route": "/checkout", "http.response.status_code": 200}},
		{n: 2, parent: 1, service: "frontend", name: "GET /checkout", kind: "server", offset: time.Millisecond, duration: total - 2*time.Millisecond, status: "unset",
			attr: map[string]any{"customer_id": customer, "http.request.method": "GET"}},
		{n: 3, parent: 2, service: "checkout", name: "POST /orders", kind: "server", offset: 2 * time.Millisecond, duration: total / 2, status: "ok",
			attr: map[string]any{"customer_id": customer, "http.request.method": "POST", "http.route": "/orders"}},
		{n: 4, parent: 3, service: "postgres", name: "INSERT orders", kind: "client", offset: 3 * time.Millisecond, duration: 4 * time.Millisecond, status: "unset",
			attr: map[string]any{"network.transport": "tcp", "server.port": 5432, "peer.service": "postgres"}},
	}
	if withInventory {
		attr := map[string]any{"customer_id": customer, "http.request.method": "GET", "http.route": "/stock/{sku}", "http.response.status_code": 200}
		if invStatus == "error" {
			attr["http.response.status_code"] = 503
		}
		spans = append(spans, spec{n: 5, parent: 3, service: "inventory-service", name: "GET /stock/{sku}", kind: "server",
			offset: total/2 + 5*time.Millisecond, duration: total/2 - 10*time.Millisecond, status: invStatus, msg: invMsg, attr: attr,
			events: []string{"cache miss"}})
	}
	return traceSpec{n: n, ago: ago, spans: spans}
}

// NewFixture builds the fixture.
func NewFixture() *Fixture {
	traces := []traceSpec{
		// t1: customer 123, through inventory-service, 800 ms, 30 minutes ago; inventory fails.
		shopTrace(1, 30*time.Minute, "123", 800*time.Millisecond, true, "error", "upstream connect error: Connection reset by peer"),
		// t2: customer 123, no inventory-service, 900 ms.
		shopTrace(2, 20*time.Minute, "123", 900*time.Millisecond, false, "", ""),
		// t3: customer 456 through inventory-service, 700 ms.
		shopTrace(3, 10*time.Minute, "456", 700*time.Millisecond, true, "ok", ""),
		// t4: customer 123 through inventory-service but fast (300 ms).
		shopTrace(4, 15*time.Minute, "123", 300*time.Millisecond, true, "ok", ""),
		// t5: customer 123 through inventory-service, 2 s, but two hours ago.
		shopTrace(5, 2*time.Hour, "123", 2*time.Second, true, "ok", ""),
		// t6..t8: Kafka consumers in service-b: slow and recent, slow but 20 minutes ago, fast and recent.
		{n: 6, ago: 5 * time.Minute, spans: kafkaSpans(123, 1200*time.Millisecond, "ok", "")},
		{n: 7, ago: 20 * time.Minute, spans: kafkaSpans(789, 1500*time.Millisecond, "error", "processing timeout")},
		{n: 8, ago: 3 * time.Minute, spans: kafkaSpans(123, 40*time.Millisecond, "ok", "")},
	}
	f := &Fixture{label: map[string]string{}}
	for _, ts := range traces {
		var spans []document.Span
		base := Now.Add(-ts.ago)
		for _, s := range ts.spans {
			sp := document.Span{
				ID: SpanID(ts.n, s.n), TraceID: TraceID(ts.n), SpanID: spanHex(ts.n, s.n),
				Name: s.name, Kind: s.kind, Service: s.service,
				Start: base.Add(s.offset).UnixMicro(), Duration: s.duration.Microseconds(),
				StatusCode: s.status, StatusMessage: s.msg, Error: s.status == "error",
				Attr:     s.attr,
				Resource: map[string]any{"service.name": s.service, "k8s.namespace.name": "shop"},
				Scope:    "meshtrace",
			}
			if s.status == "" {
				sp.StatusCode = "unset"
			}
			sp.End = sp.Start + sp.Duration
			if s.parent != 0 {
				sp.ParentSpanID = spanHex(ts.n, s.parent)
			}
			for _, e := range s.events {
				sp.Events = append(sp.Events, document.Event{Name: e, Time: sp.Start + 10})
			}
			if s.link != 0 {
				sp.Links = []document.Link{{TraceID: TraceID(ts.n), SpanID: spanHex(ts.n, s.link)}}
			}
			f.label[sp.ID] = fmt.Sprintf("t%d.%d", ts.n, s.n)
			spans = append(spans, sp)
		}
		f.label[TraceID(ts.n)] = fmt.Sprintf("t%d", ts.n)
		f.Spans = append(f.Spans, spans...)
		f.Traces = append(f.Traces, rollup(spans))
	}
	return f
}

// kafkaSpans is a producer in orders-api and a consumer in service-b (connected by a link), with a numeric
// customer_id attribute (other services send it as a string).
func kafkaSpans(customer int, consume time.Duration, status, msg string) []spec {
	return []spec{
		{n: 1, service: "orders-api", name: "send orders", kind: "producer", duration: 2 * time.Millisecond, status: "unset",
			attr: map[string]any{"messaging.system": "kafka", "messaging.operation.type": "send", "messaging.destination.name": "orders", "customer_id": customer}},
		{n: 2, parent: 1, service: "service-b", name: "process orders", kind: "consumer", offset: 5 * time.Millisecond, duration: consume, status: status, msg: msg,
			attr:   map[string]any{"messaging.system": "kafka", "messaging.operation.type": "process", "messaging.destination.name": "orders", "messaging.kafka.offset": 42, "customer_id": customer},
			events: []string{"retry scheduled"}, link: 1},
	}
}

// TraceID is the trace id of fixture trace n.
func TraceID(n int) string { return fmt.Sprintf("%032x", 0xabc00000+n) }

func spanHex(trace, n int) string { return fmt.Sprintf("%016x", trace*100+n) }

// SpanID is the document id of span n of fixture trace t.
func SpanID(t, n int) string { return TraceID(t) + "-" + spanHex(t, n) }

// rollup builds the trace document of a complete set of spans.
func rollup(spans []document.Span) document.Trace {
	t := document.Trace{ID: spans[0].TraceID, TraceID: spans[0].TraceID, Start: spans[0].Start, End: spans[0].End}
	keys := map[string][]string{}
	for _, s := range spans {
		t.Start, t.End = min(t.Start, s.Start), max(t.End, s.End)
		t.SpanCount++
		if s.Error {
			t.ErrorCount++
		}
		if s.ParentSpanID == "" {
			t.RootService, t.RootName = s.Service, s.Name
		}
		if !slices.Contains(t.Services, s.Service) {
			t.Services = append(t.Services, s.Service)
		}
		if c, ok := s.Attr["customer_id"]; ok {
			v := fmt.Sprint(c)
			if !slices.Contains(keys["customer_id"], v) {
				keys["customer_id"] = append(keys["customer_id"], v)
			}
		}
	}
	sort.Strings(t.Services)
	t.Edges = edges(spans)
	t.Duration = t.End - t.Start
	if len(keys) > 0 {
		t.Keys = keys
	}
	return t
}

// edges is the service graph of a complete set of spans, as package rollup defines it for the spans of the
// fixture: a parent span in another service, peer.service on a client span, the topic of a producer or
// consumer.
func edges(spans []document.Span) []string {
	var out []string
	add := func(from, to string) {
		if e := from + document.EdgeSep + to; from != to && !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	for _, s := range spans {
		for _, p := range spans {
			if p.SpanID == s.ParentSpanID {
				add(p.Service, s.Service)
			}
		}
		if peer, ok := s.Attr["peer.service"].(string); ok && s.Kind == "client" {
			add(s.Service, peer)
		}
		if topic, ok := s.Attr["messaging.destination.name"].(string); ok {
			switch s.Kind {
			case "producer":
				add(s.Service, "topic:"+topic)
			case "consumer":
				add("topic:"+topic, s.Service)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Label names a span or trace document of the fixture ("t1.3", "t1"), or returns the id unchanged.
func (f *Fixture) Label(id string) string {
	if l, ok := f.label[id]; ok {
		return l
	}
	return id
}

func (f *Fixture) span(id string) *document.Span {
	for i := range f.Spans {
		if f.Spans[i].ID == id {
			return &f.Spans[i]
		}
	}
	return nil
}

func (f *Fixture) trace(id string) *document.Trace {
	for i := range f.Traces {
		if f.Traces[i].ID == id {
			return &f.Traces[i]
		}
	}
	return nil
}
