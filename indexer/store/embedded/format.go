package embedded

import (
	"bufio"
	"encoding/binary"
	"encoding/gob"
	"hash/crc32"
	"math"
	"math/bits"
	"os"
	"sync"

	"github.com/RoaringBitmap/roaring/v2"
)

// Segment file layout: the magic, then sections (document blocks, then per path its EXISTS posting, string
// dictionary, numeric column and ordinal column, then the dense columns and the id filter), each 8-byte
// aligned but the blocks, then the gob-encoded segDir, its offset and length (8 bytes each) and the magic
// again. The tail also holds the CRC-32C of every byte before it, checked on open.
var segMagic = []byte("MTSEG04\n")

// segDir is a segment's directory: where each section is. Offsets are from the start of the file.
type segDir struct {
	Rows               uint32
	MinStart, MaxStart int64    // of the rows' start (MaxInt64, MinInt64 when none has one)
	Blocks             []uint64 // offsets of the document blocks, and where the last ends
	BlockRows          []uint32 // first row of each block
	// Runs are the first rows of the runs of rows in ascending start order: a written segment is one run,
	// a concatenation one per segment it joined.
	Runs       []uint32
	Fields     []fieldDir
	Dense      []uint64 // per schema.sortable: Rows float64 (NaN: missing)
	Bloom      uint64   // the id filter's words
	BloomWords uint32
}

// fieldDir locates one path's sections.
type fieldDir struct {
	Name      string
	Exists    uint64 // posting of the rows holding the path
	ExistsLen uint32
	// Strs is the dictionary: (NStrs+1) uint32 key offsets, the keys (normalized values, ascending), (NStrs+1)
	// uint32 posting offsets, the postings, then with Orig (NStrs+1) uint32 offsets of the values as written
	// and those values ("" where a value was written in its normalized form).
	Strs  uint64
	NStrs uint32
	Orig  bool
	Nums  uint64 // NNums uint32 rows (ascending), padding to 8 bytes, then NNums float64 values
	NNums uint32
	// Ords is the ordinal column, when OrdBits > 0: each row's dictionary index (NStrs: no value) in OrdBits
	// bits, packed into little-endian 64-bit words, with one word to spare.
	Ords    uint64
	OrdBits uint8
}

// segEncoder writes a segment file section by section: blocks, then fields in name order, then finish.
type segEncoder struct {
	f   *os.File
	w   *bufio.Writer
	off uint64
	err error
	d   segDir
	buf []byte

	blocksEnd uint64
	crc       uint32 // of everything put so far
	postings  []byte // scratch of field
	ends      []int
}

func createSegment(path string) (*segEncoder, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	w := writers.Get().(*bufio.Writer)
	w.Reset(f)
	e := &segEncoder{f: f, w: w}
	e.put(segMagic)
	return e, nil
}

// writers are the buffered writers of segment files, reused: one per file would be a megabyte per write.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 1<<20) }}

func (e *segEncoder) put(p []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(p)
	}
	e.crc = crc32.Update(e.crc, castagnoli, p)
	e.off += uint64(len(p))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (e *segEncoder) aligned(p []byte) uint64 {
	var zero [8]byte
	e.put(zero[:(8-e.off%8)%8])
	at := e.off
	e.put(p)
	return at
}

// block appends a compressed document block whose first row is first.
func (e *segEncoder) block(blk []byte, first uint32) {
	e.d.Blocks = append(e.d.Blocks, e.off)
	e.d.BlockRows = append(e.d.BlockRows, first)
	e.put(blk)
	e.blocksEnd = e.off
}

