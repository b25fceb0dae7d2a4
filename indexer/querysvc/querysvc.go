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
// Concerns that apply to every read belong here rather than in the handlers or the stores. Tenancy is one:
// every method takes the read's tenant.Scope from its context (set by the API's authentication), refuses a
// read without one (ErrNoScope), and reads the store only through a view that adds the scope's filter to
// every search and facet (scoped), so no route can see past its tenants; a trace crossing tenants shows the
// visible spans and counts the others (Trace.Hidden). The write path does not use it: the rollup reads spans
// back with store.TraceSpans directly, since it must see exactly what the store holds, for every tenant.
package querysvc

import (
	"context"
	"slices"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/rollup"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/tenant"
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

// Trace is one trace read back whole, as the read's scope may see it: its trace document and every span of
// it in start order.
type Trace struct {
	// Trace is the trace document: the one of the scope's part of the trace when one tenant's spans are
	// visible (or the indexer has no tenancy), or, when the scope sees the parts of several tenants, a
	// document computed from the visible spans. It is the zero value when the store holds spans of the trace
	// but no trace document yet.
	Trace document.Trace
	Spans []document.Span
	// Hidden counts the spans of the trace that belong to tenants outside the scope: not returned, only
	// counted, so that a view of a trace crossing teams says that part of it is someone else's.
	Hidden int
}

// MaxLinkedFrom bounds what LinkedFrom returns, and MaxLinkedProducers the producer spans of a trace whose consumers
// are looked up (the first ones in start order).
const (
	MaxLinkedFrom      = 100
	MaxLinkedProducers = 100
)

// Search runs the compiled query q and returns one page of q.Target documents, as Execute describes:
// conditions of both scopes are joined, Result.Partial reporting a cut join. An error wraps
// store.ErrBadRequest for a query the store cannot run (e.g. a sort key out of the target's scope).
func (s *Service) Search(ctx context.Context, q *query.Query, p Page) (store.Result, error) {
	rd, _, err := s.reader(ctx)
	if err != nil {
		return store.Result{}, err
	}
	return Execute(ctx, rd, q, p, s.keys)
}

// Trace returns one trace as the scope of ctx sees it (see Trace); found is false when the store has
// neither a visible span nor a visible trace document of it.
func (s *Service) Trace(ctx context.Context, traceID string) (t Trace, found bool, err error) {
	rd, sc, err := s.reader(ctx)
	if err != nil {
		return Trace{}, false, err
	}
	byTrace := &query.Compare{Field: "trace_id", Op: query.Eq, Value: query.Value{Str: traceID}}
	docs, err := rd.Search(ctx, store.Request{Index: store.Traces, Filter: byTrace, Limit: store.MaxLimit})
	if err != nil {
		return Trace{}, false, err
	}
	if t.Spans, err = store.TraceSpans(ctx, rd, traceID, nil); err != nil {
		return Trace{}, false, err
	}
	switch {
	case len(docs.Traces) == 1:
		t.Trace = docs.Traces[0]
	case len(docs.Traces) > 1:
		t.Trace = s.merged(ctx, t.Spans)
	}
	if !sc.IsAll() {
		// All of the trace's spans counted outside the scope (the store's own tenant enforcement would hide them
		// from a scoped read), less the visible ones.
		all, err := s.st.Search(tenant.NewContext(ctx, tenant.All()), store.Request{Index: store.Spans,
			Filter: byTrace, Limit: 1, Fields: []string{"id"}})
		if err != nil {
			return Trace{}, false, err
		}
		t.Hidden = max(0, all.Total-len(t.Spans))
	}
	return t, len(docs.Traces) > 0 || len(t.Spans) > 0, nil
}

// LinkedFrom returns the spans the scope of ctx sees, of any trace, that link to the producer spans among
// spans or to their parents: the other way of the links, i.e. the consumers that read a trace's messages (a
// Kafka receive span links to every producer context it carried, with the wait in the link's
// meshtrace.kafka.time_in_topic_ms). A record carries its producer's context: the producing application's
// PRODUCER span when its instrumentation made one, else the span the send happened in, whose child is the
// filter's send span. At most MaxLinkedFrom, in start order; none (and no search) without producer spans.
func (s *Service) LinkedFrom(ctx context.Context, spans []document.Span) ([]document.Span, error) {
	rd, _, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	var ids []query.Value
	for _, sp := range spans {
		if sp.Kind != "producer" || len(ids) >= 2*MaxLinkedProducers {
			continue
		}
		ids = append(ids, query.Value{Str: sp.SpanID})
		if sp.ParentSpanID != "" {
			ids = append(ids, query.Value{Str: sp.ParentSpanID})
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	res, err := rd.Search(ctx, store.Request{Index: store.Spans, Filter: &query.In{Field: "links.span_id", Values: ids},
		Sort: []query.Sort{{Field: query.Resolve("start")}}, Limit: MaxLinkedFrom})
	return res.Spans, err
}

// merged is the trace document of spans of several tenants seen together: rolled up as one tenant's.
func (s *Service) merged(ctx context.Context, spans []document.Span) document.Trace {
	all := slices.Clone(spans)
	for i := range all {
		all[i].Tenant = ""
	}
	docs, err := rollup.New(rollup.Config{Keys: s.keys}, nil).Apply(ctx, all, time.Now())
	if err != nil || len(docs) != 1 {
		return document.Trace{} // no loader: Apply cannot fail; one trace id: one document
	}
	return docs[0]
}

// TraceSpans returns every span of one trace that the scope of ctx sees, in start order (none when the trace
// is unknown), paging past store.MaxLimit as store.TraceSpans does.
func (s *Service) TraceSpans(ctx context.Context, traceID string) ([]document.Span, error) {
	rd, _, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	return store.TraceSpans(ctx, rd, traceID, nil)
}

// TracesByID returns the traces of ids that the store holds visible spans of, in the order of ids (each
// once), each read back whole as in Trace (jaeger-query's GetTraces, for a lookup by trace ids). Ids not
// found are left out. It stops between traces when ctx is done.
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
// store.DefaultLimit), each once (a trace crossing tenants the scope sees has a document per tenant) and read
// back with its visible spans (jaeger-query's FindTraces, given the query that api.JaegerQuery makes of the
// Jaeger search parameters). It reads the traces one after the other and stops between them when ctx is done.
func (s *Service) FindTraces(ctx context.Context, q *query.Query, limit int) ([]Trace, error) {
	tq := *q
	tq.Target = query.TraceScope
	res, err := s.Search(ctx, &tq, Page{Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]Trace, 0, len(res.Traces))
	seen := map[string]bool{}
	for _, t := range res.Traces {
		if seen[t.TraceID] {
			continue
		}
		seen[t.TraceID] = true
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
