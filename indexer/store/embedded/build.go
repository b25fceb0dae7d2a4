package embedded

import (
	"bufio"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/klauspost/compress/zstd"
	"github.com/valyala/fastjson"

	"github.com/meshtrace/meshtrace/indexer/document"
)

// schema is what one index (spans or traces) indexes beyond every leaf's terms.
type schema struct {
	searchable map[string]bool // paths whose values (and their descendants') feed the text field
	sortable   []string        // numeric paths kept as dense columns: sort keys, and what ranges on them scan
	forward    []string        // string paths kept as a column of dictionary ordinals per row
}

// textField is the pseudo field holding the words (and word pairs) of the searchable values. Document paths
// never start with "_".
const textField = "_text"

// blockDocs is the number of documents per compressed block of the document store.
const blockDocs = 64

// noOrdinal marks a row without a value in a forward column.
const noOrdinal = math.MaxUint32

// builder accumulates the documents of one segment in memory, then writes it (encode). It is not safe for
// concurrent use.
type builder struct {
	sc     *schema
	parser fastjson.Parser
	rows   uint32
	fields map[string]*fieldBuild
	dense  [][]float64
	fwd    [][]string // per forward path, the normalized value of each row ("" when missing)
	ids    []string
	path   []byte

	minStart, maxStart int64
	blocks             [][]byte // compressed blocks
	block              []byte   // documents of the open block: uvarint length, bytes
	inBlock            int
	enc                *zstd.Encoder
}

// fieldBuild is what one path collects.
type fieldBuild struct {
	exists  []uint32
	strs    map[string]*strBuild
	numRows []uint32
	numVals []float64
}

type strBuild struct {
	rows []uint32
	orig string // the value as first written, when it differs from its normalized form
}

func newBuilder(sc *schema, enc *zstd.Encoder) *builder {
	return &builder{sc: sc, fields: map[string]*fieldBuild{}, dense: make([][]float64, len(sc.sortable)),
		fwd: make([][]string, len(sc.forward)), enc: enc, minStart: math.MaxInt64, maxStart: math.MinInt64}
}

// add indexes one document given as its JSON object, with its id; rows are numbered in the order added.
func (b *builder) add(id string, src []byte) error {
	v, err := b.parser.ParseBytes(src)
	if err != nil {
		return fmt.Errorf("decode %s: %w", id, err)
	}
	o, err := v.Object()
	if err != nil {
		return fmt.Errorf("decode %s: %w", id, err)
	}
	row := b.rows
	b.rows++
	for i := range b.dense {
		b.dense[i] = append(b.dense[i], math.NaN())
	}
	for i := range b.fwd {
		b.fwd[i] = append(b.fwd[i], "")
	}
	b.ids = append(b.ids, id)
	o.Visit(func(k []byte, e *fastjson.Value) {
		if string(k) == document.OverflowField {
			return // stored only: never indexed, so its keys add no field
		}
		b.path = append(b.path[:0], k...)
		b.walk(row, e, b.sc.searchable[string(k)])
	})
	if i := slices.Index(b.sc.sortable, "start"); i >= 0 && !math.IsNaN(b.dense[i][row]) {
		st := int64(b.dense[i][row])
		b.minStart, b.maxStart = min(b.minStart, st), max(b.maxStart, st)
	}
	b.block = binary.AppendUvarint(b.block, uint64(len(src)))
	b.block = append(b.block, src...)
	if b.inBlock++; b.inBlock == blockDocs {
		b.flushBlock()
	}
	return nil
}

func (b *builder) flushBlock() {
	if b.inBlock == 0 {
		return
	}
	b.blocks = append(b.blocks, b.enc.EncodeAll(b.block, nil))
	b.block, b.inBlock = b.block[:0], 0
}

func (b *builder) field() *fieldBuild {
	f := b.fields[string(b.path)]
	if f == nil {
		f = &fieldBuild{}
		b.fields[string(b.path)] = f
	}
	return f
}

