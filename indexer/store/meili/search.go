package meili

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// Search runs one request on the span or trace index. Hits are sorted by the request's keys (default start
// descending), ties broken by id ascending. Pages are asked for with page/hitsPerPage, which makes
// Meilisearch count every match exactly (up to MaxTotalHits) instead of estimating. Under a restricted
// tenant scope it is sent with the scope's tenant token (tenant.go).
func (s *Store) Search(ctx context.Context, r store.Request) (store.Result, error) {
	limit, err := r.PageSize()
	if err != nil {
		return store.Result{}, err
	}
	rd, err := s.reader(ctx)
	if err != nil {
		return store.Result{}, err
	}
	r.Filter = query.Conjoin(rd.filter, r.Filter)
	if r.Index == store.Traces && len(r.Text) > 0 {
		return store.Result{}, fmt.Errorf("%w: free text applies to spans only", store.ErrBadRequest)
	}
	if err := s.checkRanges(r.Filter); err != nil {
		return store.Result{}, err
	}
	filter, err := compileFilter(r.Filter)
	if err != nil {
		return store.Result{}, fmt.Errorf("%w: %v", store.ErrBadRequest, err)
	}
	// page/hitsPerPage cannot express an offset that is not a multiple of the limit: then fetch from the
	// first hit and drop the offset here.
	page, perPage, skip := int64(r.Offset/limit+1), int64(limit), 0
	if r.Offset%limit != 0 {
		page, perPage, skip = 1, int64(r.Offset+limit), r.Offset
	}
	req := &meilisearch.SearchRequest{
		Query:            searchQuery(r.Text),
		MatchingStrategy: meilisearch.All,
		Sort:             sortParam(r),
		Distinct:         r.Distinct,
		Page:             page,
		HitsPerPage:      &perPage,
	}
	if len(r.Fields) > 0 {
		req.AttributesToRetrieve = r.Fields
	}
	if filter != "" {
		req.Filter = filter
	}
	uid := s.uid(r.Index)
	raw, err := retry(ctx, s, "search "+uid, func() (*json.RawMessage, error) {
		return rd.client.Index(uid).SearchRawWithContext(ctx, "", req)
	})
	if err != nil {
		return store.Result{}, err
	}
	var res store.Result
	var took int64
	if r.Index == store.Traces {
		res.Traces, res.Total, took, err = decodeHits[document.Trace](*raw, skip)
	} else {
		res.Spans, res.Total, took, err = decodeHits[document.Span](*raw, skip)
	}
	if err != nil {
		return store.Result{}, fmt.Errorf("meili: search %s: decoding the response: %w", uid, err)
	}
	// Meilisearch answers a search that reached searchCutoffMs with what it had found, without saying so.
	// Its processing time, measured from before the search started, then reaches the cut-off: such an answer
	// is reported as partial.
	if took >= s.cfg.SearchCutoff.Milliseconds() {
		res.Partial = true
		s.log.Warn("search reached Meilisearch's searchCutoffMs: the answer may be incomplete",
			"index", uid, "processing_ms", took, "cutoff", s.cfg.SearchCutoff)
	}
	return res, nil
}

