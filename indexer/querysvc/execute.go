package querysvc

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// Page selects a window of hits.
type Page struct {
	Offset int
	Limit  int // 0: store.DefaultLimit
}

// Execute runs a compiled query over s and returns q.Target documents (set q.Target to choose). keys are
// the business keys the rollup copies from span attributes into trace documents (rollup.Config.Keys); they
// only make some joins cheaper, never change an answer over what is indexed (a span and its trace document
// are written together: for the moment between their two indexes becoming searchable, which the index lag
// covers, a span may already be found while its trace document does not show it yet).
//
// A query with conditions in one scope only is one store.Request. A query that mixes scopes is run as a
// semi-join: the side not returned is searched first (most recent store.MaxLimit distinct traces), and its
// trace ids restrict the returned side with `trace_id IN [...]`; store.Result.Partial reports that the first
// side was cut, or that the store answered either search partially. Traces asked for with trace conditions
// and with span conditions that imply more of them (service=X implies trace.services=X, customer_id=123
// implies trace.customer_id=123 for a rolled-up key) are first narrowed on the trace index (narrowedJoin);
// without trace conditions the narrowing could only find more candidates than the span search itself. The same
// plans run for every store, so the backends differ only in how they answer one store.Request; storetest
// checks them through Execute, with and without keys. The time window applies to the start of every document
// searched, span and trace alike. Free text is matched against spans. Service.Search calls it.
func Execute(ctx context.Context, s Reader, q *query.Query, p Page, keys []string) (store.Result, error) {
	pl, err := planQuery(ctx, s, q, p, keys)
	if err != nil || pl.empty {
		return store.Result{Partial: pl.partial}, err
	}
	res, err := s.Search(ctx, pl.main)
	res.Partial = res.Partial || pl.partial
	return res, err
}

// plan is the last request of a query, run after its joins, and what the joins found.
type plan struct {
	main    store.Request // the request on q.Target's index, restricted to the joined trace ids
	partial bool          // a join was cut, or the store answered it partially
	empty   bool          // a join found nothing: no document matches, main need not run
}

// planQuery runs the joins of q (see Execute) and returns the request that answers it.
func planQuery(ctx context.Context, s Reader, q *query.Query, p Page, keys []string) (plan, error) {
	spanFilter := query.Conjoin(q.Span, window(q))
	traceFilter := query.Conjoin(q.Trace, window(q))
	sort, err := sortFor(q)
	if err != nil {
		return plan{}, err
	}
	main := store.Request{Sort: sort, Offset: p.Offset, Limit: p.Limit}
	var join *store.Request
	if q.Target == query.TraceScope {
		main.Index, main.Filter = store.Traces, traceFilter
		if q.Span != nil || len(q.Text) > 0 {
			join = &store.Request{Index: store.Spans, Filter: spanFilter, Text: q.Text, Distinct: "trace_id", Limit: store.MaxLimit,
				Fields: []string{"trace_id"}}
		}
	} else {
		main.Index, main.Filter, main.Text = store.Spans, spanFilter, q.Text
		if q.Trace != nil {
			join = &store.Request{Index: store.Traces, Filter: traceFilter, Limit: store.MaxLimit, Fields: []string{"trace_id"}}
		}
	}
	if join != nil && join.Index == store.Spans && q.Trace != nil {
		if pl, ok, err := narrowedJoin(ctx, s, main, *join, traceFilter, implied(q.Span, keys)); ok || err != nil {
			return pl, err
		}
	}
	if join == nil {
		return plan{main: main}, nil
	}
	ids, total, cut, err := traceIDs(ctx, s, *join)
	if err != nil {
		return plan{}, err
	}
	if len(ids) == 0 {
		return plan{partial: cut, empty: true}, nil
	}
	main.Filter = query.Conjoin(main.Filter, &query.In{Field: "trace_id", Values: ids})
	return plan{main: main, partial: cut || total > len(ids)}, nil
}

// narrowedJoin plans main (on traces) joined with the span search join when the span conditions imply
// trace conditions (implied): it finds the candidate traces with the trace conditions and the implied ones,
// keeps those holding a span of the join, and restricts main to them. Each step is a small search (a
// handful of trace ids instead of every trace the span conditions match). ok is false, and nothing is
// planned, when nothing is implied or the candidates do not fit in store.MaxLimit: then the plain join runs.
func narrowedJoin(ctx context.Context, s Reader, main, join store.Request, traceFilter query.Expr, implied []query.Expr) (plan, bool, error) {
	if len(implied) == 0 {
		return plan{}, false, nil
	}
	res, err := s.Search(ctx, store.Request{Index: store.Traces, Limit: store.MaxLimit, Fields: []string{"trace_id"}, Unordered: true,
		Filter: query.Conjoin(append([]query.Expr{traceFilter}, implied...)...)})
	if err != nil || res.Total > len(res.Traces) {
		return plan{}, false, err
	}
	cand, cut := distinctTraceIDs(res), res.Partial
	if len(cand) == 0 {
		return plan{partial: cut, empty: true}, true, nil
	}
	join.Filter = query.Conjoin(join.Filter, &query.In{Field: "trace_id", Values: cand})
	ids, _, joinCut, err := traceIDs(ctx, s, join) // at most len(cand) distinct traces: never cut
	if err != nil {
		return plan{}, true, err
	}
	if len(ids) == 0 {
		return plan{partial: cut || joinCut, empty: true}, true, nil
	}
	main.Filter = query.Conjoin(main.Filter, &query.In{Field: "trace_id", Values: ids})
	return plan{main: main, partial: cut || joinCut}, true, nil
}

