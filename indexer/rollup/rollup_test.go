package rollup

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
)

// memStore is the fake store: it keeps the last written version of each document, as a real store does.
type memStore struct {
	spans  map[string]document.Span
	traces map[string]document.Trace
	fail   error
}

func newMemStore() *memStore {
	return &memStore{spans: map[string]document.Span{}, traces: map[string]document.Trace{}}
}

func (m *memStore) write(spans []document.Span, traces []document.Trace) {
	for _, s := range spans {
		m.spans[s.ID] = s
	}
	for _, t := range traces {
		m.traces[t.ID] = t
	}
}

func (m *memStore) GetTraces(_ context.Context, ids []string) ([]document.Trace, error) {
	if m.fail != nil {
		return nil, m.fail
	}
	var out []document.Trace
	for _, id := range ids {
		if t, ok := m.traces[id]; ok {
			out = append(out, t)
		}
	}
	return out, nil
}

func (m *memStore) TraceSpans(_ context.Context, tenant, traceID string) ([]document.Span, error) {
	var out []document.Span
	for _, s := range m.spans {
		if s.TraceID == traceID && s.Tenant == tenant {
			out = append(out, s)
		}
	}
	return out, nil
}

// randomTraces builds n traces of random shape: a root (sometimes missing), children with random services,
// errors and business keys in span or resource attributes.
func randomTraces(rng *rand.Rand, n int) []document.Span {
	services := []string{"gateway", "frontend", "checkout", "inventory", "payments"}
	var all []document.Span
	for t := range n {
		traceID := fmt.Sprintf("%032x", rng.Uint64())
		base := int64(1_700_000_000_000_000 + t*1000)
		count := 1 + rng.IntN(12)
		hasRoot := rng.IntN(5) != 0
		for i := range count {
			spanID := fmt.Sprintf("%016x", uint64(i+1)<<8|uint64(t))
			start := base + rng.Int64N(5000)
			s := document.Span{
				ID: traceID + "-" + spanID, TraceID: traceID, SpanID: spanID,
				Name: fmt.Sprintf("op-%d", rng.IntN(4)), Service: services[rng.IntN(len(services))],
				Start: start, End: start + rng.Int64N(100000), Error: rng.IntN(6) == 0,
			}
			s.Duration = s.End - s.Start
			switch {
			case i > 0 && rng.IntN(2) == 0: // an earlier span of the trace: a service edge when services differ
				s.ParentSpanID = fmt.Sprintf("%016x", uint64(rng.IntN(i)+1)<<8|uint64(t))
			case i > 0 || !hasRoot: // a parent never seen
				s.ParentSpanID = fmt.Sprintf("%016x", uint64(rng.IntN(i+1)+1000))
			}
			switch rng.IntN(4) {
			case 0:
				s.Attr = map[string]any{"customer_id": fmt.Sprint(100 + rng.IntN(3))}
			case 1:
				s.Resource = map[string]any{"tenant_id": int64(rng.IntN(2))}
			case 2:
				s.Attr = map[string]any{"order_id": []any{"a", "b"}[rng.IntN(2)], "other": "x"}
			}
			all = append(all, s)
		}
	}
	return all
}

// expected computes trace documents directly from the definition, independently of the Rollup.
func expected(spans []document.Span) map[string]document.Trace {
	byTrace := map[string][]document.Span{}
	for _, s := range spans {
		byTrace[s.TraceID] = append(byTrace[s.TraceID], s)
	}
	out := map[string]document.Trace{}
	for id, ss := range byTrace {
		t := document.Trace{ID: id, TraceID: id, Start: ss[0].Start, End: ss[0].End, SpanCount: len(ss), Services: []string{}}
		var root *document.Span
		keys := map[string][]string{}
		for i := range ss {
			s := &ss[i]
			t.Start, t.End = min(t.Start, s.Start), max(t.End, s.End)
			if s.Error {
				t.ErrorCount++
			}
			if !slices.Contains(t.Services, s.Service) {
				t.Services = append(t.Services, s.Service)
			}
			if s.ParentSpanID == "" && (root == nil || s.Start < root.Start || s.Start == root.Start && s.SpanID < root.SpanID) {
				root = s
			}
			for _, k := range DefaultKeys {
				v, ok := s.Attr[k]
				if !ok {
					v, ok = s.Resource[k]
				}
				if ok && !slices.Contains(keys[k], fmt.Sprint(v)) {
					keys[k] = append(keys[k], fmt.Sprint(v))
				}
			}
		}
		t.Duration = t.End - t.Start
		slices.Sort(t.Services)
		for _, c := range ss {
			for _, p := range ss {
				if p.SpanID == c.ParentSpanID && p.Service != c.Service && !slices.Contains(t.Edges, p.Service+">"+c.Service) {
					t.Edges = append(t.Edges, p.Service+">"+c.Service)
				}
			}
		}
		slices.Sort(t.Edges)
		if root != nil {
			t.RootService, t.RootName = root.Service, root.Name
		}
		if len(keys) > 0 {
			t.Keys = keys
			for _, v := range keys {
				slices.Sort(v)
			}
		}
		out[id] = t
	}
	return out
}

