package fieldcap

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
)

// counter is a slog handler counting records.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) Enabled(context.Context, slog.Level) bool { return true }
func (c *counter) Handle(context.Context, slog.Record) error {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return nil
}
func (c *counter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *counter) WithGroup(string) slog.Handler      { return c }

func quiet() Option { return WithLogger(slog.New(&counter{})) }

func TestApply(t *testing.T) {
	shared := map[string]any{"service.name": "svc", "host.name": "h1"}
	tests := []struct {
		name   string
		cap    int
		known  []string
		in     []document.Span
		want   []document.Span
		keys   int64
		spans  int64           // spans overflowed
		attrs  int64           // attributes overflowed
		before []document.Span // inputs to apply first (same limiter)
	}{
		{
			name:  "known keys kept past the cap",
			cap:   1,
			known: []string{"attr.a", "attr.b", "resource.service.name", "name", "events.name", "_source"},
			in:    []document.Span{{ID: "1", Attr: map[string]any{"a": 1, "b": "x"}, Resource: map[string]any{"service.name": "s"}}},
			want:  []document.Span{{ID: "1", Attr: map[string]any{"a": 1, "b": "x"}, Resource: map[string]any{"service.name": "s"}}},
			keys:  3,
		},
		{
			name: "new keys admitted up to the cap",
			cap:  3,
			in: []document.Span{
				{ID: "1", Attr: map[string]any{"a": 1}},
				{ID: "2", Attr: map[string]any{"a": 2, "b": true}, Resource: map[string]any{"r": "x"}},
			},
			want: []document.Span{
				{ID: "1", Attr: map[string]any{"a": 1}},
				{ID: "2", Attr: map[string]any{"a": 2, "b": true}, Resource: map[string]any{"r": "x"}},
			},
			keys: 3,
		},
		{
			name:  "beyond the cap into the overflow field",
			cap:   2,
			known: []string{"attr.a"},
			in: []document.Span{{ID: "1",
				Attr:     map[string]any{"a": 1, "b": "kept", "c": "over", "d": []any{"x", "y"}},
				Resource: map[string]any{"rk": 7},
				Events:   []document.Event{{Name: "e0"}, {Name: "e1"}, {Name: "e2", Attr: map[string]any{"y": true}}},
				Links:    []document.Link{{TraceID: "t", SpanID: "s", Attr: map[string]any{"z": "w"}}},
			}},
			// Maps are iterated in random order, so which of b, c, d is admitted is not fixed: see the check.
			keys: 2, spans: 1, attrs: 5,
		},
		{
			name: "an attribute is admitted with all its names or not at all",
			cap:  2,
			in: []document.Span{{ID: "1", Attr: map[string]any{"kv": []any{map[string]any{"p": 1, "q": 2}}}},
				{ID: "2", Attr: map[string]any{"one": 1}}},
			want: []document.Span{
				{ID: "1", Overflow: `{"attr.kv":[{"p":1,"q":2}]}`},
				{ID: "2", Attr: map[string]any{"one": 1}},
			},
			keys: 1, spans: 1, attrs: 1,
		},
		{
			name:  "nested names count against the cap",
			cap:   3,
			known: []string{"attr.kv", "attr.kv.p"},
			in: []document.Span{{ID: "1", Attr: map[string]any{"kv": []any{map[string]any{"p": 1, "q": 2}}}},
				{ID: "2", Attr: map[string]any{"x": 1}}},
			want: []document.Span{{ID: "1", Attr: map[string]any{"kv": []any{map[string]any{"p": 1, "q": 2}}}},
				{ID: "2", Overflow: `{"attr.x":1}`}},
			keys: 3, spans: 1, attrs: 1,
		},
		{
			name:  "merged with an existing overflow",
			cap:   1,
			known: []string{"attr.a"},
			in:    []document.Span{{ID: "1", Attr: map[string]any{"a": 1, "b": 2}, Overflow: `{"attr.z":"old","resource.q":12345678901234567890}`}},
			want:  []document.Span{{ID: "1", Attr: map[string]any{"a": 1}, Overflow: `{"attr.b":2,"attr.z":"old","resource.q":12345678901234567890}`}},
			keys:  1, spans: 1, attrs: 1,
		},
		{
			name:  "a shared resource map gets one decision",
			cap:   1,
			known: []string{"resource.service.name"},
			in:    []document.Span{{ID: "1", Resource: shared}, {ID: "2", Resource: shared}},
			want: []document.Span{
				{ID: "1", Resource: map[string]any{"service.name": "svc"}, Overflow: `{"resource.host.name":"h1"}`},
				{ID: "2", Resource: map[string]any{"service.name": "svc"}, Overflow: `{"resource.host.name":"h1"}`},
			},
			keys: 1, spans: 2, attrs: 2,
		},
		{
			name:   "keys admitted by an earlier batch stay known",
			cap:    1,
			before: []document.Span{{ID: "0", Attr: map[string]any{"first": 1}}},
			in:     []document.Span{{ID: "1", Attr: map[string]any{"first": 2, "second": 3}}},
			want:   []document.Span{{ID: "1", Attr: map[string]any{"first": 2}, Overflow: `{"attr.second":3}`}},
			keys:   1, spans: 1, attrs: 1,
		},
		{
			name: "same key in span, event and link attributes is three fields",
			cap:  2,
			in: []document.Span{{ID: "1", Attr: map[string]any{"k": 1},
				Events: []document.Event{{Name: "e", Attr: map[string]any{"k": 2}}},
				Links:  []document.Link{{Attr: map[string]any{"k": 3}}}}},
			want: []document.Span{{ID: "1", Attr: map[string]any{"k": 1},
				Events:   []document.Event{{Name: "e", Attr: map[string]any{"k": 2}}},
				Links:    []document.Link{{}},
				Overflow: `{"links[0].attr.k":3}`}},
			keys: 2, spans: 1, attrs: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(tt.cap, tt.known, quiet())
			l.Apply(tt.before)
			inputs := snapshot(t, tt.in)
			got := append([]document.Span(nil), tt.in...)
			l.Apply(got)
			if tt.want != nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Apply =\n %s\nwant\n %s", js(t, got), js(t, tt.want))
			}
			if after := snapshot(t, tt.in); after != inputs {
				t.Errorf("Apply changed the maps or slices of its input:\n %s\nwas\n %s", after, inputs)
			}
			st := l.Stats()
			want := Stats{Cap: tt.cap, Keys: tt.keys, SpansOverflowed: tt.spans, AttributesOverflowed: tt.attrs}
			if st != want {
				t.Errorf("Stats = %+v, want %+v", st, want)
			}
			again := append([]document.Span(nil), got...)
			l.Apply(again)
			if !reflect.DeepEqual(again, got) || l.Stats() != st {
				t.Errorf("Apply on its own output changed it: %s", js(t, again))
			}
		})
	}
}

