package blevestore

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
	if !x.facetable[field] {
		// Only the trace fields of 5c0dec1's store.FacetFields have a column of exact values here.
		return nil, fmt.Errorf("%w: this store cannot count the values of %q in the %s index", store.ErrBadRequest, field, index)
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