// TestConvergence is the property: whatever the order, the batching, the duplicates (retries) and the cache
// pressure (late spans of evicted traces), the stored trace documents equal those computed from the distinct
// spans.
func TestConvergence(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, seed*7+1))
		spans := randomTraces(rng, 1+rng.IntN(8))
		want := expected(spans)

		// Arrival: every span once, some several times, shuffled.
		arrival := slices.Clone(spans)
		for range rng.IntN(len(spans) + 1) {
			arrival = append(arrival, spans[rng.IntN(len(spans))])
		}
		rng.Shuffle(len(arrival), func(i, j int) { arrival[i], arrival[j] = arrival[j], arrival[i] })

		st := newMemStore()
		cfg := Config{Window: time.Duration(1+rng.IntN(3)) * time.Second, MaxSpans: 1 + rng.IntN(40)}
		r := New(cfg, st)
		now := time.Unix(1_700_000_000, 0)
		for len(arrival) > 0 {
			n := min(len(arrival), 1+rng.IntN(10))
			batch := arrival[:n]
			arrival = arrival[n:]
			traces, err := r.Apply(context.Background(), batch, now)
			if err != nil {
				t.Fatal(err)
			}
			st.write(batch, traces)
			now = now.Add(time.Duration(rng.IntN(1500)) * time.Millisecond)
		}
		if !reflect.DeepEqual(st.traces, want) {
			for id, w := range want {
				if g := st.traces[id]; !reflect.DeepEqual(g, w) {
					t.Fatalf("seed %d: trace %s\n got %+v\nwant %+v", seed, id, g, w)
				}
			}
			t.Fatalf("seed %d: stored %d traces, want %d", seed, len(st.traces), len(want))
		}
		if _, cached := r.Cached(); cached > cfg.MaxSpans {
			t.Fatalf("seed %d: cache holds %d span summaries, limit %d", seed, cached, cfg.MaxSpans)
		}
	}
}

func TestApplyLoaderErrorAppliesNothing(t *testing.T) {
	st := newMemStore()
	r := New(Config{}, st)
	spans := randomTraces(rand.New(rand.NewPCG(1, 2)), 3)
	st.fail = errors.New("store down")
	if _, err := r.Apply(context.Background(), spans, time.Now()); !errors.Is(err, st.fail) {
		t.Fatalf("Apply error = %v, want the loader's", err)
	}
	if traces, cached := r.Cached(); traces != 0 || cached != 0 {
		t.Fatalf("after a failed Apply the cache holds %d traces, %d spans", traces, cached)
	}
	st.fail = nil
	got, err := r.Apply(context.Background(), spans, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := expected(spans)
	for _, g := range got {
		if !reflect.DeepEqual(g, want[g.ID]) {
			t.Fatalf("got %+v, want %+v", g, want[g.ID])
		}
	}
}

func TestKeyValues(t *testing.T) {
	tests := []struct {
		in   any
		want []string
	}{
		{"cust-1", []string{"cust-1"}},
		{"", nil},
		{int64(123), []string{"123"}},
		{1.5, []string{"1.5"}},
		{true, []string{"true"}},
		{[]any{"a", int64(2)}, []string{"a", "2"}},
		{map[string]any{"x": "y"}, nil},
	}
	for _, tt := range tests {
		if got := keyValues(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("keyValues(%#v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestEdges checks the service graph of one trace document, span kind by span kind.
func TestEdges(t *testing.T) {
	span := func(id, parent, service, kind string, attr map[string]any, links ...string) document.Span {
		s := document.Span{ID: "t-" + id, TraceID: "t", SpanID: id, ParentSpanID: parent, Service: service, Kind: kind, Attr: attr}
		for _, l := range links {
			s.Links = append(s.Links, document.Link{TraceID: "t", SpanID: l})
		}
		return s
	}
	kafka := func(topic string) map[string]any {
		return map[string]any{"messaging.system": "kafka", "messaging.destination.name": topic}
	}
	for _, tt := range []struct {
		name  string
		spans []document.Span
		want  []string
	}{
		{"one service", []document.Span{span("1", "", "a", "server", nil), span("2", "1", "a", "internal", nil)}, nil},
		{"http chain", []document.Span{
			span("1", "", "gateway", "server", nil), span("2", "1", "gateway", "client", nil),
			span("3", "2", "frontend", "server", nil), span("4", "3", "checkout", "server", nil),
			span("5", "3", "checkout", "server", nil), // same edge twice: one entry
		}, []string{"frontend>checkout", "gateway>frontend"}},
		{"missing parent makes no edge", []document.Span{span("2", "1", "frontend", "server", nil)}, nil},
		{"peer.service on a client span", []document.Span{
			span("1", "", "checkout", "server", nil),
			span("2", "1", "checkout", "client", map[string]any{"peer.service": "postgres", "network.transport": "tcp"}),
			span("3", "1", "checkout", "server", map[string]any{"peer.service": "ignored-on-servers"}),
		}, []string{"checkout>postgres"}},
		{"peer.service naming itself", []document.Span{
			span("1", "", "checkout", "server", nil), span("2", "1", "postgres", "client", map[string]any{"peer.service": "postgres"}),
		}, []string{"checkout>postgres"}},
		{"kafka parent-child", []document.Span{
			span("1", "", "orders-api", "producer", kafka("orders")), span("2", "1", "service-b", "consumer", kafka("orders")),
		}, []string{"orders-api>service-b", "orders-api>topic:orders", "topic:orders>service-b"}},
		{"kafka linked consumer", []document.Span{
			span("1", "", "orders-api", "producer", nil), span("2", "", "service-b", "consumer", nil, "1", "404"),
		}, []string{"orders-api>service-b"}},
		{"consumer of another trace's message", []document.Span{span("1", "", "service-b", "consumer", kafka("orders"))},
			[]string{"topic:orders>service-b"}},
		{"node with the separator", []document.Span{span("1", "", "a>b", "server", nil), span("2", "1", "c", "server", nil)}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reversed := slices.Clone(tt.spans)
			slices.Reverse(reversed)
			for _, order := range [][]document.Span{tt.spans, reversed} {
				got, err := New(Config{}, nil).Apply(context.Background(), order, time.Unix(0, 0))
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got[0].Edges, tt.want) {
					t.Errorf("Edges = %q, want %q", got[0].Edges, tt.want)
				}
			}
		})
	}
}
