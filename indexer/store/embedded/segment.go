package embedded

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"sort"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/klauspost/compress/zstd"
)

// segment is one immutable segment file, mapped read-only. Its deleted rows live beside it (the index
// swaps them copy-on-write); refs counts the index's hold and every search's, and the last release unmaps
// the file (and removes it when the index dropped it).
type segment struct {
	name   string
	path   string
	data   []byte
	dir    segDir
	fields map[string]*fieldDir
	bloom  bloom
	refs   atomic.Int32
	remove atomic.Bool // delete the file on the last release
}

func openSegment(path, name string) (*segment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < int64(2*len(segMagic)+20) {
		return nil, fmt.Errorf("segment %s: %d bytes: truncated", name, size)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("segment %s: mmap: %w", name, err)
	}
	s := &segment{name: name, path: path, data: data}
	s.refs.Store(1)
	if err := s.parse(); err != nil {
		syscall.Munmap(data)
		return nil, fmt.Errorf("segment %s: %w", name, err)
	}
	return s, nil
}

func (s *segment) parse() error {
	d := s.data
	m := len(segMagic)
	if !bytes.Equal(d[:m], segMagic) || !bytes.Equal(d[len(d)-m:], segMagic) {
		return errors.New("bad magic: not a segment of this version, or truncated")
	}
	tail := d[len(d)-m-20 : len(d)-m]
	if sum := crc32.Checksum(d[:len(d)-m-4], castagnoli); sum != binary.LittleEndian.Uint32(tail[16:]) {
		return errors.New("checksum mismatch: the file is damaged")
	}
	at, n := binary.LittleEndian.Uint64(tail[:8]), binary.LittleEndian.Uint64(tail[8:16])
	if at+n > uint64(len(d)) {
		return errors.New("bad directory offset")
	}
	if err := gob.NewDecoder(bytes.NewReader(d[at : at+n])).Decode(&s.dir); err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	s.fields = make(map[string]*fieldDir, len(s.dir.Fields))
	for i := range s.dir.Fields {
		s.fields[s.dir.Fields[i].Name] = &s.dir.Fields[i]
	}
	s.bloom = bloomFrom(d[s.dir.Bloom:], s.dir.BloomWords)
	return nil
}

func (s *segment) acquire() { s.refs.Add(1) }

func (s *segment) release() {
	if s.refs.Add(-1) == 0 {
		syscall.Munmap(s.data)
		if s.remove.Load() {
			os.Remove(s.path)
		}
	}
}

func (s *segment) rows() uint32 { return s.dir.Rows }

// all is the bitmap of every row.
func (s *segment) all() *roaring.Bitmap {
	bm := roaring.New()
	bm.AddRange(0, uint64(s.dir.Rows))
	return bm
}

func (s *segment) u32(at uint64, i uint32) uint32 {
	return binary.LittleEndian.Uint32(s.data[at+4*uint64(i):])
}

func (s *segment) f64s(at uint64, n uint32) []float64 {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*float64)(unsafe.Pointer(&s.data[at])), n)
}

func (s *segment) u32s(at uint64, n uint32) []uint32 {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&s.data[at])), n)
}

// dict is a view of one field's string dictionary.
type dict struct {
	s  *segment
	fd *fieldDir
}

func (s *segment) dict(path string) (dict, bool) {
	fd := s.fields[path]
	if fd == nil || fd.NStrs == 0 {
		return dict{}, false
	}
	return dict{s, fd}, true
}

func (d dict) n() uint32 {
	if d.fd == nil {
		return 0
	}
	return d.fd.NStrs
}

func (d dict) keysAt() uint64 { return d.fd.Strs + 4*uint64(d.n()+1) }

func (d dict) key(i uint32) []byte {
	a, b := d.s.u32(d.fd.Strs, i), d.s.u32(d.fd.Strs, i+1)
	base := d.keysAt()
	return d.s.data[base+uint64(a) : base+uint64(b)]
}

