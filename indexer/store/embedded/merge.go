package embedded

import (
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

// merge rewrites the live rows of pick into one segment and swaps it in. Rows deleted while it ran (an
// upsert, retention) are deleted from the new segment at the swap, so nothing deleted comes back.
func (x *index) merge(pick []*live) error {
	for _, l := range pick {
		l.seg.acquire()
	}
	defer release(pick)
	b := newBuilder(x.sc, x.enc)
	// newRow[i][r] is the row of pick[i]'s row r in the new segment (only for rows copied).
	newRow := make([]map[uint32]uint32, len(pick))
	cache := &blockCache{}
	for i, l := range pick {
		newRow[i] = make(map[uint32]uint32, l.liveRows())
		idCol := slices.Index(x.sc.forward, "id")
		for r := range l.seg.rows() {
			if l.del != nil && l.del.Contains(r) {
				continue
			}
			src, err := l.seg.doc(r, x.dec, cache)
			if err != nil {
				return err
			}
			newRow[i][r] = b.rows
			if err := b.add(l.seg.forwardValue(idCol, "id", r), src); err != nil {
				return err
			}
		}
	}
	seg, err := x.finish(b)
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
		cur := current[l.seg]
		for r, nr := range newRow[i] {
			if cur == nil || cur.del != nil && cur.del.Contains(r) {
				del.Add(nr)
			}
		}
		delete(x.merging, l.seg)
	}
	nl := &live{seg: seg}
	if !del.IsEmpty() {
		nl.del, nl.gen = del, 1
		if err := writeFile(x.dir+"/"+delName(seg.name, 1), del); err != nil {
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
