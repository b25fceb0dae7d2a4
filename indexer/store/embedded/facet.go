package embedded

import (
	"context"
	"fmt"

	"github.com/blevesearch/bleve/v2"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// Facet implements store.Store with a bleve terms facet over the exact values the facetable paths keep
// (facetPrefix, with doc values): no document is loaded. Trace documents written before a path became
// facetable hold no such column and are not counted until they are rewritten.
func (s *Store) Facet(ctx context.Context, index store.Index, filter query.Expr, field string, limit int) ([]store.FacetCount, error) {
	limit, err := store.CheckFacet(index, field, limit)
	if err != nil {
		return nil, err
	}
	x := s.spans
	if index == store.Traces {
		x = s.traces
	}
	q, err := compile(filter)
	if err != nil {
		return nil, err
	}
	req := bleve.NewSearchRequestOptions(q, 0, 0, false)
	req.Score = bleve.ScoreNone
	// Every value is asked for, so that ties at the cut are broken by value, as in the other stores.
	req.AddFacet("f", bleve.NewFacetRequest(facetPrefix+field, store.MaxFacetValues))
	res, err := x.b.SearchInContext(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("embedded store: facet %s of %s: %w", field, index, err)
	}
	var out []store.FacetCount
	if fr := res.Facets["f"]; fr != nil && fr.Terms != nil {
		for _, t := range fr.Terms.Terms() {
			out = append(out, store.FacetCount{Value: t.Term, Count: t.Count})
		}
	}
	return store.SortFacets(out, limit), nil
}