// implied returns trace conditions every trace holding a span that matches the span filter e satisfies:
// for each top-level equality or IN on service (trace.services) or on a rolled-up key attribute (keys.K;
// the rollup takes K from the span's attributes first, so attr.K only, and never an empty value, which it
// skips). Numbers are implied only in their canonical form, the one the rollup writes.
func implied(e query.Expr, keys []string) []query.Expr {
	var terms []query.Expr
	if a, ok := e.(*query.And); ok {
		terms = a.Terms
	} else if e != nil {
		terms = []query.Expr{e}
	}
	traceField := func(f string) string {
		if f == "service" {
			return "services"
		}
		if k, ok := strings.CutPrefix(f, query.AttrPrefix); ok && slices.Contains(keys, k) {
			return query.KeysPrefix + k
		}
		return ""
	}
	canonical := func(v query.Value) bool {
		return v.Str != "" && (!v.IsNum || strconv.FormatFloat(v.Num, 'f', -1, 64) == v.Str)
	}
	var out []query.Expr
	for _, t := range terms {
		switch t := t.(type) {
		case *query.Compare:
			if f := traceField(t.Field); f != "" && t.Op == query.Eq && canonical(t.Value) {
				out = append(out, &query.Compare{Field: f, Op: query.Eq, Value: t.Value})
			}
		case *query.In:
			if f := traceField(t.Field); f != "" && len(t.Values) > 0 && !slices.ContainsFunc(t.Values, func(v query.Value) bool { return !canonical(v) }) {
				out = append(out, &query.In{Field: f, Values: t.Values})
			}
		}
	}
	return out
}

// traceIDs runs r and returns the distinct trace ids of its hits, the total number of matches and whether
// the store reported its answer partial. It first asks for every match in any order and without Distinct,
// which is far cheaper (sorting and Distinct are most of a large Meilisearch search); only when the matches
// do not all fit in r.Limit does it run r itself: the most recent r.Limit distinct traces.
func traceIDs(ctx context.Context, s Reader, r store.Request) ([]query.Value, int, bool, error) {
	fast := r
	fast.Distinct, fast.Unordered = "", true
	res, err := s.Search(ctx, fast)
	if err != nil {
		return nil, 0, false, err
	}
	if res.Total <= len(res.Spans)+len(res.Traces) {
		ids := distinctTraceIDs(res)
		return ids, len(ids), res.Partial, nil
	}
	if res, err = s.Search(ctx, r); err != nil {
		return nil, 0, false, err
	}
	return distinctTraceIDs(res), res.Total, res.Partial, nil
}

// distinctTraceIDs returns the trace ids of the hits, each once, in hit order.
func distinctTraceIDs(res store.Result) []query.Value {
	seen := make(map[string]bool)
	var ids []query.Value
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, query.Value{Str: id})
		}
	}
	for _, sp := range res.Spans {
		add(sp.TraceID)
	}
	for _, tr := range res.Traces {
		add(tr.TraceID)
	}
	return ids
}

// window turns the query's time window into conditions on "start" (same path in both indexes).
func window(q *query.Query) query.Expr {
	var terms []query.Expr
	if q.Since != 0 {
		terms = append(terms, &query.Compare{Field: "start", Op: query.Ge, Value: query.Int(q.Since)})
	}
	if q.Until != 0 {
		terms = append(terms, &query.Compare{Field: "start", Op: query.Le, Value: query.Int(q.Until)})
	}
	return query.Conjoin(terms...)
}

// sortFor maps the query's sort keys to the target index: start, end and duration exist in both. A key on
// a field already sorted by is dropped: it cannot change the order (hits it would order are already equal
// on that field), and stores pay for every key on every hit (bleve's cost per hit grows with the square of
// the keys), so repeats, which query.Compile refuses but a mapped span key can produce (sort=start
// sort=trace.start on traces), never reach the store.
func sortFor(q *query.Query) ([]query.Sort, error) {
	out := make([]query.Sort, 0, len(q.Sort))
	for _, s := range q.Sort {
		if s.Field.Scope != q.Target {
			_, both := query.TraceFields[s.Field.Path]
			if q.Target != query.TraceScope || s.Field.Scope != query.SpanScope || !both {
				return nil, fmt.Errorf("%w: cannot sort %s by %s field %q", store.ErrBadRequest, q.Target, s.Field.Scope, s.Field.Path)
			}
			s.Field.Scope = q.Target
		}
		if !slices.ContainsFunc(out, func(o query.Sort) bool { return o.Field.Path == s.Field.Path }) {
			out = append(out, s)
		}
	}
	return out, nil
}
