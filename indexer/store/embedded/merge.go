package embedded

import (
	"bytes"
	"container/heap"
	"fmt"
	"math"
	"path/filepath"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"
)

// mergeLoop merges segments in the background whenever a change may have made a merge worth doing, until
// the index closes. Ingest never waits for it: writes keep adding segments while a merge runs.
func (x *index) mergeLoop() {
	defer close(x.done)
	for {
		select {
		case <-x.stop:
			return
		case <-x.wake:
		}
		for {
			pick := x.pickMerge()
			if pick == nil {
				break
			}
			if err := x.merge(pick); err != nil {
				x.log.Error("embedded store: merge failed; the segments stay as they are", "index", x.dir, "err", err)
				x.doneMerging(pick)
				break
			}
			select {
			case <-x.stop:
				return
			default:
			}
		}
	}
}

// tierBase is the live rows of the smallest tier of the merge policy.
const tierBase = 1000

// pickMerge chooses the segments of the next merge, or nil, and marks them as merging. Segments fall in
// tiers by live rows (under tierBase*MergeFactor, under tierBase*MergeFactor^2, ...); the smallest segments
// of a tier are merged, MergeFactor of them or as many as hold at most MaxSegmentRows live rows together,
// when there are that many. So a document is merged about once per tier, not once per write. A segment
// that lost half its rows to deletes is rewritten (with its tier's smallest, when they fit) to reclaim them.
func (x *index) pickMerge() []*live {
	x.commitMu.Lock()
	defer x.commitMu.Unlock()
	tier := func(rows int) int {
		t := 0
		for n := tierBase * x.cfg.MergeFactor; n <= rows; n *= x.cfg.MergeFactor {
			t++
		}
		return t
	}
	tiers := map[int][]*live{}
	for _, l := range x.segs {
		if !x.merging[l.seg] && l.liveRows() < x.cfg.MaxSegmentRows {
			tiers[tier(l.liveRows())] = append(tiers[tier(l.liveRows())], l)
		}
	}
	for t := range 8 {
		cand := tiers[t]
		slices.SortStableFunc(cand, func(a, b *live) int { return a.liveRows() - b.liveRows() })
		var pick []*live
		sum, sparse, full := 0, false, false
		for _, l := range cand {
			if len(pick) == x.cfg.MergeFactor || sum+l.liveRows() > x.cfg.MaxSegmentRows {
				full = len(pick) > 1 // as many as fit in one segment
				break
			}
			pick, sum = append(pick, l), sum+l.liveRows()
			sparse = sparse || l.liveRows() < int(l.seg.rows())/2
		}
		if full = full || len(pick) == x.cfg.MergeFactor; full || sparse {
			for _, l := range pick {
				x.merging[l.seg] = true
			}
			return pick
		}
	}
	return nil
}

func (x *index) doneMerging(pick []*live) {
	x.commitMu.Lock()
	defer x.commitMu.Unlock()
	for _, l := range pick {
		delete(x.merging, l.seg)
	}
}

// merge combines pick into one segment and swaps it in: by concatenation when few of their rows are
// deleted, by rewriting the live rows otherwise (which reclaims the deleted ones). Rows deleted while it ran
// (an upsert, retention) are deleted from the new segment at the swap, so nothing deleted comes back.
func (x *index) merge(pick []*live) error {
	for _, l := range pick {
		l.seg.acquire()
	}
	defer release(pick)
	rows, deleted := 0, 0
	for _, l := range pick {
		rows, deleted = rows+int(l.seg.rows()), deleted+int(l.seg.rows())-l.liveRows()
	}
	var seg *segment
	var newRow func(i int, r uint32) (uint32, bool)
	var err error
	if deleted*5 <= rows {
		seg, newRow, err = x.concat(pick)
	} else {
		seg, newRow, err = x.rewrite(pick)
	}
	if err != nil {
		return err
	}
	x.commitMu.Lock()
	defer x.commitMu.Unlock()
	current := map[*segment]*live{}
	for _, l := range x.segs {
		current[l.seg] = l
	}
	del := roaring.New()
	c := change{drop: map[*segment]bool{}}
	for i, l := range pick {
		c.drop[l.seg] = true
		delete(x.merging, l.seg)
		gone := l.seg.all() // dropped meanwhile (retention): every row
		if cur := current[l.seg]; cur != nil {
			gone = cur.del
		}
		if gone == nil {
			continue
		}
		gone.Iterate(func(r uint32) bool {
			if nr, ok := newRow(i, r); ok {
				del.Add(nr)
			}
			return true
		})
	}
	nl := &live{seg: seg}
	if !del.IsEmpty() {
		nl.del, nl.gen = del, 1
		if err := writeFile(filepath.Join(x.dir, delName(seg.name, 1)), del); err != nil {
			seg.remove.Store(true)
			seg.release()
			return err
		}
	}
	c.add = []*live{nl}
	if err := x.commit(c); err != nil {
		seg.remove.Store(true)
		seg.release()
		return err
	}
	return nil
}

