package blevestore

import (
	"context"
	"fmt"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/search"
	bq "github.com/blevesearch/bleve/v2/search/query"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// Search implements store.Store.
func (s *Store) Search(ctx context.Context, r store.Request) (store.Result, error) {
	limit, err := r.PageSize()
	if err != nil {
		return store.Result{}, err
	}
	// Like Meilisearch's maxTotalHits, no hit beyond position MaxLimit is returned.
	limit = max(0, min(limit, store.MaxLimit-r.Offset))
	x := s.spans
	if r.Index == store.Traces {
		x = s.traces
		if len(r.Text) > 0 {
			return store.Result{}, fmt.Errorf("%w: free text applies to spans only", store.ErrBadRequest)
		}
	}
	q, err := compile(r.Filter)
	if err != nil {
		return store.Result{}, err
	}
	if tq := textQuery(r.Text); tq != nil {
		q = bleve.NewConjunctionQuery(q, tq)
	}
	order, err := sortOrder(r.Sort, x.sortable)
	if err != nil {
		return store.Result{}, err
	}
	var hits []*search.DocumentMatch
	var total int
	if r.Distinct != "" {
		hits, total, err = x.distinct(ctx, q, order, r.Distinct, r.Offset+limit)
		hits = hits[min(r.Offset, len(hits)):]
	} else {
		req := bleve.NewSearchRequestOptions(q, limit, r.Offset, false)
		req.Score = bleve.ScoreNone // hits are ordered by fields; unscored searchers use bitmaps
		req.SortByCustom(order)
		req.Fields = []string{sourceField}
		var res *bleve.SearchResult
		res, err = x.b.SearchInContext(ctx, req)
		if res != nil {
			hits, total = res.Hits, int(res.Total)
		}
	}
	if err != nil {
		return store.Result{}, fmt.Errorf("embedded store: search %s: %w", r.Index, err)
	}
	out := store.Result{Total: total}
	for _, h := range hits {
		if r.Index == store.Traces {
			var t document.Trace
			if err := decodeHit(h.Fields, &t); err != nil {
				return store.Result{}, err
			}
			out.Traces = append(out.Traces, t)
		} else {
			var sp document.Span
			if err := decodeHit(h.Fields, &sp); err != nil {
				return store.Result{}, err
			}
			out.Spans = append(out.Spans, sp)
		}
	}
	return out, nil
}

// distinctPage is how many hits one round of a distinct scan reads.
const distinctPage = 1000

// distinct scans every hit in order and keeps the first per value of field, up to want of them; it returns
// those and the number of distinct values matched.
func (x *idx) distinct(ctx context.Context, q bq.Query, order search.SortOrder, field string, want int) ([]*search.DocumentMatch, int, error) {
	seen := map[string]bool{}
	var kept []*search.DocumentMatch
	// Pages by offset: bleve's search-after does not resume on these sort keys (it answered an empty second
	// page), which capped the distinct count at the first page.
	for from := 0; ; {
		req := bleve.NewSearchRequestOptions(q, distinctPage, from, false)
		req.Score = bleve.ScoreNone
		req.SortByCustom(order)
		req.Fields = []string{sourceField}
		res, err := x.b.SearchInContext(ctx, req)
		if err != nil {
			return nil, 0, err
		}
		for _, h := range res.Hits {
			var v map[string]any
			if err := decodeHit(h.Fields, &v); err != nil {
				return nil, 0, err
			}
			key := fmt.Sprint(v[field])
			if seen[key] {
				continue
			}
			seen[key] = true
			if len(kept) < want {
				kept = append(kept, h)
			}
		}
		from += len(res.Hits)
		if len(res.Hits) == 0 || uint64(from) >= res.Total {
			return kept, len(seen), nil
		}
	}
}

// sortOrder turns sort keys into a bleve order; the default is start descending, and id breaks ties.
func sortOrder(keys []query.Sort, sortable map[string]bool) (search.SortOrder, error) {
	if len(keys) == 0 {
		keys = []query.Sort{{Field: query.Field{Path: "start"}, Desc: true}}
	}
	order := make(search.SortOrder, 0, len(keys)+1)
	for _, k := range keys {
		if !sortable[k.Field.Path] {
			return nil, fmt.Errorf("%w: cannot sort by %q", store.ErrBadRequest, k.Field.Path)
		}
		order = append(order, &search.SortField{Field: k.Field.Path, Desc: k.Desc, Type: search.SortFieldAsNumber, Missing: search.SortFieldMissingLast})
	}
	return append(order, &search.SortDocID{}), nil
}

// DeleteBefore implements store.Store.
func (s *Store) DeleteBefore(ctx context.Context, t time.Time, filter query.Expr) error {
	if filter != nil {
		return fmt.Errorf("%w: the bleve engine deletes by time only", store.ErrBadRequest)
	}
	before := float64(t.UnixMicro())
	for _, x := range []*idx{s.spans, s.traces} {
		if err := x.deleteBefore(ctx, before); err != nil {
			return fmt.Errorf("embedded store: retention: %w", err)
		}
	}
	return nil
}

func (x *idx) deleteBefore(ctx context.Context, before float64) error {
	exclusive := false
	q := bleve.NewNumericRangeInclusiveQuery(nil, &before, nil, &exclusive)
	q.SetField("start")
	for {
		req := bleve.NewSearchRequestOptions(q, 10000, 0, false)
		req.Score = bleve.ScoreNone
		res, err := x.b.SearchInContext(ctx, req)
		if err != nil {
			return err
		}
		if len(res.Hits) == 0 {
			return nil
		}
		batch := x.b.NewBatch()
		for _, h := range res.Hits {
			batch.Delete(h.ID)
		}
		if err := x.b.Batch(batch); err != nil {
			return err
		}
	}
}