// walk indexes the value at b.path for row: every path present (EXISTS), strings and booleans as
// normalized terms, numbers as numbers, and searchable values' words as text terms.
func (b *builder) walk(row uint32, v *fastjson.Value, searchable bool) {
	f := b.field()
	if n := len(f.exists); n == 0 || f.exists[n-1] != row {
		f.exists = append(f.exists, row)
	}
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		n := len(b.path)
		o.Visit(func(k []byte, e *fastjson.Value) {
			b.path = append(append(b.path[:n], '.'), k...)
			b.walk(row, e, searchable || b.sc.searchable[string(b.path)])
		})
		b.path = b.path[:n]
	case fastjson.TypeArray:
		a, _ := v.Array()
		for _, e := range a {
			if e.Type() != fastjson.TypeArray { // nested lists are not filterable in Meilisearch either
				b.walk(row, e, searchable)
			}
		}
	case fastjson.TypeString:
		s := string(v.GetStringBytes())
		b.str(f, row, s)
		if searchable {
			b.text(row, s)
		}
	case fastjson.TypeTrue, fastjson.TypeFalse:
		s := strconv.FormatBool(v.GetBool())
		b.str(f, row, s)
		if searchable {
			b.text(row, s)
		}
	case fastjson.TypeNumber:
		x := v.GetFloat64()
		if i := slices.Index(b.sc.sortable, string(b.path)); i >= 0 {
			b.dense[i][row] = x
		} else if n := len(f.numRows); n == 0 || f.numRows[n-1] != row {
			f.numRows, f.numVals = append(f.numRows, row), append(f.numVals, x)
		}
		if searchable {
			b.text(row, string(v.MarshalTo(nil)))
		}
	}
}

func (b *builder) str(f *fieldBuild, row uint32, s string) {
	key := filterPrefix(normalize(s))
	if f.strs == nil {
		f.strs = map[string]*strBuild{}
	}
	e := f.strs[key]
	if e == nil {
		e = &strBuild{}
		if key != s {
			e.orig = s
		}
		f.strs[key] = e
	}
	if n := len(e.rows); n == 0 || e.rows[n-1] != row {
		e.rows = append(e.rows, row)
	}
	for i, p := range b.sc.forward {
		if p == string(b.path) && b.fwd[i][row] == "" {
			b.fwd[i][row] = key
		}
	}
}

func (b *builder) text(row uint32, value string) {
	saved := b.path
	b.path = []byte(textField)
	f := b.field()
	textTerms(value, func(t string) {
		if f.strs == nil {
			f.strs = map[string]*strBuild{}
		}
		e := f.strs[t]
		if e == nil {
			e = &strBuild{}
			f.strs[t] = e
		}
		if n := len(e.rows); n == 0 || e.rows[n-1] != row {
			e.rows = append(e.rows, row)
		}
	})
	b.path = saved
}

// Segment file layout: the magic, then sections (document blocks, then per field its EXISTS posting, string
// dictionary and numeric column, then the dense and forward columns and the id filter), each 8-byte
// aligned, then the gob-encoded segDir, its offset and length (8 bytes each) and the magic again.
var segMagic = []byte("MTSEG01\n")

// segDir is a segment's directory: where each section is. Offsets are from the start of the file.
type segDir struct {
	Rows               uint32
	MinStart, MaxStart int64 // of the rows' start (MaxInt64, MinInt64 when none has one)
	Blocks             []uint64
	Fields             []fieldDir
	Dense              []uint64 // per schema.sortable: Rows float64 (NaN: missing)
	Forward            []uint64 // per schema.forward: Rows uint32 ordinals into the path's dictionary
	Bloom              uint64   // the id filter's words
	BloomWords         uint32
}

// fieldDir locates one path's sections.
type fieldDir struct {
	Name      string
	Exists    uint64 // posting of the rows holding the path
	Strs      uint64 // dictionary: (N+1) uint32 key offsets, keys, (N+1) uint32 posting offsets, postings, then (with Orig) (N+1) uint32 offsets of the originals
	NStrs     uint32
	StrsLen   uint64
	Orig      bool
	Nums      uint64 // NNums uint32 rows (ascending), then NNums float64 values
	NNums     uint32
	ExistsLen uint32
}

// writer appends 8-byte aligned sections to a file.
type writer struct {
	w   *bufio.Writer
	off uint64
	err error
}

func (w *writer) bytes(p []byte) uint64 {
	for w.off%8 != 0 {
		w.put([]byte{0})
	}
	at := w.off
	w.put(p)
	return at
}

func (w *writer) put(p []byte) {
	if w.err == nil {
		_, w.err = w.w.Write(p)
	}
	w.off += uint64(len(p))
}

