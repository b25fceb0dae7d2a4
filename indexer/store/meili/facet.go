package meili

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// maxValuesPerFacet is the faceting setting of the trace index: how many values of one facet Meilisearch
// returns (its default is 100, too few for a service graph). Values come most frequent first
// (sortFacetValuesBy count), so a cut keeps the most frequent ones.
const maxValuesPerFacet = store.MaxFacetValues

// Facet implements store.Store with a search asking for the facet distribution of field and no hits. The
// counts are Meilisearch's: values equal after its normalization (case) are counted together, under one of
// their spellings.
func (s *Store) Facet(ctx context.Context, index store.Index, filter query.Expr, field string, limit int) ([]store.FacetCount, error) {
	limit, err := store.CheckFacet(index, field, limit)
	if err != nil {
		return nil, err
	}
	if err := s.checkRanges(filter); err != nil {
		return nil, err
	}
	f, err := compileFilter(filter)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", store.ErrBadRequest, err)
	}
	zero := int64(0)
	req := &meilisearch.SearchRequest{Facets: []string{field}, Page: 1, HitsPerPage: &zero}
	if f != "" {
		req.Filter = f
	}
	uid := s.uid(index)
	raw, err := retry(ctx, s, "facet search "+uid, func() (*json.RawMessage, error) {
		return s.search.Index(uid).SearchRawWithContext(ctx, "", req)
	})
	if err != nil {
		return nil, err
	}
	var resp struct {
		FacetDistribution map[string]map[string]int `json:"facetDistribution"`
	}
	if err := json.Unmarshal(*raw, &resp); err != nil {
		return nil, fmt.Errorf("meili: facet search %s: decoding the response: %w", uid, err)
	}
	out := make([]store.FacetCount, 0, len(resp.FacetDistribution[field]))
	for v, n := range resp.FacetDistribution[field] {
		out = append(out, store.FacetCount{Value: v, Count: n})
	}
	return store.SortFacets(out, limit), nil
}