func TestApplyOverflowContents(t *testing.T) {
	l := New(2, []string{"attr.a"}, quiet())
	spans := []document.Span{{ID: "1",
		Attr:     map[string]any{"a": 1, "b": "kept", "c": "over", "d": []any{"x", "y"}},
		Resource: map[string]any{"rk": 7},
		Events:   []document.Event{{Name: "e0"}, {Name: "e1"}, {Name: "e2", Attr: map[string]any{"y": true}}},
		Links:    []document.Link{{TraceID: "t", SpanID: "s", Attr: map[string]any{"z": "w"}}},
	}}
	l.Apply(spans)
	s := spans[0]
	if len(s.Attr) != 2 || s.Attr["a"] != 1 {
		t.Fatalf("Attr = %v, want a and one of b, c, d", s.Attr)
	}
	over, err := s.OverflowAttributes()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"attr.b": "kept", "attr.c": "over", "attr.d": []any{"x", "y"},
		"resource.rk": 7.0, "events[2].attr.y": true, "links[0].attr.z": "w"}
	for k := range s.Attr {
		delete(want, "attr."+k)
	}
	if !reflect.DeepEqual(over, want) {
		t.Errorf("Overflow = %s, want %v", s.Overflow, want)
	}
	if s.Resource != nil || s.Events[2].Attr != nil || s.Links[0].Attr != nil || s.Events[0].Name != "e0" {
		t.Errorf("overflowed maps left behind: %s", js(t, s))
	}
}