func (d dict) postingsOffsets() uint64 {
	return d.keysAt() + uint64(d.s.u32(d.fd.Strs, d.n()))
}

func (d dict) posting(i uint32) []byte {
	at := d.postingsOffsets()
	a, b := d.s.u32(at, i), d.s.u32(at, i+1)
	base := at + 4*uint64(d.n()+1)
	return d.s.data[base+uint64(a) : base+uint64(b)]
}

// value is the entry's value as written: its original form when that differs from the key.
func (d dict) value(i uint32) string {
	if o := d.orig(i); o != "" {
		return o
	}
	return string(d.key(i))
}

// orig is the entry's value as written when that differs from the key, else "".
func (d dict) orig(i uint32) string {
	if !d.fd.Orig {
		return ""
	}
	pat := d.postingsOffsets()
	at := pat + 4*uint64(d.n()+1) + uint64(d.s.u32(pat, d.n()))
	a, b := d.s.u32(at, i), d.s.u32(at, i+1)
	base := at + 4*uint64(d.n()+1)
	return string(d.s.data[base+uint64(a) : base+uint64(b)])
}

// find returns the index of key, or false.
func (d dict) find(key string) (uint32, bool) {
	n := int(d.n())
	i := sort.Search(n, func(i int) bool { return string(d.key(uint32(i))) >= key })
	if i < n && string(d.key(uint32(i))) == key {
		return uint32(i), true
	}
	return 0, false
}

// posting returns the encoded rows holding key at path, or nil.
func (s *segment) posting(path, key string) []byte {
	d, ok := s.dict(path)
	if !ok {
		return nil
	}
	i, ok := d.find(key)
	if !ok {
		return nil
	}
	return d.posting(i)
}

// term returns the rows holding key at path, or nil.
func (s *segment) term(path, key string) *roaring.Bitmap {
	if p := s.posting(path, key); p != nil {
		return decodePosting(p)
	}
	return nil
}

// termView is term as a read-only bitmap over the mapped bytes (valid while the search holds the segment),
// or nil: for intersecting a large posting without copying it.
func (s *segment) termView(path, key string) *roaring.Bitmap {
	if p := s.posting(path, key); p != nil {
		return viewPosting(p)
	}
	return nil
}

// exists returns the rows holding path, or nil.
func (s *segment) exists(path string) *roaring.Bitmap {
	fd := s.fields[path]
	if fd == nil {
		return nil
	}
	return decodePosting(s.data[fd.Exists : fd.Exists+uint64(fd.ExistsLen)])
}

// decodePosting turns an encoded posting into a bitmap the caller owns.
func decodePosting(p []byte) *roaring.Bitmap {
	bm := roaring.New()
	if len(p) == 0 {
		return bm
	}
	if p[0] == postingRoaring {
		if err := bm.UnmarshalBinary(p[1:]); err != nil {
			panic(corruptError{fmt.Errorf("a posting does not decode: %w", err)})
		}
		return bm
	}
	forVarint(p, func(r uint32) { bm.Add(r) })
	return bm
}

func forVarint(p []byte, f func(uint32)) {
	n, k := binary.Uvarint(p[1:])
	p = p[1+k:]
	row := uint32(0)
	for range n {
		d, k := binary.Uvarint(p)
		p = p[k:]
		row += uint32(d)
		f(row)
	}
}

// countIn counts the rows of an encoded posting that are in bm.
func countIn(p []byte, bm *roaring.Bitmap) int {
	if len(p) > 0 && p[0] == postingVarint {
		c := 0
		forVarint(p, func(r uint32) {
			if bm.Contains(r) {
				c++
			}
		})
		return c
	}
	return int(viewPosting(p).AndCardinality(bm))
}

// viewPosting decodes a posting without copying a roaring bitmap's containers: the result must not be
// modified, and lives as long as the mapping.
func viewPosting(p []byte) *roaring.Bitmap {
	if len(p) == 0 || p[0] == postingVarint {
		return decodePosting(p)
	}
	view := roaring.New()
	if _, err := view.FromBuffer(p[1:]); err != nil {
		panic(corruptError{fmt.Errorf("a posting does not decode: %w", err)})
	}
	return view
}

