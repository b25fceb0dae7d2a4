package querysvc

import (
	"context"
	"fmt"
	"slices"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// Page selects a window of hits.
type Page struct {
	Offset int
	Limit  int // 0: store.DefaultLimit
}

// Execute runs a compiled query over s and returns q.Target documents (set q.Target to choose).
//
// A query with conditions in one scope only is one store.Request. A query that mixes scopes is run as a
// semi-join: the side not returned is searched first (most recent store.MaxLimit distinct traces), and its
// trace ids restrict the returned side with `trace_id IN [...]`; store.Result.Partial reports that the first
// side was cut, or that the store answered either search partially. The same join runs for every store, so the backends differ only in how they answer one
// store.Request; storetest checks them through Execute. The time window applies to the start of every
// document searched, span and trace alike. Free text is matched against spans. Service.Search calls it.
func Execute(ctx context.Context, s store.Store, q *query.Query, p Page) (store.Result, error) {
	spanFilter := query.Conjoin(q.Span, window(q))
	traceFilter := query.Conjoin(q.Trace, window(q))
	sort, err := sortFor(q)
	if err != nil {
		return store.Result{}, err
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
	partial := false
	if join != nil {
		ids, total, cut, err := traceIDs(ctx, s, *join)
		if err != nil {
			return store.Result{}, err
		}
		if len(ids) == 0 {
			return store.Result{Partial: cut}, nil
		}
		partial = cut || total > len(ids)
		main.Filter = query.Conjoin(main.Filter, &query.In{Field: "trace_id", Values: ids})
	}
	res, err := s.Search(ctx, main)
	res.Partial = res.Partial || partial
	return res, err
}

// traceIDs runs r and returns the distinct trace ids of its hits, the total number of matches and whether
// the store reported its answer partial. It first asks for the hits in any order, which is far cheaper; only
// when the matches do not all fit in r.Limit does it ask again in r's order, for the most recent ones.
func traceIDs(ctx context.Context, s store.Store, r store.Request) ([]query.Value, int, bool, error) {
	unordered := r
	unordered.Unordered = true
	res, err := s.Search(ctx, unordered)
	if err != nil {
		return nil, 0, false, err
	}
	if res.Total > len(res.Spans)+len(res.Traces) {
		if res, err = s.Search(ctx, r); err != nil {
			return nil, 0, false, err
		}
	}
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
	return ids, res.Total, res.Partial, nil
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