// TestConcurrent applies batches with distinct new keys from many goroutines: exactly cap keys are admitted,
// every attribute is either indexed or in the overflow, and the counters add up.
func TestConcurrent(t *testing.T) {
	const cap, workers, batches, perSpan = 500, 8, 20, 10
	l := New(cap, nil, quiet())
	out := make([][]document.Span, workers*batches)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for b := range batches {
				spans := make([]document.Span, 3)
				for i := range spans {
					attr := map[string]any{"common": i}
					for k := range perSpan {
						attr[fmt.Sprintf("w%d.b%d.k%d", w, b, k)] = k
					}
					spans[i] = document.Span{ID: fmt.Sprint(w, b, i), Attr: attr}
				}
				l.Apply(spans)
				out[w*batches+b] = spans
			}
		})
	}
	wg.Wait()
	indexed := map[string]bool{}
	var overflowed, spansOver int64
	for _, spans := range out {
		for _, s := range spans {
			for k := range s.Attr {
				indexed[k] = true
			}
			over, err := s.OverflowAttributes()
			if err != nil {
				t.Fatal(err)
			}
			if len(over) > 0 {
				spansOver++
			}
			overflowed += int64(len(over))
			if len(s.Attr)+len(over) != perSpan+1 {
				t.Fatalf("span %s: %d indexed + %d overflowed attributes, want %d", s.ID, len(s.Attr), len(over), perSpan+1)
			}
			for k := range over {
				if indexed["attr."+k] {
					t.Errorf("key %s both indexed and overflowed", k)
				}
			}
		}
	}
	st := l.Stats()
	if len(indexed) != cap || st.Keys != cap {
		t.Errorf("%d keys indexed, Stats.Keys %d; want %d", len(indexed), st.Keys, cap)
	}
	if st.AttributesOverflowed != overflowed || st.SpansOverflowed != spansOver {
		t.Errorf("Stats %+v; counted %d attributes on %d spans", st, overflowed, spansOver)
	}
}

