package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/fieldcap"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// manyKeys returns n spans, 10 per trace, each with k span attributes whose keys no other span has (plus
// "common"), and a resource and an event with keys of their own.
func manyKeys(n, k, first int) []document.Span {
	out := make([]document.Span, n)
	for i := range out {
		j := first + i
		trace := fmt.Sprintf("%032x", j/10+1)
		span := fmt.Sprintf("%016x", j+1)
		attr := map[string]any{"common": "x"}
		for a := range k {
			attr[fmt.Sprintf("key.%d.%d", j, a)] = a
		}
		out[i] = document.Span{ID: trace + "-" + span, TraceID: trace, SpanID: span, Name: "op", Service: "svc",
			Kind: "server", StatusCode: "unset", Start: int64(1_700_000_000_000_000 + j), End: int64(1_700_000_000_000_100 + j),
			Duration: 100, Attr: attr, Resource: map[string]any{fmt.Sprintf("res.%d", j): j},
			Events: []document.Event{{Name: "e", Time: int64(1_700_000_000_000_000 + j), Attr: map[string]any{fmt.Sprintf("ev.%d", j): true}}}}
	}
	return out
}

// findAll checks that every span is found by its id and by its trace id.
func findAll(t testing.TB, s store.Store, spans []document.Span) {
	t.Helper()
	ctx := context.Background()
	traces := map[string]int{}
	missing := 0
	for _, sp := range spans {
		traces[sp.TraceID]++
		res, err := s.Search(ctx, store.Request{Index: store.Spans, Filter: &query.Compare{Field: "id", Op: query.Eq, Value: query.Value{Str: sp.ID}}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Total != 1 || len(res.Spans) != 1 || res.Spans[0].Overflow != sp.Overflow {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d spans not found by id (or found with another overflow)", missing, len(spans))
	}
	missing = 0
	for id, n := range traces {
		res, err := s.Search(ctx, store.Request{Index: store.Spans, Filter: &query.Compare{Field: "trace_id", Op: query.Eq, Value: query.Value{Str: id}}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Total != n {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d traces lack spans when searched by trace id", missing, len(traces))
	}
}

// TestFieldCapKeepsSpansFindable writes spans with three times more distinct keys than the cap through a
// Limiter, reopens the store (primed again from Fields) and finds every span after bleve's merges.
func TestFieldCapKeepsSpansFindable(t *testing.T) {
	const limit, spans, perSpan = 1000, 250, 10 // 250*(10+2) = 3,000 distinct keys
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	lim, err := fieldcap.Load(ctx, s, limit, quietCap)
	if err != nil {
		t.Fatal(err)
	}
	var written []document.Span
	for b := range 10 {
		batch := manyKeys(spans/10, perSpan, b*spans/10)
		lim.Apply(batch)
		if err := s.Write(ctx, batch, nil); err != nil {
			t.Fatal(err)
		}
		written = append(written, batch...)
	}
	st := lim.Stats()
	if st.Keys != limit || st.SpansOverflowed == 0 || st.AttributesOverflowed != spans*(perSpan+2)+1-limit {
		t.Errorf("Stats = %+v", st)
	}
	findAll(t, s, written)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fields, err := s.Fields(ctx)
	if err != nil {
		t.Fatal(err)
	}
	attrFields := 0
	for _, f := range fields {
		if document.IsAttributeField(f) {
			attrFields++
		}
		if f == document.OverflowField {
			t.Errorf("the overflow field is indexed")
		}
	}
	if attrFields != limit {
		t.Errorf("after reopening: %d attribute fields, want the cap, %d", attrFields, limit)
	}
	again, err := fieldcap.Load(ctx, s, limit, quietCap)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.Stats().Keys; got != limit {
		t.Errorf("a limiter primed after reopening knows %d keys, want %d", got, limit)
	}
	more := manyKeys(10, 3, spans)
	more[0].Attr["key.0.0"] = "known" // admitted before the restart
	again.Apply(more)
	if len(more[0].Attr) != 2 || more[0].Attr["key.0.0"] != "known" {
		t.Errorf("after reopening: Attr = %v, want common and the known key only", more[0].Attr)
	}
	if err := s.Write(ctx, more, nil); err != nil {
		t.Fatal(err)
	}
	findAll(t, s, append(written, more...))
	res, err := s.Search(ctx, store.Request{Index: store.Spans, Filter: &query.Compare{Field: "attr.common", Op: query.Eq, Value: query.Value{Str: "x"}}, Limit: 1})
	if err != nil || res.Total != spans+10 {
		t.Errorf("attr.common=x: Total %d, err %v; want %d", res.Total, err, spans+10)
	}
}

// BenchmarkTooManyFieldsBreaksBleve measures what the cap prevents: past 65,535 distinct field names, bleve's
// 16-bit field ids (zapx: uint16(len(FieldsInv)+1)) wrap onto earlier fields and searches answer wrongly. It
// writes 700 spans with 71,401 distinct keys (in one batch, or in MESHTRACE_FIELD_LIMIT_DEMO=N batches) to a
// store without the cap, reopens it and searches every span by id, trace id and each of its 100 own
// attributes, reporting the wrong answers (wrong-searches). It is a measurement of bleve, not a test of
// meshtrace (how many searches go wrong depends on bleve's merges), so it runs with `make bench`, about 15 s
// an iteration. Measured with bleve v2.5.7 / zapx v16 on 2 CPUs: writing took 7-9 s; every span was still found
// by id and trace id; 1-2 of the 70,000 attribute searches were wrong.
func BenchmarkTooManyFieldsBreaksBleve(b *testing.B) {
	for b.Loop() {
		b.ReportMetric(float64(tooManyFields(b)), "wrong-searches")
	}
}

// tooManyFields runs one round of BenchmarkTooManyFieldsBreaksBleve and returns the wrong searches.
func tooManyFields(t testing.TB) int {
	const spans, perSpan = 700, 100 // 700*(100+2) > 65,535 distinct keys
	batches := 1
	if n, err := strconv.Atoi(os.Getenv("MESHTRACE_FIELD_LIMIT_DEMO")); err == nil && n > 1 {
		batches = n
	}
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var written []document.Span
	for b := range batches {
		batch := manyKeys(spans/batches, perSpan, b*spans/batches)
		if err := s.Write(ctx, batch, nil); err != nil {
			t.Fatal(err)
		}
		written = append(written, batch...)
	}
	t.Logf("wrote %d spans with %d distinct keys in %v", spans, spans*(perSpan+2)+1, time.Since(start))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fields, err := s.Fields(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d field names after reopening", len(fields))
	findAll(t, s, written)
	// Every span by each of its own attributes: past 65,535 fields, field ids wrap onto earlier fields.
	wrong := 0
	for i, sp := range written {
		for a := range perSpan {
			res, err := s.Search(ctx, store.Request{Index: store.Spans, Limit: 2, Filter: &query.Compare{
				Field: fmt.Sprintf("attr.key.%d.%d", i, a), Op: query.Eq, Value: query.Value{Str: strconv.Itoa(a), Num: float64(a), IsNum: true}}})
			if err != nil {
				t.Fatal(err)
			}
			if res.Total != 1 || res.Spans[0].ID != sp.ID {
				wrong++
			}
		}
	}
	t.Logf("%d of %d attribute searches wrong; done in %v (none: bleve may have lifted the limit, see fieldcap.DefaultCap)",
		wrong, spans*perSpan, time.Since(start))
	return wrong
}

var quietCap = fieldcap.WithLogger(slog.New(slog.DiscardHandler))
