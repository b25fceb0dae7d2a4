package embedded

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/klauspost/compress/zstd"
	"github.com/valyala/fastjson"

	"github.com/meshtrace/meshtrace/indexer/document"
)

// schema is what one index (spans or traces) indexes beyond every leaf's terms.
type schema struct {
	searchable map[string]bool // paths whose values (and their descendants') feed the text field
	sortable   []string        // numeric paths kept as dense columns: sort keys, and what ranges on them scan
}

// textField is the pseudo field holding the words (and word pairs) of the searchable values. Document paths
// never start with "_".
const textField = "_text"

// blockDocs is the number of documents per compressed block of the document store.
const blockDocs = 64

// builder accumulates the documents of one segment in memory, then writes it (encode). It is not safe for
// concurrent use.
type builder struct {
	sc      *schema
	parser  fastjson.Parser
	rows    uint32
	fields  map[string]*fieldBuild
	dense   [][]float64
	ids     []string
	path    []byte
	texts   *fieldBuild // the text field
	num     []byte      // scratch for a number's or a boolean's text
	scratch termScratch

	minStart, maxStart int64
	blocks             []byte // the compressed blocks, one after the other
	blockEnds          []int  // where each ends in blocks
	block              []byte // documents of the open block: uvarint length, bytes
	inBlock            int
	enc                *zstd.Encoder
}

// fieldBuild is what one path collects.
type fieldBuild struct {
	exists  []uint32
	strs    map[string]*strBuild
	numRows []uint32
	numVals []float64
	rowKeys []rowKey // each row's string value, for the ordinal column
	multi   bool     // a row holds two different string values (a list): no ordinal column
}

type rowKey struct {
	row uint32
	e   *strBuild
}

// hasOrdinals says whether a path gets a column of dictionary ordinals: when no row holds two values and at
// least a quarter of the rows hold one.
func hasOrdinals(multi bool, withValue, rows int) bool {
	return !multi && withValue > 0 && withValue*4 >= rows
}

type strBuild struct {
	rows []uint32
	orig string // the value as first written, when it differs from its normalized form
	ord  uint32 // its index in the sorted dictionary, set by encode
}

func newBuilder(sc *schema, enc *zstd.Encoder) *builder {
	return &builder{sc: sc, fields: map[string]*fieldBuild{}, dense: make([][]float64, len(sc.sortable)),
		enc: enc, minStart: math.MaxInt64, maxStart: math.MinInt64}
}

// add indexes one document given as its JSON object, with its id; rows are numbered in the order added,
// which must be ascending start order (the segment is one run).
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
	b.blocks = b.enc.EncodeAll(b.block, b.blocks)
	b.blockEnds = append(b.blockEnds, len(b.blocks))
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
		s := v.GetStringBytes()
		b.str(f, row, s)
		if searchable {
			b.text(row, s)
		}
	case fastjson.TypeTrue, fastjson.TypeFalse:
		s := strconv.AppendBool(b.num[:0], v.GetBool())
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
			b.num = v.MarshalTo(b.num[:0])
			b.text(row, b.num)
		}
	}
}

// str indexes a string value of the path: its normalized form (lower-cased, cut at query.MaxValueBytes) in
// the dictionary, the value as written beside it when that differs. Values already in the dictionary cost
// no allocation.
func (b *builder) str(f *fieldBuild, row uint32, raw []byte) {
	key := raw
	if !isNormal(raw) {
		key = []byte(normalize(string(raw)))
	}
	key = filterPrefix(key)
	e := f.strs[string(key)]
	if e == nil {
		e = f.entry(string(key))
		if !bytes.Equal(key, raw) {
			e.orig = string(raw)
		}
	}
	e.add(row)
	switch n := len(f.rowKeys); {
	case n == 0 || f.rowKeys[n-1].row != row:
		f.rowKeys = append(f.rowKeys, rowKey{row, e})
	case f.rowKeys[n-1].e != e:
		f.multi = true
	}
}

// entry returns the dictionary entry of key, adding it.
func (f *fieldBuild) entry(key string) *strBuild {
	if f.strs == nil {
		f.strs = map[string]*strBuild{}
	}
	e := f.strs[key]
	if e == nil {
		e = &strBuild{}
		f.strs[key] = e
	}
	return e
}

// add records that row holds the entry (once).
func (e *strBuild) add(row uint32) {
	if n := len(e.rows); n == 0 || e.rows[n-1] != row {
		e.rows = append(e.rows, row)
	}
}

func (b *builder) text(row uint32, value []byte) {
	if b.texts == nil {
		b.texts = &fieldBuild{}
		b.fields[textField] = b.texts
	}
	textTerms(value, &b.scratch, func(t []byte) {
		e := b.texts.strs[string(t)]
		if e == nil {
			e = b.texts.entry(string(t))
		}
		e.add(row)
	})
}

// encode writes the segment to path and fsyncs it.
func (b *builder) encode(path string) error {
	b.flushBlock()
	e, err := createSegment(path)
	if err != nil {
		return err
	}
	start := 0
	for i, end := range b.blockEnds {
		e.block(b.blocks[start:end], uint32(i*blockDocs))
		start = end
	}
	names := make([]string, 0, len(b.fields))
	for k := range b.fields {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, name := range names {
		f := b.fields[name]
		keys := make([]string, 0, len(f.strs))
		for k := range f.strs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var ords []uint32
		if hasOrdinals(f.multi, len(f.rowKeys), int(b.rows)) {
			for i, k := range keys {
				f.strs[k].ord = uint32(i)
			}
			ords = make([]uint32, b.rows)
			for i := range ords {
				ords[i] = uint32(len(keys)) // missing
			}
			for _, rk := range f.rowKeys {
				ords[rk.row] = rk.e.ord
			}
		}
		e.field(name, appendPosting(nil, f.exists), len(keys),
			func(i int) []byte { return []byte(keys[i]) },
			func(i int, buf []byte) []byte { return appendPosting(buf, f.strs[keys[i]].rows) },
			func(i int) string { return f.strs[keys[i]].orig },
			f.numRows, f.numVals, ords)
	}
	bl := newBloom(len(b.ids))
	for _, id := range b.ids {
		bl.add(normalize(id))
	}
	return e.finish(b.rows, []uint32{0}, b.minStart, b.maxStart, b.dense, bl)
}
