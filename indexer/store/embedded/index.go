package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/meshtrace/meshtrace/indexer/query"
)

// index is one document kind (spans or traces): a directory of immutable segments, the rows deleted from
// each, and a manifest naming the live set. Every change (a write, a merge, retention) builds its new
// files, fsyncs them, then replaces the manifest atomically (write, fsync, rename, fsync the directory):
// after a crash the manifest names a consistent state and files it does not name are removed on open.
type index struct {
	dir string
	sc  *schema
	cfg Config
	log *slog.Logger

	commitMu sync.Mutex // serializes changes to the live set and the manifest
	mu       sync.RWMutex
	segs     []*live // the live set, oldest first; replaced, never modified in place
	next     int     // number of the next file
	merging  map[*segment]bool

	enc *zstd.Encoder
	dec *zstd.Decoder

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// live is a segment of the live set and its deleted rows (nil: none) at generation gen.
type live struct {
	seg *segment
	del *roaring.Bitmap
	gen int
}

func (l *live) liveRows() int {
	n := int(l.seg.rows())
	if l.del != nil {
		n -= int(l.del.GetCardinality())
	}
	return n
}

// manifest is the JSON file naming the live set.
type manifest struct {
	Next     int           `json:"next"`
	Segments []manifestSeg `json:"segments"`
}

type manifestSeg struct {
	Name string `json:"name"`
	Del  int    `json:"del,omitempty"` // generation of its deleted-rows file; 0: none
}

const manifestName = "MANIFEST"

func delName(seg string, gen int) string { return fmt.Sprintf("%s.del-%d", seg, gen) }

func openIndex(dir string, sc *schema, cfg Config, log *slog.Logger) (*index, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0))
	if err != nil {
		return nil, err
	}
	x := &index{dir: dir, sc: sc, cfg: cfg, log: log, merging: map[*segment]bool{}, enc: enc, dec: dec,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	var m manifest
	switch b, err := os.ReadFile(filepath.Join(dir, manifestName)); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", manifestName, err)
		}
	}
	x.next = m.Next
	keep := map[string]bool{manifestName: true}
	for _, ms := range m.Segments {
		seg, err := openSegment(filepath.Join(dir, ms.Name), ms.Name)
		if err != nil {
			x.closeSegments()
			return nil, err
		}
		l := &live{seg: seg, gen: ms.Del}
		keep[ms.Name] = true
		if ms.Del > 0 {
			name := delName(ms.Name, ms.Del)
			keep[name] = true
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err == nil {
				l.del = roaring.New()
				err = l.del.UnmarshalBinary(b)
			}
			if err != nil {
				x.segs = append(x.segs, l)
				x.closeSegments()
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
		x.segs = append(x.segs, l)
	}
	// Files no manifest names: a change that crashed before its manifest, or replaced files.
	ents, err := os.ReadDir(dir)
	if err != nil {
		x.closeSegments()
		return nil, err
	}
	for _, e := range ents {
		if !keep[e.Name()] {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	go x.mergeLoop()
	x.signal() // what the last process left unmerged
	return x, nil
}

func (x *index) closeSegments() {
	for _, l := range x.segs {
		l.seg.release()
	}
	x.segs = nil
}

func (x *index) close() {
	close(x.stop)
	<-x.done
	x.mu.Lock()
	x.closeSegments()
	x.mu.Unlock()
	x.dec.Close()
}

// snapshot returns the live set with a reference on each segment; release gives them back.
func (x *index) snapshot() []*live {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := slices.Clone(x.segs)
	for _, l := range out {
		l.seg.acquire()
	}
	return out
}

func release(ls []*live) {
	for _, l := range ls {
		l.seg.release()
	}
}

// newFile reserves a file name.
func (x *index) newFile() string {
	x.commitMu.Lock()
	defer x.commitMu.Unlock()
	x.next++
	return fmt.Sprintf("seg-%08d", x.next)
}

// build indexes docs (ids unique, in start order) into a new segment file and opens it.
func (x *index) build(docs []pending) (*segment, error) {
	b := newBuilder(x.sc, x.enc)
	for _, d := range docs {
		if err := b.add(d.id, d.src); err != nil {
			return nil, err
		}
	}
	return x.finish(b)
}

func (x *index) finish(b *builder) (*segment, error) {
	name := x.newFile()
	path := filepath.Join(x.dir, name)
	if err := b.encode(path); err != nil {
		return nil, fmt.Errorf("write %s: %w", name, err)
	}
	return openSegment(path, name)
}

// change describes one commit: segments to add, segments to drop, rows to delete from the others.
type change struct {
	add  []*live
	drop map[*segment]bool
	del  map[*segment]*roaring.Bitmap // rows to add to a segment's deleted rows
}

// commit applies c to the live set and the manifest. Called with commitMu held.
func (x *index) commit(c change) error {
	next := make([]*live, 0, len(x.segs)+len(c.add))
	var written []string
	for _, l := range x.segs {
		if c.drop[l.seg] {
			continue
		}
		if rows := c.del[l.seg]; rows != nil && !rows.IsEmpty() {
			del := rows.Clone()
			if l.del != nil {
				del.Or(l.del)
			}
			if l.del == nil || del.GetCardinality() != l.del.GetCardinality() {
				nl := &live{seg: l.seg, del: del, gen: l.gen + 1}
				name := delName(l.seg.name, nl.gen)
				if err := writeFile(filepath.Join(x.dir, name), del); err != nil {
					removeAll(x.dir, written)
					return err
				}
				written = append(written, name)
				next = append(next, nl)
				continue
			}
		}
		next = append(next, l)
	}
	next = append(next, c.add...)
	m := manifest{Next: x.next}
	for _, l := range next {
		m.Segments = append(m.Segments, manifestSeg{Name: l.seg.name, Del: l.gen})
	}
	if err := x.writeManifest(m); err != nil {
		removeAll(x.dir, written)
		return err
	}
	x.mu.Lock()
	old := x.segs
	x.segs = next
	x.mu.Unlock()
	// Replaced deleted-rows files and dropped segments go once nothing uses them.
	kept := map[*segment]int{}
	for _, l := range next {
		kept[l.seg] = l.gen
	}
	for _, l := range old {
		gen, ok := kept[l.seg]
		if l.gen > 0 && (!ok || gen != l.gen) {
			os.Remove(filepath.Join(x.dir, delName(l.seg.name, l.gen)))
		}
		if !ok {
			l.seg.remove.Store(true)
			l.seg.release()
		}
	}
	return nil
}

func removeAll(dir string, names []string) {
	for _, n := range names {
		os.Remove(filepath.Join(dir, n))
	}
}

func writeFile(path string, bm *roaring.Bitmap) error {
	b, err := bm.ToBytes()
	if err != nil {
		return err
	}
	return writeSynced(path, b)
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

func (x *index) writeManifest(m manifest) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := filepath.Join(x.dir, manifestName+".tmp")
	if err := writeSynced(tmp, b); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(x.dir, manifestName)); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	d, err := os.Open(x.dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// older finds the rows of the live set holding any of ids (normalized), for an upsert to delete.
func (x *index) older(ids []string) map[*segment]*roaring.Bitmap {
	out := map[*segment]*roaring.Bitmap{}
	hashes := make([]uint64, len(ids))
	for i, id := range ids {
		hashes[i] = xxhash.Sum64String(id)
	}
	for _, l := range x.segs {
		d, ok := l.seg.dict("id")
		if !ok {
			continue
		}
		for i, id := range ids {
			if !l.seg.bloom.mayHold(hashes[i]) {
				continue
			}
			j, ok := d.find(id)
			if !ok {
				continue
			}
			bm := out[l.seg]
			if bm == nil {
				bm = roaring.New()
				out[l.seg] = bm
			}
			bm.Or(decodePosting(d.posting(j)))
		}
	}
	return out
}

// pending is a document to write: its id, start and JSON.
type pending struct {
	id    string
	start int64
	src   []byte
}

// write upserts documents, the last of equal ids winning. The segment holds them in start order, so a
// time range is a run of rows.
func (x *index) write(ctx context.Context, docs []pending) error {
	seen := make(map[string]bool, len(docs))
	keep := make([]pending, 0, len(docs))
	for i := len(docs) - 1; i >= 0; i-- {
		if k := normalize(docs[i].id); !seen[k] {
			seen[k] = true
			keep = append(keep, docs[i])
		}
	}
	slices.SortStableFunc(keep, func(a, b pending) int { return cmpInt(a.start, b.start) })
	seg, err := x.build(keep)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		seg.remove.Store(true)
		seg.release()
		return err
	}
	norm := make([]string, len(keep))
	for i, d := range keep {
		norm[i] = normalize(d.id)
	}
	x.commitMu.Lock()
	err = x.commit(change{add: []*live{{seg: seg}}, del: x.older(norm)})
	x.commitMu.Unlock()
	if err != nil {
		seg.remove.Store(true)
		seg.release()
		return err
	}
	x.signal()
	return nil
}

func (x *index) signal() {
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// deleteBefore removes the documents whose start is before t (microseconds) and that match filter (checked;
// nil: all): whole segments when all of their rows are (without a filter), deleted rows otherwise (merges
// reclaim them).
func (x *index) deleteBefore(t int64, filter query.Expr) error {
	x.commitMu.Lock()
	defer x.commitMu.Unlock()
	c := change{drop: map[*segment]bool{}, del: map[*segment]*roaring.Bitmap{}}
	col := slices.Index(x.sc.sortable, "start")
	for _, l := range x.segs {
		s := l.seg
		switch {
		case s.rows() == 0 || s.dir.MaxStart < t && filter == nil:
			c.drop[s] = true
		case s.dir.MinStart < t:
			bm := roaring.New()
			for r, v := range s.dense(col) {
				if !isMissing(v) && v < float64(t) {
					bm.Add(uint32(r))
				}
			}
			if filter != nil {
				bm.And(evaluator{x: x, seg: s}.eval(filter))
			}
			c.del[s] = bm
		}
	}
	if len(c.drop) == 0 && len(c.del) == 0 {
		return nil
	}
	err := x.commit(c)
	x.signal()
	return err
}

// fieldNames lists the paths of the live segments.
func (x *index) fieldNames() []string {
	ls := x.snapshot()
	defer release(ls)
	seen := map[string]bool{}
	var out []string
	for _, l := range ls {
		for _, f := range l.seg.dir.Fields {
			if !seen[f.Name] && !strings.HasPrefix(f.Name, "_") {
				seen[f.Name] = true
				out = append(out, f.Name)
			}
		}
	}
	return out
}
