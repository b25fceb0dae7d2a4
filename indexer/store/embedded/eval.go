package embedded

import (
	"fmt"
	"slices"
	"sort"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/valyala/fastjson"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// check refuses filters a store cannot run, before any segment is read.
func check(e query.Expr) error {
	switch x := e.(type) {
	case nil, *query.Exists, *query.In:
	case *query.And:
		for _, t := range x.Terms {
			if err := check(t); err != nil {
				return err
			}
		}
	case *query.Or:
		for _, t := range x.Terms {
			if err := check(t); err != nil {
				return err
			}
		}
	case *query.Not:
		return check(x.X)
	case *query.Compare:
		if x.Op != query.Eq && x.Op != query.Ne && !x.Value.IsNum {
			return fmt.Errorf("%w: %s needs a number, got %q", store.ErrBadRequest, x.Op, x.Value.Str)
		}
	default:
		return fmt.Errorf("%w: unsupported filter node %T", store.ErrBadRequest, e)
	}
	return nil
}

// evaluator runs a checked filter over one segment, giving the bitmap of matching rows (deleted rows
// included: the caller removes them).
type evaluator struct {
	x   *index
	seg *segment
}

func (v evaluator) eval(e query.Expr) *roaring.Bitmap {
	switch x := e.(type) {
	case nil:
		return v.seg.all()
	case *query.And:
		return v.and(x.Terms)
	case *query.Or:
		out := roaring.New()
		for _, t := range x.Terms {
			out.Or(v.eval(t))
		}
		return out
	case *query.Not:
		return roaring.AndNot(v.seg.all(), v.eval(x.X))
	case *query.Exists:
		return orEmpty(v.seg.exists(x.Field))
	case *query.In:
		out := roaring.New()
		for _, val := range x.Values {
			out.Or(v.equal(x.Field, val))
		}
		return out
	case *query.Compare:
		switch x.Op {
		case query.Eq:
			return v.equal(x.Field, x.Value)
		case query.Ne:
			return roaring.AndNot(v.seg.all(), v.equal(x.Field, x.Value))
		}
		return v.numbers(x.Field, nil, true, func(f float64) bool { return compare(f, x.Op, x.Value.Num) })
	}
	panic(fmt.Sprintf("embedded store: unchecked filter node %T", e))
}

func orEmpty(bm *roaring.Bitmap) *roaring.Bitmap {
	if bm == nil {
		return roaring.New()
	}
	return bm
}

// and evaluates the index lookups of a conjunction first and its ranges over the rows they leave, so a
// range scans a column only when nothing narrower came before it.
func (v evaluator) and(terms []query.Expr) *roaring.Bitmap {
	var ranges []*query.Compare
	var views []*roaring.Bitmap // read-only postings of plain string equalities
	var out *roaring.Bitmap
	for _, t := range terms {
		c, ok := t.(*query.Compare)
		switch {
		case ok && c.Op != query.Eq && c.Op != query.Ne:
			ranges = append(ranges, c)
			continue
		case ok && c.Op == query.Eq && !c.Value.IsNum:
			view := v.seg.termView(c.Field, normalize(c.Value.Str))
			if view == nil {
				return roaring.New()
			}
			views = append(views, view)
			continue
		}
		bm := v.eval(t)
		if out == nil {
			out = bm
		} else {
			out.And(bm)
		}
		if out.IsEmpty() {
			return out
		}
	}
	// The smallest posting is the one copied; the others only intersect it.
	slices.SortFunc(views, func(a, b *roaring.Bitmap) int { return cmpInt(int64(a.GetCardinality()), int64(b.GetCardinality())) })
	for _, view := range views {
		if out == nil {
			out = view.Clone()
		} else {
			out.And(view)
		}
		if out.IsEmpty() {
			return out
		}
	}
	// The start range first: segments are ordered by time, so it often keeps or drops all rows at once.
	slices.SortStableFunc(ranges, func(a, b *query.Compare) int { return boolInt(b.Field == "start") - boolInt(a.Field == "start") })
	for _, c := range ranges {
		out = v.numbers(c.Field, out, true, func(f float64) bool { return compare(f, c.Op, c.Value.Num) })
		if out.IsEmpty() {
			return out
		}
	}
	if out == nil {
		return v.seg.all()
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func compare(f float64, op query.Op, n float64) bool {
	switch op {
	case query.Lt:
		return f < n
	case query.Le:
		return f <= n
	case query.Gt:
		return f > n
	case query.Ge:
		return f >= n
	}
	return f == n
}

// equal matches the value as a case-insensitive string (booleans are the strings true and false) and, when
// it reads as a number, as a number.
func (v evaluator) equal(path string, val query.Value) *roaring.Bitmap {
	out := orEmpty(v.seg.term(path, normalize(val.Str)))
	if val.IsNum {
		out.Or(v.numbers(path, nil, false, func(f float64) bool { return f == val.Num }))
	}
	return out
}

// numbers returns the rows of within (nil: all rows) whose number at path satisfies ok, a range (<, <=, >,
// >=) when rangeOp is set.
func (v evaluator) numbers(path string, within *roaring.Bitmap, rangeOp bool, ok func(float64) bool) *roaring.Bitmap {
	out := roaring.New()
	s := v.seg
	if col := slices.Index(v.x.sc.sortable, path); col >= 0 {
		if path == "start" && rangeOp && s.dir.MinStart <= s.dir.MaxStart {
			// A range holds on an interval: holding at both ends of the segment's starts, it holds on all of
			// them; failing at both, on none.
			switch lo, hi := ok(float64(s.dir.MinStart)), ok(float64(s.dir.MaxStart)); {
			case lo && hi:
				if within != nil {
					return within
				}
				return s.all()
			case !lo && !hi:
				return out
			}
		}
		vals := s.dense(col)
		if path == "start" && rangeOp {
			return startRange(s, vals, within, ok)
		}
		if within != nil {
			within.Iterate(func(r uint32) bool {
				if x := vals[r]; !isMissing(x) && ok(x) {
					out.Add(r)
				}
				return true
			})
			return out
		}
		for r, x := range vals {
			if !isMissing(x) && ok(x) {
				out.Add(uint32(r))
			}
		}
		return out
	}
	rows, vals := s.numbers(path)
	if within != nil && within.GetCardinality() < uint64(len(rows))/8 {
		within.Iterate(func(r uint32) bool {
			if i := sort.Search(len(rows), func(i int) bool { return rows[i] >= r }); i < len(rows) && rows[i] == r && ok(vals[i]) {
				out.Add(r)
			}
			return true
		})
		return out
	}
	for i, x := range vals {
		if ok(x) {
			out.Add(rows[i])
		}
	}
	if within != nil {
		out.And(within)
	}
	return out
}

// text narrows bm to the rows holding every phrase in one searchable value: two-word phrases are single
// terms; a longer phrase's pairs narrow the rows, and the documents left are checked.
func (v evaluator) text(bm *roaring.Bitmap, phrases []string, check func(row uint32, ws []string) bool) *roaring.Bitmap {
	for _, p := range phrases {
		ws := words(p)
		if len(ws) == 0 {
			continue // nothing searchable (only punctuation): matches everything, as an empty query does
		}
		for _, t := range phraseTerms(ws) {
			bm.And(orEmpty(v.seg.term(textField, t)))
		}
		if len(ws) > 2 {
			keep := roaring.New()
			bm.Iterate(func(r uint32) bool {
				if check(r, ws) {
					keep.Add(r)
				}
				return true
			})
			bm = keep
		}
		if bm.IsEmpty() {
			break
		}
	}
	return bm
}

// hasPhrase reports whether one searchable value of the JSON document holds the words ws in order.
func hasPhrase(sc *schema, src []byte, ws []string) bool {
	v, err := fastjson.ParseBytes(src)
	if err != nil {
		return false
	}
	o, err := v.Object()
	if err != nil {
		return false
	}
	found := false
	var walk func(path string, v *fastjson.Value, searchable bool)
	walk = func(path string, v *fastjson.Value, searchable bool) {
		if found {
			return
		}
		switch v.Type() {
		case fastjson.TypeObject:
			o, _ := v.Object()
			o.Visit(func(k []byte, e *fastjson.Value) {
				p := path + "." + string(k)
				walk(p, e, searchable || sc.searchable[p])
			})
		case fastjson.TypeArray:
			a, _ := v.Array()
			for _, e := range a {
				walk(path, e, searchable)
			}
		case fastjson.TypeString:
			found = searchable && containsPhrase(string(v.GetStringBytes()), ws)
		}
	}
	o.Visit(func(k []byte, e *fastjson.Value) { walk(string(k), e, sc.searchable[string(k)]) })
	return found
}

// startRange returns the rows of within (nil: all) whose start satisfies the range ok: rows are in start
// order within each run of the segment (rows without a start first), so each run gives one interval,
// found by binary search.
func startRange(s *segment, starts []float64, within *roaring.Bitmap, ok func(float64) bool) *roaring.Bitmap {
	out := roaring.New()
	for j, first := range s.dir.Runs {
		end := s.rows()
		if j+1 < len(s.dir.Runs) {
			end = s.dir.Runs[j+1]
		}
		run := starts[first:end]
		k := sort.Search(len(run), func(i int) bool { return !isMissing(run[i]) })
		run, first = run[k:], first+uint32(k)
		if len(run) == 0 {
			continue
		}
		// A range holds on a prefix or a suffix of ascending values.
		if ok(run[0]) {
			i := sort.Search(len(run), func(i int) bool { return !ok(run[i]) })
			out.AddRange(uint64(first), uint64(first)+uint64(i))
		} else {
			i := sort.Search(len(run), func(i int) bool { return ok(run[i]) })
			out.AddRange(uint64(first)+uint64(i), uint64(first)+uint64(len(run)))
		}
	}
	if within != nil {
		out.And(within)
	}
	return out
}
