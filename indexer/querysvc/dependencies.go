package querysvc

import (
	"context"
	"fmt"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// Dependency is one edge of the service graph: calls from Parent to Child (service names, or "topic:<name>"
// for a messaging destination, see package rollup).
type Dependency struct {
	Parent string
	Child  string
	// CallCount is the number of traces that started in the window and hold the edge, not the number of
	// calls (Jaeger's meaning): a trace calling checkout from frontend ten times counts once. It is what a
	// trace document records (document.Trace.Edges), and it ranks edges the same way for the service graph.
	CallCount int
}

// Dependencies returns the service graph of the traces that started in [since, until]: one Dependency per
// edge, most traces first (at most store.MaxFacetValues edges). It reads one aggregation of the trace
// documents' edges (store.Store.Facet), never the spans.
func (s *Service) Dependencies(ctx context.Context, since, until time.Time) ([]Dependency, error) {
	if until.Before(since) {
		return nil, fmt.Errorf("%w: the window ends (%s) before it starts (%s)", store.ErrBadRequest, until, since)
	}
	filter := &query.And{Terms: []query.Expr{
		&query.Compare{Field: "start", Op: query.Ge, Value: query.Int(since.UnixMicro())},
		&query.Compare{Field: "start", Op: query.Le, Value: query.Int(until.UnixMicro())},
	}}
	counts, err := s.st.Facet(ctx, store.Traces, filter, "edges", store.MaxFacetValues)
	if err != nil {
		return nil, err
	}
	out := make([]Dependency, 0, len(counts))
	for _, c := range counts {
		if parent, child, ok := document.ParseEdge(c.Value); ok {
			out = append(out, Dependency{Parent: parent, Child: child, CallCount: c.Count})
		}
	}
	return out, nil
}
