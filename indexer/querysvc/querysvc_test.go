package querysvc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/querysvc"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
	"github.com/meshtrace/meshtrace/indexer/tenant"
)

// admin is the context of a read that sees every tenant.
var admin = tenant.NewContext(context.Background(), tenant.All())

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// makeSpans returns n spans of one trace of service svc, 10 us apart, named op0, op1, ... by i%ops.
func makeSpans(trace, n int, base int64, svc string, ops int) []document.Span {
	traceID := fmt.Sprintf("%032x", 0x1000+trace)
	out := make([]document.Span, n)
	for i := range out {
		spanID := fmt.Sprintf("%016x", trace*100000+i+1)
		start := base + int64(i)*10
		out[i] = document.Span{ID: traceID + "-" + spanID, TraceID: traceID, SpanID: spanID, Name: fmt.Sprintf("op%d", i%ops),
			Service: svc, Kind: "server", StatusCode: "unset", Start: start, End: start + 5, Duration: 5}
	}
	return out
}

func TestTrace(t *testing.T) {
	st := openStore(t)
	spans := makeSpans(1, 3, 1_700_000_000_000_000, "svc", 1)
	doc := document.Trace{ID: spans[0].TraceID, TraceID: spans[0].TraceID, SpanCount: 3, Services: []string{"svc"}}
	if err := st.Write(admin, spans, []document.Trace{doc}); err != nil {
		t.Fatal(err)
	}
	svc := querysvc.New(st, querysvc.Config{})
	got, found, err := svc.Trace(admin, doc.ID)
	if err != nil || !found || got.Trace.SpanCount != 3 || len(got.Spans) != 3 {
		t.Fatalf("Trace = %+v, %v, %v", got, found, err)
	}
	if _, found, err := svc.Trace(admin, "0123456789abcdef0123456789abcdef"); err != nil || found {
		t.Fatalf("unknown trace: found %v, err %v", found, err)
	}
}

// TestJaegerReads reads whole traces back for the Jaeger API (the services and operations lists are facet
// counts: facet_test.go).
func TestJaegerReads(t *testing.T) {
	st := openStore(t)
	base := int64(1_700_000_000_000_000)
	a, b := makeSpans(1, 4, base, "b-svc", 3), makeSpans(2, 2, base+1000, "a-svc", 1)
	docs := []document.Trace{{ID: a[0].TraceID, TraceID: a[0].TraceID, Start: a[0].Start, SpanCount: 4, Services: []string{"b-svc"}},
		{ID: b[0].TraceID, TraceID: b[0].TraceID, Start: b[0].Start, SpanCount: 2, Services: []string{"a-svc"}}}
	if err := st.Write(admin, append(a, b...), docs); err != nil {
		t.Fatal(err)
	}
	svc := querysvc.New(st, querysvc.Config{})
	ctx := admin
	byID, err := svc.TracesByID(ctx, []string{b[0].TraceID, "0123456789abcdef0123456789abcdef", a[0].TraceID, b[0].TraceID})
	if err != nil || len(byID) != 2 || byID[0].Trace.TraceID != b[0].TraceID || len(byID[0].Spans) != 2 ||
		byID[1].Trace.TraceID != a[0].TraceID || len(byID[1].Spans) != 4 {
		t.Errorf("TracesByID = %+v, %v", byID, err)
	}
	q, err := query.Compile("service=b-svc", time.UnixMicro(base))
	if err != nil {
		t.Fatal(err)
	}
	traces, err := svc.FindTraces(ctx, q, 10)
	if err != nil || len(traces) != 1 || traces[0].Trace.TraceID != a[0].TraceID || len(traces[0].Spans) != 4 {
		t.Errorf("FindTraces(service=b-svc) = %+v, %v", traces, err)
	}
}

// TestTraceLinkedFrom reads a producer's trace back, then the spans of other traces that link to its producer
// span or to that span's parent (the consumers of its messages), within the reader's scope: another tenant's
// consumer is not shown.
func TestTraceLinkedFrom(t *testing.T) {
	st := openStore(t)
	const base = 1_700_000_000_000_000
	producer := makeSpans(1, 2, base, "orders", 2)
	producer[1].Kind, producer[1].Tenant = "producer", "team-a"
	producer[0].Tenant = "team-a"
	consumers := makeSpans(2, 3, base+1000, "billing", 3)
	for i := range consumers {
		consumers[i].Kind, consumers[i].Tenant = "client", "team-a"
	}
	link := document.Link{TraceID: producer[1].TraceID, SpanID: producer[1].SpanID, Attr: map[string]any{"meshtrace.kafka.time_in_topic_ms": 7}}
	consumers[0].Links = []document.Link{link}
	producer[1].ParentSpanID = "00000000000000aa" // the context its record carried: a span not indexed
	consumers[1].Links = []document.Link{{TraceID: producer[1].TraceID, SpanID: producer[1].ParentSpanID}}
	consumers[2].Links = []document.Link{{TraceID: producer[0].TraceID, SpanID: producer[0].SpanID}} // not a producer span
	other := makeSpans(3, 1, base+2000, "audit", 1)
	other[0].Tenant, other[0].Links = "team-b", []document.Link{link}
	all := append(append(append([]document.Span{}, producer...), consumers...), other...)
	for i := range all {
		all[i].ID = document.SpanDocID(all[i].Tenant, all[i].TraceID, all[i].SpanID)
	}
	if err := st.Write(admin, all, nil); err != nil {
		t.Fatal(err)
	}
	svc := querysvc.New(st, querysvc.Config{})
	teamA, err := tenant.Of("team-a")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want []string // service of each linking span, in start order
	}{
		{"admin", admin, []string{"billing", "billing", "audit"}},
		{"team-a", tenant.NewContext(context.Background(), teamA), []string{"billing", "billing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, found, err := svc.Trace(tc.ctx, producer[0].TraceID)
			if err != nil || !found {
				t.Fatalf("Trace: found %v, err %v", found, err)
			}
			linked, err := svc.LinkedFrom(tc.ctx, got.Spans)
			if err != nil {
				t.Fatal(err)
			}
			var svcs []string
			for _, s := range linked {
				svcs = append(svcs, s.Service)
			}
			if fmt.Sprint(svcs) != fmt.Sprint(tc.want) {
				t.Fatalf("linked from %v, want %v", svcs, tc.want)
			}
			if w := linked[0].Links[0].Attr["meshtrace.kafka.time_in_topic_ms"]; fmt.Sprint(w) != "7" {
				t.Errorf("the link's time in topic %v, want 7", w)
			}
		})
	}
	if linked, err := svc.LinkedFrom(admin, consumers); err != nil || len(linked) != 0 {
		t.Errorf("a trace without producer spans: linked from %d spans, err %v", len(linked), err)
	}
	if _, err := svc.LinkedFrom(context.Background(), producer); err == nil {
		t.Error("LinkedFrom without a scope: no error")
	}
}
