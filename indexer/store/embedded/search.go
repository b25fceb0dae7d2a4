package embedded

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cespare/xxhash/v2"
	gojson "github.com/goccy/go-json"
	"github.com/valyala/fastjson"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// searcher runs one request over a snapshot of an index.
type searcher struct {
	x     *index
	cache blockCache
	cols  []int // sort keys: columns of schema.sortable
	desc  []bool
}

// hit is one matching row.
type hit struct {
	l   *live
	row uint32
}

// matches returns the live rows of l matching the filter and the free text.
func (q *searcher) matches(ctx context.Context, l *live, filter query.Expr, text []string) (*roaring.Bitmap, error) {
	ev := evaluator{x: q.x, seg: l.seg}
	bm := ev.eval(filter)
	if l.del != nil {
		bm.AndNot(l.del)
	}
	if len(text) > 0 && !bm.IsEmpty() {
		var err error
		checked := 0
		bm = ev.text(bm, text, func(r uint32, ws []string) bool {
			if checked++; checked%1024 == 0 && err == nil {
				err = ctx.Err() // reading documents is the slow part of a long phrase: stop with the request
			}
			if err != nil {
				return false
			}
			src, derr := l.seg.doc(r, q.x.dec, &q.cache)
			if derr != nil {
				err = derr
				return false
			}
			return hasPhrase(q.x.sc, src, ws)
		})
		if err != nil {
			return nil, err
		}
	}
	return bm, nil
}

// Search implements store.Store.
func (s *Store) Search(ctx context.Context, r store.Request) (_ store.Result, err error) {
	defer recoverCorrupt(&err)
	limit, err := r.PageSize()
	if err != nil {
		return store.Result{}, err
	}
	// Like Meilisearch's maxTotalHits, no hit beyond position MaxLimit is returned.
	limit = max(0, min(limit, store.MaxLimit-r.Offset))
	x := s.index(r.Index)
	if r.Index == store.Traces && len(r.Text) > 0 {
		return store.Result{}, fmt.Errorf("%w: free text applies to spans only", store.ErrBadRequest)
	}
	if err := check(r.Filter); err != nil {
		return store.Result{}, err
	}
	q := &searcher{x: x}
	keys := r.Sort
	if len(keys) == 0 {
		keys = []query.Sort{{Field: query.Field{Path: "start"}, Desc: true}}
	}
	for _, k := range keys {
		col := slices.Index(x.sc.sortable, k.Field.Path)
		if col < 0 {
			return store.Result{}, fmt.Errorf("%w: cannot sort by %q", store.ErrBadRequest, k.Field.Path)
		}
		q.cols, q.desc = append(q.cols, col), append(q.desc, k.Desc)
	}
	ls := x.snapshot()
	defer release(ls)
	want := r.Offset + limit
	var hits []hit
	total := 0
	switch {
	case r.Distinct != "":
		hits, total, err = q.distinct(ctx, ls, r, want)
	case r.Unordered:
		hits, total, err = q.any(ctx, ls, r, want)
	default:
		hits, total, err = q.top(ctx, ls, r, want)
	}
	if err != nil {
		return store.Result{}, err
	}
	hits = hits[min(r.Offset, len(hits)):]
	out := store.Result{Total: total}
	if err := q.fetch(hits, r.Index, r.Fields, &out); err != nil {
		return store.Result{}, err
	}
	return out, nil
}

// each calls f with the matching rows of every segment of ls, in order, and returns their number.
func (q *searcher) each(ctx context.Context, ls []*live, r store.Request, f func(*live, *roaring.Bitmap) error) (int, error) {
	total := 0
	for _, l := range ls {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		bm, err := q.matches(ctx, l, r.Filter, r.Text)
		if err != nil {
			return 0, err
		}
		total += int(bm.GetCardinality())
		if err := f(l, bm); err != nil {
			return 0, err
		}
	}
	return total, nil
}

func (q *searcher) any(ctx context.Context, ls []*live, r store.Request, want int) ([]hit, int, error) {
	var hits []hit
	total, err := q.each(ctx, ls, r, func(l *live, bm *roaring.Bitmap) error {
		for it := bm.Iterator(); it.HasNext() && len(hits) < want; {
			hits = append(hits, hit{l, it.Next()})
		}
		return nil
	})
	return hits, total, err
}