// field appends one path: its EXISTS posting, n dictionary entries (key, posting appended to a buffer,
// value as written or ""), and its numeric column.
func (e *segEncoder) field(name string, exists []byte, n int, key func(int) []byte, posting func(int, []byte) []byte,
	orig func(int) string, numRows []uint32, numVals []float64, ords []uint32) {
	fd := fieldDir{Name: name}
	fd.Exists, fd.ExistsLen = e.aligned(exists), uint32(len(exists))
	if n > 0 {
		b := e.buf[:0]
		offs := func(size func(i int) int) {
			at := 0
			for i := 0; i <= n; i++ {
				b = binary.LittleEndian.AppendUint32(b, uint32(at))
				if i < n {
					at += size(i)
				}
			}
		}
		offs(func(i int) int { return len(key(i)) })
		for i := range n {
			b = append(b, key(i)...)
		}
		postings, ends := e.postings[:0], e.ends[:0]
		for i := range n {
			postings = posting(i, postings)
			ends = append(ends, len(postings))
		}
		e.postings, e.ends = postings, ends
		offs(func(i int) int {
			if i == 0 {
				return ends[0]
			}
			return ends[i] - ends[i-1]
		})
		b = append(b, postings...)
		for i := range n {
			fd.Orig = fd.Orig || orig(i) != ""
		}
		if fd.Orig {
			offs(func(i int) int { return len(orig(i)) })
			for i := range n {
				b = append(b, orig(i)...)
			}
		}
		fd.Strs, fd.NStrs = e.aligned(b), uint32(n)
		e.buf = b
	}
	if len(numRows) > 0 {
		b := e.buf[:0]
		for _, r := range numRows {
			b = binary.LittleEndian.AppendUint32(b, r)
		}
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		for _, x := range numVals {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		}
		fd.Nums, fd.NNums = e.aligned(b), uint32(len(numRows))
		e.buf = b
	}
	if len(ords) > 0 {
		fd.OrdBits = uint8(bits.Len32(uint32(n)))
		e.buf = packOrdinals(e.buf[:0], ords, uint(fd.OrdBits))
		fd.Ords = e.aligned(e.buf)
	}
	e.d.Fields = append(e.d.Fields, fd)
}

// finish appends the dense columns, the id filter and the directory, and fsyncs the file.
func (e *segEncoder) finish(rows uint32, runs []uint32, minStart, maxStart int64, dense [][]float64, bl bloom) (err error) {
	defer func() {
		e.w.Reset(nil)
		writers.Put(e.w)
		if cerr := e.f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(e.f.Name())
		}
	}()
	e.d.Rows, e.d.Runs, e.d.MinStart, e.d.MaxStart = rows, runs, minStart, maxStart
	e.d.Blocks = append(e.d.Blocks, e.blocksEnd)
	for _, col := range dense {
		b := e.buf[:0]
		for _, x := range col {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		}
		e.d.Dense = append(e.d.Dense, e.aligned(b))
		e.buf = b
	}
	e.d.Bloom, e.d.BloomWords = e.aligned(bl.bytes()), uint32(len(bl.words))
	var dir []byte
	if err := gob.NewEncoder(byteWriter{&dir}).Encode(&e.d); err != nil {
		return err
	}
	at := e.aligned(dir)
	var tail [16]byte
	binary.LittleEndian.PutUint64(tail[:8], at)
	binary.LittleEndian.PutUint64(tail[8:], uint64(len(dir)))
	e.put(tail[:])
	e.put(binary.LittleEndian.AppendUint32(nil, e.crc))
	e.put(segMagic)
	if e.err != nil {
		return e.err
	}
	if err := e.w.Flush(); err != nil {
		return err
	}
	return e.f.Sync()
}

// packOrdinals appends ords packed in width bits each, in little-endian 64-bit words, and one spare word so
// a read never runs past the column.
func packOrdinals(buf []byte, ords []uint32, width uint) []byte {
	words := make([]uint64, (uint(len(ords))*width+63)/64+1)
	for i, o := range ords {
		bit := uint(i) * width
		words[bit/64] |= uint64(o) << (bit % 64)
		if bit%64+width > 64 {
			words[bit/64+1] |= uint64(o) >> (64 - bit%64)
		}
	}
	for _, w := range words {
		buf = binary.LittleEndian.AppendUint64(buf, w)
	}
	return buf
}

type byteWriter struct{ b *[]byte }

func (w byteWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }

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
