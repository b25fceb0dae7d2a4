package engines

import (
	"context"
	"fmt"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/querysvc"
	"github.com/meshtrace/meshtrace/indexer/rollup"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/tenant"
)

// engine is one candidate as the benchmark drives it: open a directory, take concurrent writes, close
// (flushing everything to the directory), reopen, and answer the query cases.
type engine interface {
	// open opens (or creates) the engine's database in dir.
	open(dir string) error
	// write stores a batch of spans and their trace documents; safe for concurrent use. Once it returns the
	// documents are durable (as far as the engine's setting says) and searchable.
	write(ctx context.Context, spans []document.Span, traces []document.Trace) error
	// search answers a query case: the matching documents' total and the first page of hits, as querysvc
	// returns them (decoded documents, most recent first unless the case sorts).
	search(ctx context.Context, c *queryCase) (store.Result, error)
	// facet answers the facet case: the top 10 customer_id values among the case's spans.
	facet(ctx context.Context, c *queryCase) ([]store.FacetCount, error)
	// close flushes and releases the database.
	close() error
}

// storeEngine drives a store.Store through querysvc, as the product's read APIs do.
type storeEngine struct {
	openStore func(dir string) (store.Store, error)
	st        store.Store
	svc       *querysvc.Service
}

func (e *storeEngine) open(dir string) error {
	st, err := e.openStore(dir)
	if err != nil {
		return err
	}
	e.st, e.svc = st, querysvc.New(st, querysvc.Config{Keys: rollup.DefaultKeys})
	return nil
}

func (e *storeEngine) write(ctx context.Context, spans []document.Span, traces []document.Trace) error {
	return e.st.Write(ctx, spans, traces)
}

// search compiles the case's query (as the API does, so its cost is in the latency) and runs it through
// querysvc.
func (e *storeEngine) search(ctx context.Context, c *queryCase) (store.Result, error) {
	q, err := query.Compile(c.Src, benchNow)
	if err != nil {
		return store.Result{}, fmt.Errorf("%s: %w", c.Src, err)
	}
	if c.Traces {
		q.Target = query.TraceScope
	}
	return e.svc.Search(tenant.NewContext(ctx, tenant.All()), q, querysvc.Page{Limit: c.Limit}) // every tenant
}

// facet runs Store.Facet on the span index with the case's compiled filter and its time window.
func (e *storeEngine) facet(ctx context.Context, c *queryCase) ([]store.FacetCount, error) {
	q, err := query.Compile(c.Src, benchNow)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Src, err)
	}
	filter := q.Span
	if q.Since != 0 {
		filter = query.Conjoin(filter, &query.Compare{Field: "start", Op: query.Ge, Value: query.Int(q.Since)})
	}
	return e.st.Facet(ctx, store.Spans, filter, "attr.customer_id", 10)
}

func (e *storeEngine) close() error {
	if e.st == nil {
		return nil
	}
	err := e.st.Close()
	e.st, e.svc = nil, nil
	return err
}