func TestWarnsOnce(t *testing.T) {
	c := &counter{}
	l := New(1, nil, WithLogger(slog.New(c)))
	for i := range 100 {
		l.Apply([]document.Span{{ID: "x", Attr: map[string]any{fmt.Sprint("k", i): i}}})
	}
	if c.n != 1 {
		t.Errorf("%d warnings for 99 overflowing batches, want 1", c.n)
	}
	if st := l.Stats(); st.SpansOverflowed != 99 || st.AttributesOverflowed != 99 || st.Keys != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestNewDefaults(t *testing.T) {
	if got := New(0, nil).Cap(); got != DefaultCap {
		t.Errorf("New(0).Cap() = %d, want DefaultCap", got)
	}
	if got := New(1<<20, nil).Cap(); got != MaxCap {
		t.Errorf("New(1<<20).Cap() = %d, want MaxCap", got)
	}
}

// TestLoad primes a limiter from a store that already holds keys: they stay indexed past the cap.
func TestLoad(t *testing.T) {
	ctx := context.Background()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	old := document.Span{ID: "a-1", TraceID: "a", SpanID: "1", Attr: map[string]any{"x": 1, "y": 2},
		Events: []document.Event{{Name: "e", Attr: map[string]any{"z": 3}}}}
	if err := st.Write(ctx, []document.Span{old}, nil); err != nil {
		t.Fatal(err)
	}
	l, err := Load(ctx, st, 1, quiet())
	if err != nil {
		t.Fatal(err)
	}
	spans := []document.Span{{ID: "a-2", Attr: map[string]any{"x": 1, "y": 2, "new": 3},
		Events: []document.Event{{Name: "e", Attr: map[string]any{"z": 3}}}}}
	l.Apply(spans)
	if len(spans[0].Attr) != 2 || spans[0].Overflow != `{"attr.new":3}` || len(spans[0].Events[0].Attr) != 1 {
		t.Errorf("after Load: %s", js(t, spans[0]))
	}
	if got := l.Stats().Keys; got != 3 {
		t.Errorf("Keys = %d, want 3 (attr.x, attr.y, events.attr.z)", got)
	}
}

func BenchmarkApplyKnown(b *testing.B) {
	l := New(DefaultCap, nil, quiet())
	spans := make([]document.Span, 1000)
	res := map[string]any{"service.name": "s", "host.name": "h", "k8s.pod.name": "p"}
	for i := range spans {
		spans[i] = document.Span{ID: fmt.Sprint(i), Resource: res,
			Attr: map[string]any{"http.method": "GET", "http.route": "/x", "http.status_code": 200, "net.peer.name": "db"}}
	}
	l.Apply(spans)
	b.ReportAllocs()
	for b.Loop() {
		l.Apply(spans)
	}
}

func snapshot(t *testing.T, spans []document.Span) string { return js(t, spans) }

func js(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWithKeysAreAlwaysIndexed primes business keys: they are kept past the cap, which they count towards.
func TestWithKeysAreAlwaysIndexed(t *testing.T) {
	l := New(2, nil, quiet(), WithKeys("customer_id"))
	if got := l.Stats().Keys; got != 2 {
		t.Fatalf("%d keys known after priming one business key, want 2 (attr. and resource.)", got)
	}
	spans := []document.Span{{ID: "a-1", Attr: map[string]any{"customer_id": "123", "other": 1},
		Resource: map[string]any{"customer_id": "123"}}}
	l.Apply(spans)
	if spans[0].Attr["customer_id"] != "123" || spans[0].Resource["customer_id"] != "123" || spans[0].Overflow != `{"attr.other":1}` {
		t.Fatalf("after Apply: %+v", spans[0])
	}
}

// TestTenantCap gives each tenant 2 of a cap of 5 names: team-a's third new key overflows, team-b still gets
// two, a key team-a created costs team-b nothing, and the global cap still holds.
func TestTenantCap(t *testing.T) {
	l := New(5, nil, quiet(), WithTenantCap(2))
	span := func(tn string, keys ...string) document.Span {
		m := map[string]any{}
		for _, k := range keys {
			m[k] = 1
		}
		return document.Span{ID: tn + "_1", Tenant: tn, Attr: m}
	}
	spans := []document.Span{span("team-a", "a1"), span("team-a", "a2"), span("team-a", "a3"), span("team-b", "a1", "b1", "b2"),
		span("team-c", "c1", "c2")}
	l.Apply(spans)
	indexed := func(s document.Span) int { return len(s.Attr) }
	if indexed(spans[0]) != 1 || indexed(spans[1]) != 1 || indexed(spans[2]) != 0 || spans[2].Overflow != `{"attr.a3":1}` {
		t.Errorf("team-a: %+v; want a1 and a2 indexed, a3 overflowed", spans[:3])
	}
	if indexed(spans[3]) != 3 || spans[3].Overflow != "" {
		t.Errorf("team-b: %d keys indexed (a1 known already), overflow %q; want all 3", indexed(spans[3]), spans[3].Overflow)
	}
	if indexed(spans[4]) != 1 || l.Stats().Keys != 5 {
		t.Errorf("team-c: %d keys indexed with %d of 5 names used; want the global cap to leave room for 1", indexed(spans[4]), l.Stats().Keys)
	}
}
