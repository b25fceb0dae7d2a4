package embedded

import (
	"bytes"
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

// pickMerge chooses the segments of the next merge, or nil: up to MergeFactor of the smallest segments
// holding fewer than MaxSegmentRows live rows together, when there are MergeFactor of them; or any segment
// that lost half its rows to deletes, with the small segments that fit beside it. The picked segments are
// marked as merging.
func (x *index) pickMerge() []*live {
	x.commitMu.Lock()
	defer x.commitMu.Unlock()
	var cand []*live
	for _, l := range x.segs {
		if !x.merging[l.seg] && l.liveRows() < x.cfg.MaxSegmentRows {
			cand = append(cand, l)
		}
	}
	slices.SortStableFunc(cand, func(a, b *live) int { return a.liveRows() - b.liveRows() })
	var pick []*live
	sum, sparse := 0, false
	for _, l := range cand {
		if len(pick) == x.cfg.MergeFactor || sum+l.liveRows() > x.cfg.MaxSegmentRows {
			break
		}
		pick, sum = append(pick, l), sum+l.liveRows()
		sparse = sparse || l.liveRows() < int(l.seg.rows())/2
	}
	if len(pick) < x.cfg.MergeFactor && !sparse {
		return nil
	}
	for _, l := range pick {
		x.merging[l.seg] = true
	}
	return pick
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

// rewrite indexes the live rows of pick again into a new segment; newRow maps a copied row.
func (x *index) rewrite(pick []*live) (*segment, func(int, uint32) (uint32, bool), error) {
	b := newBuilder(x.sc, x.enc)
	rows := make([]map[uint32]uint32, len(pick))
	cache := &blockCache{}
	idCol := slices.Index(x.sc.forward, "id")
	for i, l := range pick {
		rows[i] = make(map[uint32]uint32, l.liveRows())
		for r := range l.seg.rows() {
			if l.del != nil && l.del.Contains(r) {
				continue
			}
			src, err := l.seg.doc(r, x.dec, cache)
			if err != nil {
				return nil, nil, err
			}
			rows[i][r] = b.rows
			if err := b.add(l.seg.forwardValue(idCol, "id", r), src); err != nil {
				return nil, nil, err
			}
		}
	}
	seg, err := x.finish(b)
	return seg, func(i int, r uint32) (uint32, bool) { nr, ok := rows[i][r]; return nr, ok }, err
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
	// remap[f][i][o] is the ordinal in the new dictionary of forward path f of pick[i]'s ordinal o.
	remap := make([][][]uint32, len(x.sc.forward))
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
		fwd := slices.Index(x.sc.forward, name)
		if fwd >= 0 {
			remap[fwd] = make([][]uint32, len(pick))
			for i, l := range pick {
				if d, ok := l.seg.dict(name); ok {
					remap[fwd][i] = make([]uint32, d.n())
				}
			}
			for n, en := range entries {
				for _, src := range en.from {
					remap[fwd][src.seg][src.idx] = uint32(n)
				}
			}
		}
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
			numRows, numVals)
	}
	dense := make([][]float64, len(x.sc.sortable))
	for c := range dense {
		for _, l := range pick {
			dense[c] = append(dense[c], l.seg.dense(c)...)
		}
	}
	fwdCols := make([][]uint32, len(x.sc.forward))
	for f := range fwdCols {
		for i, l := range pick {
			for _, o := range l.seg.u32s(l.seg.dir.Forward[f], l.seg.rows()) {
				if o != noOrdinal {
					o = remap[f][i][o]
				}
				fwdCols[f] = append(fwdCols[f], o)
			}
		}
	}
	if err := e.finish(total, minStart, maxStart, dense, fwdCols, bl); err != nil {
		return nil, nil, fmt.Errorf("write %s: %w", name, err)
	}
	seg, err := openSegment(path, name)
	return seg, func(i int, r uint32) (uint32, bool) { return first[i] + r, true }, err
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
