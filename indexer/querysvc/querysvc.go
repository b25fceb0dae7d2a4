// Package querysvc is the indexer's read-side service: the one layer between the read APIs (package api:
// the search API, the Jaeger query API and the web page) and a store.Store, modelled on Jaeger's querysvc.
// The HTTP handlers parse requests and render answers; every read of the store goes through a Service:
//
//   - Search runs a compiled query (package query), joining span and trace scope (Execute);
//   - Trace and TraceSpans fetch a whole trace, paging past store.MaxLimit (store.TraceSpans);
//   - Services, Operations, FindTraces and TracesByID answer the Jaeger query API; Services, Operations and
//     Facet count values (store.Store.Facet) instead of reading spans;
//   - Dependencies and QueryDependencies build the service graph from the trace documents' edges.
//
// Concerns that apply to every read belong here rather than in the handlers or the stores: tenancy
// (restricting every search to a tenant's documents) and caching (of service and operation lists, of
// traces) will live in this package. The write path does not use it: the rollup reads spans back with
// store.TraceSpans directly, since it must see exactly what the store holds, for every tenant, uncached.
package querysvc

import (
	"context"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// Service answers the read APIs from one store. Create it with New; it is safe for concurrent use (as the
// store is). Every method stops when ctx is done, returning an error wrapping ctx's.
type Service struct {
	st   store.Store
	keys []string
}

// Config configures a Service.
type Config struct {
	// Keys are the business keys the rollup copies into trace documents (rollup.Config.Keys, as the
	// indexer's --keys sets them): Search uses them to narrow joins. Empty joins without narrowing by key.
	Keys []string
}

// New returns the service reading st.
func New(st store.Store, cfg Config) *Service { return &Service{st: st, keys: cfg.Keys} }

// Trace is one trace read back whole: its trace document (the zero value when the store holds spans of the
// trace but no trace document yet) and every span of it in start order.
type Trace struct {
	Trace document.Trace
	Spans []document.Span
}

// Search runs the compiled query q and returns one page of q.Target documents, as Execute describes:
// conditions of both scopes are joined, Result.Partial reporting a cut join. An error wraps
// store.ErrBadRequest for a query the store cannot run (e.g. a sort key out of the target's scope).
func (s *Service) Search(ctx context.Context, q *query.Query, p Page) (store.Result, error) {
	return Execute(ctx, s.st, q, p, s.keys)
}

// Trace returns the trace document and every span of one trace (see Trace); found is false when the store
// has neither.
func (s *Service) Trace(ctx context.Context, traceID string) (t Trace, found bool, err error) {
	traces, err := s.st.GetTraces(ctx, []string{traceID})
	if err != nil {
		return Trace{}, false, err
	}
	if t.Spans, err = s.TraceSpans(ctx, traceID); err != nil {
		return Trace{}, false, err
	}
	if len(traces) > 0 {
		t.Trace = traces[0]
	}
	return t, len(traces) > 0 || len(t.Spans) > 0, nil
}

// TraceSpans returns every span of one trace in start order (none when the trace is unknown), paging past
// store.MaxLimit as store.TraceSpans does.
func (s *Service) TraceSpans(ctx context.Context, traceID string) ([]document.Span, error) {
	return store.TraceSpans(ctx, s.st, traceID)
}

// TracesByID returns the traces of ids that the store holds spans of, in the order of ids (each once), each
// read back whole as in Trace (jaeger-query's GetTraces, for a lookup by trace ids). Ids not found are left
// out. It stops between traces when ctx is done.
func (s *Service) TracesByID(ctx context.Context, ids []string) ([]Trace, error) {
	var out []Trace
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		t, found, err := s.Trace(ctx, id)
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return nil, err
		}
		if found && len(t.Spans) > 0 {
			out = append(out, t)
		}
	}
	return out, nil
}

// FindTraces runs q for traces (whatever q.Target says) and returns up to limit of them (0:
// store.DefaultLimit), each read back whole with its spans (jaeger-query's FindTraces, given the query
// that api.JaegerQuery makes of the Jaeger search parameters). It reads the traces one after the other and
// stops between them when ctx is done.
func (s *Service) FindTraces(ctx context.Context, q *query.Query, limit int) ([]Trace, error) {
	tq := *q
	tq.Target = query.TraceScope
	res, err := s.Search(ctx, &tq, Page{Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]Trace, 0, len(res.Traces))
	for _, t := range res.Traces {
		spans, err := s.TraceSpans(ctx, t.TraceID)
		if err == nil {
			err = ctx.Err() // up to store.MaxLimit fetches: stop between them too
		}
		if err != nil {
			return nil, err
		}
		out = append(out, Trace{Trace: t, Spans: spans})
	}
	return out, nil
}