func decodeHits[T any](raw []byte, skip int) (hits []T, total int, tookMs int64, err error) {
	var resp struct {
		Hits             []T   `json:"hits"`
		TotalHits        int   `json:"totalHits"`
		ProcessingTimeMs int64 `json:"processingTimeMs"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return nil, 0, 0, err
	}
	hits = resp.Hits
	if skip >= len(hits) {
		hits = nil
	} else {
		hits = hits[skip:]
	}
	return hits, resp.TotalHits, resp.ProcessingTimeMs, nil
}

// checkRanges refuses, with a message naming the setting, a range (<, <=, >, >=) on an attribute the span
// index does not index for comparisons (Config.RangeAttributes); Meilisearch would refuse it too, less
// helpfully.
func (s *Store) checkRanges(e query.Expr) error {
	switch e := e.(type) {
	case *query.And:
		return s.checkRangeTerms(e.Terms)
	case *query.Or:
		return s.checkRangeTerms(e.Terms)
	case *query.Not:
		return s.checkRanges(e.X)
	case *query.Compare:
		if e.Op == query.Eq || e.Op == query.Ne || numericField(e.Field) || s.ranged[e.Field] {
			return nil
		}
		return fmt.Errorf("%w: %s %s %s: in Meilisearch, <, <=, > and >= apply to times, durations, counts and the attributes %s (indexer serve --meili-range-attributes)",
			store.ErrBadRequest, e.Field, e.Op, e.Value.Str, strings.Join(s.cfg.RangeAttributes, ", "))
	}
	return nil
}

func (s *Store) checkRangeTerms(terms []query.Expr) error {
	for _, t := range terms {
		if err := s.checkRanges(t); err != nil {
			return err
		}
	}
	return nil
}

// sortParam renders the sort keys of r as "field:asc|desc", defaulting to start descending, and appends id
// ascending as the tie-breaker; an Unordered request is not sorted.
func sortParam(r store.Request) []string {
	if r.Unordered {
		return nil
	}
	keys := r.Sort
	if len(keys) == 0 {
		keys = []query.Sort{{Field: query.Field{Path: "start"}, Desc: true}}
	}
	out := make([]string, 0, len(keys)+1)
	hasID := false
	for _, k := range keys {
		dir := ":asc"
		if k.Desc {
			dir = ":desc"
		}
		out = append(out, k.Field.Path+dir)
		hasID = hasID || k.Field.Path == primaryKey
	}
	if !hasID {
		out = append(out, primaryKey+":asc")
	}
	return out
}

// getTracesChunk bounds the ids per fetch request, keeping the filter small.
const getTracesChunk = 1000

// GetTraces fetches trace documents by id through the documents route (not capped by maxTotalHits). Under
// a restricted tenant scope, which the documents route cannot enforce, it searches for them with the
// scope's tenant token instead (searchTraces).
func (s *Store) GetTraces(ctx context.Context, ids []string) ([]document.Trace, error) {
	rd, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	if rd.restricted {
		return s.searchTraces(ctx, rd, ids)
	}
	uid := s.uid(store.Traces)
	var out []document.Trace
	err = byIDs(ids, getTracesChunk, nil, func(chunk []string, filter string) error {
		var res meilisearch.DocumentsResult
		_, err := retry(ctx, s, "fetch documents from "+uid, func() (struct{}, error) {
			return struct{}{}, s.client.Index(uid).GetDocumentsWithContext(ctx,
				&meilisearch.DocumentsQuery{Filter: filter, Limit: int64(len(chunk))}, &res)
		})
		if err != nil {
			return err
		}
		for _, h := range res.Results {
			var t document.Trace
			if err := h.DecodeInto(&t); err != nil {
				return fmt.Errorf("meili: fetch documents from %s: %w", uid, err)
			}
			out = append(out, t)
		}
		return nil
	})
	return out, err
}

// byIDs calls f for each chunk of at most size ids with the Meilisearch filter matching them (and within,
// when not nil), stopping at the first error.
func byIDs(ids []string, size int, within query.Expr, f func(chunk []string, filter string) error) error {
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), size)]
		ids = ids[len(chunk):]
		vals := make([]query.Value, len(chunk))
		for i, id := range chunk {
			vals[i] = query.Value{Str: id}
		}
		filter, err := compileFilter(query.Conjoin(within, &query.In{Field: primaryKey, Values: vals}))
		if err == nil {
			err = f(chunk, filter)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// searchTraces is GetTraces under a restricted scope: searches on the trace index with rd's client (the
// scope's tenant token) for at most min(getTracesChunk, MaxTotalHits) ids each, unsorted.
func (s *Store) searchTraces(ctx context.Context, rd reader, ids []string) ([]document.Trace, error) {
	uid := s.uid(store.Traces)
	chunkSize := int(min(int64(getTracesChunk), s.cfg.MaxTotalHits))
	var out []document.Trace
	err := byIDs(ids, chunkSize, rd.filter, func(chunk []string, filter string) error {
		perPage := int64(len(chunk))
		req := &meilisearch.SearchRequest{Filter: filter, Page: 1, HitsPerPage: &perPage}
		raw, err := retry(ctx, s, "search "+uid, func() (*json.RawMessage, error) {
			return rd.client.Index(uid).SearchRawWithContext(ctx, "", req)
		})
		if err != nil {
			return err
		}
		traces, _, _, err := decodeHits[document.Trace](*raw, 0)
		if err != nil {
			return fmt.Errorf("meili: search %s: decoding the response: %w", uid, err)
		}
		out = append(out, traces...)
		return nil
	})
	return out, err
}

// DeleteBefore deletes, in both indexes, the documents whose start is before t, and waits for the tasks.
func (s *Store) DeleteBefore(ctx context.Context, t time.Time, within query.Expr) error {
	filter, err := compileFilter(query.Conjoin(&query.Compare{Field: "start", Op: query.Lt,
		Value: query.Value{Str: strconv.FormatInt(t.UnixMicro(), 10), Num: float64(t.UnixMicro()), IsNum: true}}, within))
	if err != nil {
		return err
	}
	for _, ix := range []store.Index{store.Spans, store.Traces} {
		uid := s.uid(ix)
		task, err := retry(ctx, s, "delete documents from "+uid, func() (*meilisearch.TaskInfo, error) {
			return s.client.Index(uid).DeleteDocumentsByFilterWithContext(ctx, filter, nil)
		})
		if err != nil {
			return err
		}
		if err := s.wait(ctx, task.TaskUID); err != nil {
			return err
		}
	}
	return nil
}