// top keeps the want first hits in sort order. Segments are visited from the most promising end of the
// first sort key when it is start, and a segment whose starts cannot beat the last kept hit is only counted.
func (q *searcher) top(ctx context.Context, ls []*live, r store.Request, want int) ([]hit, int, error) {
	byStart := q.x.sc.sortable[q.cols[0]] == "start"
	if byStart {
		ls = slices.Clone(ls)
		slices.SortFunc(ls, func(a, b *live) int {
			if q.desc[0] {
				return cmpInt(b.seg.dir.MaxStart, a.seg.dir.MaxStart)
			}
			return cmpInt(a.seg.dir.MinStart, b.seg.dir.MinStart)
		})
	}
	h := &hitHeap{q: q}
	total, err := q.each(ctx, ls, r, func(l *live, bm *roaring.Bitmap) error {
		if want == 0 || bm.IsEmpty() {
			return nil
		}
		if byStart && len(h.hits) == want {
			worst := q.value(h.hits[0], 0)
			if q.desc[0] && !isMissing(worst) && float64(l.seg.dir.MaxStart) < worst ||
				!q.desc[0] && !isMissing(worst) && float64(l.seg.dir.MinStart) > worst {
				return nil
			}
		}
		bm.Iterate(func(row uint32) bool {
			c := hit{l, row}
			if len(h.hits) < want {
				heap.Push(h, c)
			} else if q.less(c, h.hits[0]) {
				h.hits[0] = c
				heap.Fix(h, 0)
			}
			return true
		})
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	out := make([]hit, len(h.hits))
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = heap.Pop(h).(hit)
	}
	return out, total, nil
}

// cmpFloat orders numbers, missing (NaN) first.
func cmpFloat(a, b float64) int {
	switch {
	case isMissing(a) && isMissing(b):
		return 0
	case isMissing(a):
		return -1
	case isMissing(b):
		return 1
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// distinct keeps the first hit in sort order per value of r.Distinct and counts the values.
func (q *searcher) distinct(ctx context.Context, ls []*live, r store.Request, want int) ([]hit, int, error) {
	best := map[string]hit{}
	_, err := q.each(ctx, ls, r, func(l *live, bm *roaring.Bitmap) error {
		for it := bm.Iterator(); it.HasNext(); {
			c := hit{l, it.Next()}
			v, err := q.fieldValue(c, r.Distinct)
			if err != nil {
				return err
			}
			if b, ok := best[v]; !ok || !r.Unordered && q.less(c, b) {
				best[v] = c
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	hits := make([]hit, 0, len(best))
	for _, c := range best {
		hits = append(hits, c)
	}
	slices.SortFunc(hits, func(a, b hit) int {
		if q.less(a, b) {
			return -1
		}
		if q.less(b, a) {
			return 1
		}
		return 0
	})
	return hits[:min(want, len(hits))], len(best), nil
}

// fieldValue is the value of path in the hit's document, as text (a forward column when there is one).
func (q *searcher) fieldValue(c hit, path string) (string, error) {
	if v, ok := c.l.seg.columnValue(path, c.row); ok {
		return v, nil
	}
	src, err := c.l.seg.doc(c.row, q.x.dec, &q.cache)
	if err != nil {
		return "", err
	}
	v, err := fastjson.ParseBytes(src)
	if err != nil {
		return "", err
	}
	if e := v.Get(strings.Split(path, ".")...); e != nil {
		if e.Type() == fastjson.TypeString {
			return string(e.GetStringBytes()), nil
		}
		return e.String(), nil
	}
	return "", nil
}

func (q *searcher) value(c hit, key int) float64 { return c.l.seg.dense(q.cols[key])[c.row] }

// less orders hits by the sort keys (missing values last), then by id ascending.
func (q *searcher) less(a, b hit) bool {
	for k := range q.cols {
		va, vb := q.value(a, k), q.value(b, k)
		ma, mb := isMissing(va), isMissing(vb)
		switch {
		case ma && mb:
			continue
		case ma != mb:
			return mb
		case va != vb:
			return va < vb != q.desc[k]
		}
	}
	return q.id(a) < q.id(b)
}

func (q *searcher) id(c hit) string {
	return c.l.seg.id(c.row)
}

// hitHeap holds the best hits so far with the worst on top.
type hitHeap struct {
	q    *searcher
	hits []hit
}

func (h *hitHeap) Len() int           { return len(h.hits) }
func (h *hitHeap) Less(i, j int) bool { return h.q.less(h.hits[j], h.hits[i]) }
func (h *hitHeap) Swap(i, j int)      { h.hits[i], h.hits[j] = h.hits[j], h.hits[i] }
func (h *hitHeap) Push(v any)         { h.hits = append(h.hits, v.(hit)) }
func (h *hitHeap) Pop() any {
	v := h.hits[len(h.hits)-1]
	h.hits = h.hits[:len(h.hits)-1]
	return v
}

// fetch fills out with the hits' documents: from the ordinal columns when the caller reads only the id and
// the trace id, decoded from the document store otherwise.
func (q *searcher) fetch(hits []hit, index store.Index, fields []string, out *store.Result) error {
	cheap := len(fields) > 0
	for _, f := range fields {
		cheap = cheap && (f == "id" || f == "trace_id")
	}
	for _, c := range hits {
		if trace, ok := c.l.seg.columnValue("trace_id", c.row); cheap && ok {
			if index == store.Traces {
				out.Traces = append(out.Traces, document.Trace{ID: q.id(c), TraceID: trace})
			} else {
				out.Spans = append(out.Spans, document.Span{ID: q.id(c), TraceID: trace})
			}
			continue
		}
		src, err := c.l.seg.doc(c.row, q.x.dec, &q.cache)
		if err != nil {
			return err
		}
		if index == store.Traces {
			var t document.Trace
			if err := gojson.Unmarshal(src, &t); err != nil {
				return fmt.Errorf("embedded store: decode stored document: %w", err)
			}
			out.Traces = append(out.Traces, t)
		} else {
			var sp document.Span
			if err := gojson.Unmarshal(src, &sp); err != nil {
				return fmt.Errorf("embedded store: decode stored document: %w", err)
			}
			out.Spans = append(out.Spans, sp)
		}
	}
	return nil
}

// Facet implements store.Store from the dictionaries: each value's rows are intersected with the filter's,
// so no document is read.
func (s *Store) Facet(ctx context.Context, index store.Index, filter query.Expr, field string, limit int) (_ []store.FacetCount, err error) {
	defer recoverCorrupt(&err)
	limit, err = store.CheckFacet(index, field, limit)
	if err != nil {
		return nil, err
	}
	if err := check(filter); err != nil {
		return nil, err
	}
	x := s.index(index)
	q := &searcher{x: x}
	ls := x.snapshot()
	defer release(ls)
	counts := map[string]int{}
	shown := map[string]string{}
	for _, l := range ls {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, hasStrs := l.seg.dict(field)
		rows, nums := l.seg.numbers(field)
		if !hasStrs && len(rows) == 0 {
			continue
		}
		bm, err := q.matches(ctx, l, filter, nil)
		if err != nil {
			return nil, err
		}
		if bm.IsEmpty() {
			continue
		}
		add := func(k string, c int, value func() string) {
			if _, ok := shown[k]; !ok {
				shown[k] = value()
			}
			counts[k] += c
		}
		if fd := l.seg.fields[field]; fd != nil && fd.OrdBits > 0 && (bm.GetCardinality() < 16*uint64(fd.NStrs) || bm.GetCardinality() < uint64(l.seg.rows())/8) {
			// Few matching rows, for the values to try or for the segment: count the rows' ordinals, rather
			// than intersect every value's rows with them.
			per := make([]int, fd.NStrs)
			bm.Iterate(func(r uint32) bool {
				if o, ok := l.seg.ordinal(fd, r); ok {
					per[o]++
				}
				return true
			})
			for i, c := range per {
				if c > 0 {
					add(string(d.key(uint32(i))), c, func() string { return d.value(uint32(i)) })
				}
			}
		} else {
			for i := range d.n() {
				if c := countIn(d.posting(i), bm); c > 0 {
					add(string(d.key(i)), c, func() string { return d.value(i) })
				}
			}
		}
		// Numbers count under their decimal form, together with the strings that read the same (as
		// Meilisearch counts them).
		for i, r := range rows {
			if bm.Contains(r) {
				k := strconv.FormatFloat(nums[i], 'f', -1, 64)
				add(k, 1, func() string { return k })
			}
		}
	}
	out := make([]store.FacetCount, 0, len(counts))
	for k, c := range counts {
		out = append(out, store.FacetCount{Value: shown[k], Count: c})
	}
	return store.SortFacets(out, limit), nil
}

// GetTraces implements store.Store.
func (s *Store) GetTraces(ctx context.Context, ids []string) (_ []document.Trace, err error) {
	defer recoverCorrupt(&err)
	if len(ids) == 0 {
		return nil, nil
	}
	x := s.traces
	ls := x.snapshot()
	defer release(ls)
	q := &searcher{x: x}
	var out []document.Trace
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, ok := q.lookup(ls, normalize(id))
		if !ok {
			continue
		}
		var res store.Result
		if err := q.fetch([]hit{c}, store.Traces, nil, &res); err != nil {
			return nil, err
		}
		out = append(out, res.Traces...)
	}
	return out, nil
}

// lookup finds the live row of the document with the (normalized) id.
func (q *searcher) lookup(ls []*live, id string) (hit, bool) {
	h := xxhash.Sum64String(id)
	for i := len(ls) - 1; i >= 0; i-- {
		l := ls[i]
		if !l.seg.bloom.mayHold(h) {
			continue
		}
		bm := l.seg.term("id", id)
		if bm == nil {
			continue
		}
		if l.del != nil {
			bm.AndNot(l.del)
		}
		if !bm.IsEmpty() {
			return hit{l, bm.Minimum()}, true
		}
	}
	return hit{}, false
}