// dense returns the dense column of the i-th sortable path.
func (s *segment) dense(i int) []float64 { return s.f64s(s.dir.Dense[i], s.dir.Rows) }

// numbers returns the sparse numeric column of path: rows ascending and their values.
func (s *segment) numbers(path string) ([]uint32, []float64) {
	fd := s.fields[path]
	if fd == nil || fd.NNums == 0 {
		return nil, nil
	}
	valsAt := fd.Nums + 4*uint64(fd.NNums)
	valsAt = (valsAt + 7) &^ 7
	return s.u32s(fd.Nums, fd.NNums), s.f64s(valsAt, fd.NNums)
}

// ordinal returns the dictionary index of path's value at row from its ordinal column; ok is false when
// the path has no such column (has is then false) or the row no value.
func (s *segment) ordinal(fd *fieldDir, row uint32) (ord uint32, ok bool) {
	w := uint64(fd.OrdBits)
	bit := uint64(row) * w
	at := fd.Ords + bit/64*8
	v := binary.LittleEndian.Uint64(s.data[at:]) >> (bit % 64)
	if bit%64+w > 64 {
		v |= binary.LittleEndian.Uint64(s.data[at+8:]) << (64 - bit%64)
	}
	ord = uint32(v & (1<<w - 1))
	return ord, ord != fd.NStrs
}

// id returns the id of the document at row, as written.
func (s *segment) id(row uint32) string {
	v, _ := s.columnValue("id", row) // every document has an id, and every segment its ordinal column
	return v
}

// columnValue returns path's value at row, as written, from its ordinal column; has is false when the
// segment keeps no such column for path.
func (s *segment) columnValue(path string, row uint32) (v string, has bool) {
	fd := s.fields[path]
	if fd == nil {
		return "", true // no row holds the path
	}
	if fd.OrdBits == 0 {
		return "", false
	}
	if o, ok := s.ordinal(fd, row); ok {
		return dict{s, fd}.value(o), true
	}
	return "", true
}

// doc returns the JSON of the document at row. dec decompresses; cache keeps the last block read.
func (s *segment) doc(row uint32, dec *zstd.Decoder, cache *blockCache) ([]byte, error) {
	br := s.dir.BlockRows
	blk := uint32(sort.Search(len(br), func(i int) bool { return br[i] > row }) - 1)
	if cache.seg != s || cache.block != blk || cache.raw == nil {
		at, end := s.dir.Blocks[blk], s.dir.Blocks[blk+1]
		raw, err := dec.DecodeAll(s.data[at:end], cache.raw[:0])
		if err != nil {
			return nil, fmt.Errorf("segment %s: block %d: %w", s.name, blk, err)
		}
		cache.seg, cache.block, cache.raw = s, blk, raw
	}
	p := cache.raw
	for i := br[blk]; ; i++ {
		n, k := binary.Uvarint(p)
		if k <= 0 || uint64(len(p)-k) < n {
			return nil, fmt.Errorf("segment %s: block %d: corrupt", s.name, blk)
		}
		if i == row {
			return p[k : k+int(n)], nil
		}
		p = p[k+int(n):]
	}
}

// blockCache holds the last decompressed block of a search.
type blockCache struct {
	seg   *segment
	block uint32
	raw   []byte
}

// isMissing reports a dense column's missing value.
func isMissing(x float64) bool { return math.IsNaN(x) }

// corruptError is what reading a damaged posting panics with, deep in a search; the store's read methods
// recover it (recoverCorrupt) into an error, so a damaged file fails the request, not the process.
type corruptError struct{ err error }

func (c corruptError) Error() string { return "embedded store: corrupt segment: " + c.err.Error() }

// recoverCorrupt turns a corruptError panic into *err; any other panic goes on.
func recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		c, ok := r.(corruptError)
		if !ok {
			panic(r)
		}
		*err = c
	}
}