// encode writes the segment to path and fsyncs it.
func (b *builder) encode(path string) (err error) {
	b.flushBlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	w := &writer{w: bufio.NewWriterSize(f, 1<<20)}
	w.put(segMagic)
	d := segDir{Rows: b.rows, MinStart: b.minStart, MaxStart: b.maxStart}
	for _, blk := range b.blocks { // unaligned: a block ends where the next begins
		d.Blocks = append(d.Blocks, w.off)
		w.put(blk)
	}
	d.Blocks = append(d.Blocks, w.off)
	names := make([]string, 0, len(b.fields))
	for k := range b.fields {
		names = append(names, k)
	}
	slices.Sort(names)
	ordinals := make([]map[string]uint32, len(b.sc.forward))
	var buf []byte
	for _, name := range names {
		f := b.fields[name]
		fd := fieldDir{Name: name}
		buf = appendPosting(buf[:0], f.exists)
		fd.Exists, fd.ExistsLen = w.bytes(buf), uint32(len(buf))
		if len(f.strs) > 0 {
			fwd := slices.Index(b.sc.forward, name)
			if fwd >= 0 {
				ordinals[fwd] = make(map[string]uint32, len(f.strs))
			}
			keys := make([]string, 0, len(f.strs))
			for k, e := range f.strs {
				keys = append(keys, k)
				fd.Orig = fd.Orig || e.orig != ""
			}
			slices.Sort(keys)
			buf = encodeDict(buf[:0], keys, f.strs, fd.Orig)
			fd.Strs, fd.NStrs, fd.StrsLen = w.bytes(buf), uint32(len(keys)), uint64(len(buf))
			if fwd >= 0 {
				for i, k := range keys {
					ordinals[fwd][k] = uint32(i)
				}
			}
		}
		if len(f.numRows) > 0 {
			buf = buf[:0]
			for _, r := range f.numRows {
				buf = binary.LittleEndian.AppendUint32(buf, r)
			}
			for len(buf)%8 != 0 {
				buf = append(buf, 0)
			}
			for _, x := range f.numVals {
				buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(x))
			}
			fd.Nums, fd.NNums = w.bytes(buf), uint32(len(f.numRows))
		}
		d.Fields = append(d.Fields, fd)
	}
	for _, col := range b.dense {
		buf = buf[:0]
		for _, x := range col {
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(x))
		}
		d.Dense = append(d.Dense, w.bytes(buf))
	}
	for i, col := range b.fwd {
		buf = buf[:0]
		for _, v := range col {
			o, ok := ordinals[i][v]
			if !ok || v == "" {
				o = noOrdinal
			}
			buf = binary.LittleEndian.AppendUint32(buf, o)
		}
		d.Forward = append(d.Forward, w.bytes(buf))
	}
	bl := newBloom(len(b.ids))
	for _, id := range b.ids {
		bl.add(normalize(id))
	}
	d.Bloom, d.BloomWords = w.bytes(bl.bytes()), uint32(len(bl.words))
	buf = buf[:0]
	if err := gob.NewEncoder(byteWriter{&buf}).Encode(&d); err != nil {
		return err
	}
	at := w.bytes(buf)
	var tail [16]byte
	binary.LittleEndian.PutUint64(tail[:8], at)
	binary.LittleEndian.PutUint64(tail[8:], uint64(len(buf)))
	w.put(tail[:])
	w.put(segMagic)
	if w.err != nil {
		return w.err
	}
	if err := w.w.Flush(); err != nil {
		return err
	}
	return f.Sync()
}

type byteWriter struct{ b *[]byte }

func (w byteWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }

// encodeDict lays out a dictionary: key offsets, keys, posting offsets, postings and, with orig, the
// offsets and bytes of the original values ("" where a value was written in its normalized form).
func encodeDict(buf []byte, keys []string, entries map[string]*strBuild, orig bool) []byte {
	n := len(keys)
	offs := func(lens func(i int) int) {
		at := 0
		for i := 0; i <= n; i++ {
			buf = binary.LittleEndian.AppendUint32(buf, uint32(at))
			if i < n {
				at += lens(i)
			}
		}
	}
	offs(func(i int) int { return len(keys[i]) })
	for _, k := range keys {
		buf = append(buf, k...)
	}
	postings := make([][]byte, n)
	for i, k := range keys {
		postings[i] = appendPosting(nil, entries[k].rows)
	}
	offs(func(i int) int { return len(postings[i]) })
	for _, p := range postings {
		buf = append(buf, p...)
	}
	if orig {
		offs(func(i int) int { return len(entries[keys[i]].orig) })
		for _, k := range keys {
			buf = append(buf, entries[k].orig...)
		}
	}
	return buf
}

// Posting encodings: short lists as varint deltas, longer ones as a portable roaring bitmap.
const (
	postingVarint  = 0
	postingRoaring = 1
	varintMax      = 16
)

func appendPosting(buf []byte, rows []uint32) []byte {
	if len(rows) <= varintMax {
		buf = append(buf, postingVarint)
		buf = binary.AppendUvarint(buf, uint64(len(rows)))
		prev := uint32(0)
		for _, r := range rows {
			buf = binary.AppendUvarint(buf, uint64(r-prev))
			prev = r
		}
		return buf
	}
	bm := roaring.New()
	bm.AddMany(rows)
	bm.RunOptimize()
	out, _ := bm.ToBytes()
	return append(append(buf, postingRoaring), out...)
}
