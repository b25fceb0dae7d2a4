package meili

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// maxValuesPerFacet is the faceting setting of both indexes: how many values of one facet Meilisearch
// returns (its default is 100, too few for a service graph or a services list). Values come most frequent
// first (sortFacetValuesBy count), so a cut keeps the most frequent ones.
const maxValuesPerFacet = store.MaxFacetValues

// faceting is the faceting setting of both indexes (see maxValuesPerFacet). An index created without it
// (the span index before span facets) gets it in one settings update at the next Open (settingsApplied).
func faceting() *meilisearch.Faceting {
	return &meilisearch.Faceting{MaxValuesPerFacet: maxValuesPerFacet,
		SortFacetValuesBy: map[string]meilisearch.SortFacetType{"*": meilisearch.SortFacetTypeCount}}
}

// recountBatch is the number of counting searches sent in one multi-search request (see Facet).
const recountBatch = 100

// Facet implements store.Store with a search asking for the facet distribution of field (filter plus
// facets, no hits). What Meilisearch guarantees, and what this adds:
//
//   - The counts are exact: Meilisearch counts every document matching the filter (not bounded by
//     maxTotalHits or searchCutoffMs's hits), each once per distinct value it holds.
//   - It returns at most maxValuesPerFacet (store.MaxFacetValues) values, the most frequent; ties at that cut
//     are not broken by value, so when the matching documents hold more distinct values than that, the
//     values kept at the cut (and so an answer of store.MaxFacetValues values) may differ from the other
//     stores'. Up to that many distinct values the answer is exact, then ordered and cut by
//     store.SortFacets.
//   - Values equal after its normalization (case) are counted together, under one of their spellings; a
//     string is counted by its first query.MaxValueBytes bytes, as it is filtered.
//   - Meilisearch counts numbers and strings of a field apart but reports them under one key, the string
//     count hiding the number count when a number and a string have the same spelling (customer_id 123 from
//     one service, "123" from another). When its facetStats says the field holds numbers, each value spelled
//     as a number in their range is therefore counted again with a search `filter AND field = value` (which
//     matches both, as the query language's equality does), recountBatch searches per multi-search request:
//     a field holding numbers costs up to store.MaxFacetValues more (small) searches. Measured over 100,000
//     generated spans (storetest.Generate) on 2 cores: a string field with 1,000 values and more, 3 ms; a
//     numeric one with 1,000 values returned, 230 ms (1,000 recounts); one with 2 values (status codes), 2 ms.
//     Counting the two kinds apart without recounts would need the documents to say which fields hold numbers.
//   - Under a restricted tenant scope the search and its recounts are sent with the scope's tenant token
//     (tenant.go), so only the scope's documents are counted.
func (s *Store) Facet(ctx context.Context, index store.Index, filter query.Expr, field string, limit int) ([]store.FacetCount, error) {
	limit, err := store.CheckFacet(index, field, limit)
	if err != nil {
		return nil, err
	}
	rd, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	filter = query.Conjoin(rd.filter, filter)
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
		return rd.client.Index(uid).SearchRawWithContext(ctx, "", req)
	})
	if err != nil {
		return nil, err
	}
	var resp struct {
		FacetDistribution map[string]map[string]int `json:"facetDistribution"`
		FacetStats        map[string]struct {
			Min float64 `json:"min"`
			Max float64 `json:"max"`
		} `json:"facetStats"`
	}
	if err := json.Unmarshal(*raw, &resp); err != nil {
		return nil, fmt.Errorf("meili: facet search %s: decoding the response: %w", uid, err)
	}
	out := make([]store.FacetCount, 0, len(resp.FacetDistribution[field]))
	var numeric []int // indexes in out of the values a number may share
	for v, n := range resp.FacetDistribution[field] {
		if st, ok := resp.FacetStats[field]; ok {
			if x, err := strconv.ParseFloat(v, 64); err == nil && x >= st.Min && x <= st.Max &&
				strconv.FormatFloat(x, 'f', -1, 64) == v {
				numeric = append(numeric, len(out))
			}
		}
		out = append(out, store.FacetCount{Value: v, Count: n})
	}
	if err := s.recount(ctx, rd, uid, filter, field, out, numeric); err != nil {
		return nil, err
	}
	return store.SortFacets(out, limit), nil
}

// recount replaces the counts of the values out[i] (i in which) by the number of documents matching
// `filter AND field = value`, with multi-search requests of recountBatch searches sent with rd's client.
func (s *Store) recount(ctx context.Context, rd reader, uid string, filter query.Expr, field string, out []store.FacetCount, which []int) error {
	zero := int64(0)
	for len(which) > 0 {
		batch := which[:min(len(which), recountBatch)]
		which = which[len(batch):]
		multi := &meilisearch.MultiSearchRequest{}
		for _, i := range batch {
			f, err := compileFilter(query.Conjoin(filter, &query.Compare{Field: field, Op: query.Eq, Value: query.Value{Str: out[i].Value}}))
			if err != nil {
				return fmt.Errorf("%w: %v", store.ErrBadRequest, err)
			}
			multi.Queries = append(multi.Queries, &meilisearch.SearchRequest{IndexUID: uid, Filter: f, Page: 1, HitsPerPage: &zero})
		}
		resp, err := retry(ctx, s, "facet recount "+uid, func() (*meilisearch.MultiSearchResponse, error) {
			return rd.client.MultiSearchWithContext(ctx, multi)
		})
		if err != nil {
			return err
		}
		if len(resp.Results) != len(batch) {
			return fmt.Errorf("meili: facet recount %s: %d results for %d searches", uid, len(resp.Results), len(batch))
		}
		for j, i := range batch {
			out[i].Count = int(resp.Results[j].TotalHits)
		}
	}
	return nil
}
