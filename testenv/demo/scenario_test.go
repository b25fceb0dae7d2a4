package demo

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/wasmhost/hosttest"
)

// collector is an OTLP/HTTP endpoint that keeps every span it receives, with its service.
type collector struct {
	mu    sync.Mutex
	spans []*tracepb.Span
	svc   map[*tracepb.Span]string
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if r.Header.Get("content-type") != "application/x-protobuf" || proto.Unmarshal(body, &req) != nil {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		var service string
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.spans = append(c.spans, s)
				c.svc[s] = service
			}
		}
	}
	w.Header().Set("content-type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

// TestScenario runs the demo mesh on both compiled builds and checks what reaches the collector: four
// connected spans per request, all carrying the customer id that only the gateway saw.
func TestScenario(t *testing.T) {
	for _, b := range artifact.Builds(t) {
		t.Run(b.Name, func(t *testing.T) {
			col := &collector{svc: map[*tracepb.Span]string{}}
			srv := httptest.NewServer(col)
			defer srv.Close()

			const requests = 60
			res, err := Run(context.Background(), Config{
				Module: hosttest.Module(t, b), Endpoint: srv.URL + "/v1/traces", Requests: requests, Seed: 7,
				End: time.Now(), Window: time.Hour,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != requests || res.SpansExported != 4*requests || res.SpansDropped != 0 || res.ExportFailures != 0 {
				t.Fatalf("result %+v, want %d requests and %d spans exported, none dropped", res, requests, 4*requests)
			}
			if res.Slow == 0 || res.Failed == 0 {
				t.Fatalf("result %+v: the scenario must contain slow and failing requests", res)
			}
			if len(col.spans) != 4*requests {
				t.Fatalf("collector got %d spans, want %d", len(col.spans), 4*requests)
			}
			traces := map[string][]*tracepb.Span{}
			for _, s := range col.spans {
				traces[hex.EncodeToString(s.TraceId)] = append(traces[hex.EncodeToString(s.TraceId)], s)
			}
			if len(traces) != requests {
				t.Fatalf("%d traces, want one per request (%d)", len(traces), requests)
			}
			for id, spans := range traces {
				checkChain(t, id, spans, col.svc)
			}
		})
	}
}

// checkChain asserts that a trace is the chain gateway -> frontend -> checkout -> inventory-service, every span
// tagged with the same customer id.
func checkChain(t *testing.T, id string, spans []*tracepb.Span, svc map[*tracepb.Span]string) {
	t.Helper()
	byService := map[string]*tracepb.Span{}
	customers := map[string]bool{}
	for _, s := range spans {
		byService[svc[s]] = s
		found := false
		for _, kv := range s.Attributes {
			if kv.Key == "customer_id" {
				customers[kv.GetValue().GetStringValue()] = true
				found = true
			}
		}
		if !found {
			t.Errorf("trace %s: span of %s has no customer_id", id, svc[s])
		}
	}
	if len(customers) != 1 {
		t.Errorf("trace %s: customer ids %v, want exactly one", id, customers)
	}
	var parent *tracepb.Span
	for _, h := range hops {
		s := byService[h.service]
		if s == nil {
			t.Fatalf("trace %s: no span of %s", id, h.service)
		}
		if parent == nil {
			if len(s.ParentSpanId) != 0 {
				t.Errorf("trace %s: gateway span has a parent", id)
			}
		} else if string(s.ParentSpanId) != string(parent.SpanId) {
			t.Errorf("trace %s: %s's parent is not %s's span", id, h.service, svc[parent])
		}
		if s.Kind != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("trace %s: %s span kind %v, want SERVER", id, h.service, s.Kind)
		}
		parent = s
	}
}