// rewrite indexes the live rows of pick again into a new segment, in start order (one run); newRow maps a
// copied row.
func (x *index) rewrite(pick []*live) (*segment, func(int, uint32) (uint32, bool), error) {
	b := newBuilder(x.sc, x.enc)
	rows := make([]map[uint32]uint32, len(pick))
	// The runs of every segment, merged by start: each is read in order, through a block cache of its own.
	col := slices.Index(x.sc.sortable, "start")
	h := &runHeap{}
	for i, l := range pick {
		rows[i] = make(map[uint32]uint32, l.liveRows())
		starts := l.seg.dense(col)
		for j, first := range l.seg.dir.Runs {
			end := l.seg.rows()
			if j+1 < len(l.seg.dir.Runs) {
				end = l.seg.dir.Runs[j+1]
			}
			if first < end {
				h.runs = append(h.runs, &run{i: i, l: l, starts: starts, row: first, end: end})
			}
		}
	}
	heap.Init(h)
	for h.Len() > 0 {
		c := h.runs[0]
		if c.l.del == nil || !c.l.del.Contains(c.row) {
			doc, err := c.l.seg.doc(c.row, x.dec, &c.cache)
			if err != nil {
				return nil, nil, err
			}
			rows[c.i][c.row] = b.rows
			if err := b.add(c.l.seg.id(c.row), doc); err != nil {
				return nil, nil, err
			}
		}
		if c.row++; c.row < c.end {
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
	}
	seg, err := x.finish(b)
	return seg, func(i int, r uint32) (uint32, bool) { nr, ok := rows[i][r]; return nr, ok }, err
}

// run is a cursor over one run of rows of a segment being rewritten.
type run struct {
	i        int // in pick
	l        *live
	starts   []float64
	row, end uint32
	cache    blockCache
}

// runHeap orders runs by the start of their next row (then segment, then row), lowest first.
type runHeap struct{ runs []*run }

func (h *runHeap) Len() int { return len(h.runs) }
func (h *runHeap) Less(a, b int) bool {
	x, y := h.runs[a], h.runs[b]
	if c := cmpFloat(x.starts[x.row], y.starts[y.row]); c != 0 {
		return c < 0
	}
	return x.i < y.i || x.i == y.i && x.row < y.row
}
func (h *runHeap) Swap(a, b int) { h.runs[a], h.runs[b] = h.runs[b], h.runs[a] }
func (h *runHeap) Push(v any)    { h.runs = append(h.runs, v.(*run)) }
func (h *runHeap) Pop() any {
	v := h.runs[len(h.runs)-1]
	h.runs = h.runs[:len(h.runs)-1]
	return v
}

// concat writes the rows of pick one segment after the other, deleted rows included: document blocks are
// copied as they are, dictionaries merged in key order, postings and columns shifted by each segment's
// first row. It costs a fraction of indexing the documents again.
func (x *index) concat(pick []*live) (*segment, func(int, uint32) (uint32, bool), error) {
	name := x.newFile()
	path := filepath.Join(x.dir, name)
	e, err := createSegment(path)
	if err != nil {
		return nil, nil, err
	}
	first := make([]uint32, len(pick))
	var total uint32
	minStart, maxStart := int64(math.MaxInt64), int64(math.MinInt64)
	names := map[string]bool{}
	for i, l := range pick {
		s := l.seg
		first[i], total = total, total+s.rows()
		minStart, maxStart = min(minStart, s.dir.MinStart), max(maxStart, s.dir.MaxStart)
		for b := range s.dir.BlockRows {
			e.block(s.data[s.dir.Blocks[b]:s.dir.Blocks[b+1]], first[i]+s.dir.BlockRows[b])
		}
		for _, f := range s.dir.Fields {
			names[f.Name] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	slices.Sort(sorted)
	bl := newBloom(int(total))
	var scratch []uint32
	for _, name := range sorted {
		scratch = scratch[:0]
		var numRows []uint32
		var numVals []float64
		for i, l := range pick {
			fd := l.seg.fields[name]
			if fd == nil {
				continue
			}
			scratch = appendRows(scratch, l.seg.data[fd.Exists:fd.Exists+uint64(fd.ExistsLen)], first[i])
			rows, vals := l.seg.numbers(name)
			for j, r := range rows {
				numRows, numVals = append(numRows, first[i]+r), append(numVals, vals[j])
			}
		}
		exists := appendPosting(nil, scratch)
		entries := mergeDicts(pick, name)
		if name == "id" {
			for _, en := range entries {
				bl.add(string(en.key))
			}
		}
		e.field(name, exists, len(entries),
			func(n int) []byte { return entries[n].key },
			func(n int, buf []byte) []byte {
				rows := scratch[:0]
				for _, src := range entries[n].from {
					d, _ := pick[src.seg].seg.dict(name)
					rows = appendRows(rows, d.posting(src.idx), first[src.seg])
				}
				scratch = rows
				return appendPosting(buf, rows)
			},
			func(n int) string { return entries[n].orig },
			numRows, numVals, mergeOrdinals(pick, name, entries, total))
	}
	dense := make([][]float64, len(x.sc.sortable))
	for c := range dense {
		for _, l := range pick {
			dense[c] = append(dense[c], l.seg.dense(c)...)
		}
	}
	var runs []uint32
	for i, l := range pick {
		for _, r := range l.seg.dir.Runs {
			runs = append(runs, first[i]+r)
		}
	}
	if err := e.finish(total, runs, minStart, maxStart, dense, bl); err != nil {
		return nil, nil, fmt.Errorf("write %s: %w", name, err)
	}
	seg, err := openSegment(path, name)
	return seg, func(i int, r uint32) (uint32, bool) { return first[i] + r, true }, err
}

// mergeOrdinals builds the ordinal column of path over the concatenated rows of pick, given its merged
// dictionary, or nil: when a segment holding the path keeps no ordinal column for it, or when fewer than a
// quarter of the rows would have a value.
func mergeOrdinals(pick []*live, path string, entries []mergedEntry, total uint32) []uint32 {
	remap := make([][]uint32, len(pick))
	for i, l := range pick {
		if fd := l.seg.fields[path]; fd != nil {
			if fd.OrdBits == 0 {
				return nil
			}
			remap[i] = make([]uint32, fd.NStrs)
		}
	}
	for n, en := range entries {
		for _, src := range en.from {
			remap[src.seg][src.idx] = uint32(n)
		}
	}
	missing := uint32(len(entries))
	out := make([]uint32, 0, total)
	present := 0
	for i, l := range pick {
		fd := l.seg.fields[path]
		for r := range l.seg.rows() {
			o := missing
			if fd != nil {
				if old, ok := l.seg.ordinal(fd, r); ok {
					o = remap[i][old]
					present++
				}
			}
			out = append(out, o)
		}
	}
	if !hasOrdinals(false, present, int(total)) {
		return nil
	}
	return out
}

// appendRows appends the rows of an encoded posting, shifted by first.
func appendRows(dst []uint32, p []byte, first uint32) []uint32 {
	if len(p) > 0 && p[0] == postingVarint {
		forVarint(p, func(r uint32) { dst = append(dst, first+r) })
		return dst
	}
	decodePosting(p).Iterate(func(r uint32) bool { dst = append(dst, first+r); return true })
	return dst
}

// mergedEntry is one key of a merged dictionary and the entries of the source dictionaries holding it, in
// segment order (so their shifted rows come out ascending).
type mergedEntry struct {
	key  []byte
	orig string
	from []entryRef
}

type entryRef struct {
	seg int
	idx uint32
}

// mergeDicts merges the dictionaries of path in pick in key order.
func mergeDicts(pick []*live, path string) []mergedEntry {
	type cursor struct {
		d   dict
		seg int
		i   uint32
	}
	var cs []*cursor
	for i, l := range pick {
		if d, ok := l.seg.dict(path); ok {
			cs = append(cs, &cursor{d: d, seg: i})
		}
	}
	var out []mergedEntry
	for {
		var low []byte
		for _, c := range cs {
			if c.i < c.d.n() {
				if k := c.d.key(c.i); low == nil || bytes.Compare(k, low) < 0 {
					low = k
				}
			}
		}
		if low == nil {
			return out
		}
		en := mergedEntry{key: low}
		if len(cs) == 1 {
			en.from = make([]entryRef, 0, 1) // one source: no slice to grow
		}
		for _, c := range cs {
			if c.i < c.d.n() && bytes.Equal(c.d.key(c.i), low) {
				if en.orig == "" && c.d.fd.Orig {
					en.orig = c.d.orig(c.i)
				}
				en.from = append(en.from, entryRef{c.seg, c.i})
				c.i++
			}
		}
		out = append(out, en)
	}
}
