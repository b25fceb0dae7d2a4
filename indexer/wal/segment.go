package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// On disk a segment is the 8-byte magic followed by records. A record is a 16-byte header, then its data:
//
//	length uint32 (of data) | crc32c uint32 (of length, time and data) | time int64 (append, unix ns) | data
//
// All integers are little-endian.
const (
	magic        = "MTWAL\x00\x00\x01"
	headerSize   = int64(len(magic))
	recordHeader = 16
	segmentExt   = ".wal"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a record that fails its checks; scan reports where and why.
var errCorrupt = errors.New("corrupt record")

// segmentName is the file name of segment seq: zero-padded so names sort like numbers.
func segmentName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segmentExt) }

// listSegments returns the sequence numbers of the segment files in dir, ascending.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segmentExt)
		if !ok || e.IsDir() {
			continue
		}
		seq, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs, nil
}

// appendRecord encodes one record (header and data, the parts one after the other) onto dst.
func appendRecord(dst []byte, t time.Time, parts [][]byte) []byte {
	var h [recordHeader]byte
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	binary.LittleEndian.PutUint32(h[0:4], uint32(n))
	binary.LittleEndian.PutUint64(h[8:16], uint64(t.UnixNano()))
	crc := crc32.Update(0, castagnoli, h[0:4])
	crc = crc32.Update(crc, castagnoli, h[8:16])
	for _, p := range parts {
		crc = crc32.Update(crc, castagnoli, p)
	}
	binary.LittleEndian.PutUint32(h[4:8], crc)
	dst = append(dst, h[:]...)
	for _, p := range parts {
		dst = append(dst, p...)
	}
	return dst
}

// readRecord reads the record at off of f, whose valid bytes end at end, into buf when it has the room (a new
// slice otherwise). It returns the record's time and data and the offset after it, or an error wrapping
// errCorrupt (or an I/O error).
func readRecord(f io.ReaderAt, off, end int64, maxData int, buf []byte) (time.Time, []byte, int64, error) {
	if end-off < recordHeader {
		return time.Time{}, nil, 0, fmt.Errorf("%w: %d bytes left, a record header needs %d", errCorrupt, end-off, recordHeader)
	}
	var h [recordHeader]byte
	if _, err := f.ReadAt(h[:], off); err != nil {
		return time.Time{}, nil, 0, err
	}
	n := int64(binary.LittleEndian.Uint32(h[0:4]))
	if n > int64(maxData) || n > end-off-recordHeader {
		return time.Time{}, nil, 0, fmt.Errorf("%w: length %d does not fit (record limit %d, %d bytes left)", errCorrupt, n, maxData, end-off-recordHeader)
	}
	var data []byte
	if int64(cap(buf)) >= n {
		data = buf[:n]
	} else {
		data = make([]byte, n)
	}
	if _, err := f.ReadAt(data, off+recordHeader); err != nil {
		return time.Time{}, nil, 0, err
	}
	crc := crc32.Update(0, castagnoli, h[0:4])
	crc = crc32.Update(crc, castagnoli, h[8:16])
	crc = crc32.Update(crc, castagnoli, data)
	if crc != binary.LittleEndian.Uint32(h[4:8]) {
		return time.Time{}, nil, 0, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	return recordTime(h[:]), data, off + recordHeader + n, nil
}

// recordTime is the append time in a record header.
func recordTime(h []byte) time.Time { return time.Unix(0, int64(binary.LittleEndian.Uint64(h[8:16]))) }

// scanResult is what a segment holds: where its valid records end, how many there are, the first one's time,
// and, when the file holds more bytes than that, why the rest is unreadable.
type scanResult struct {
	end     int64
	size    int64
	records int
	first   time.Time
	bad     error
}

// scan reads every record of the segment file at path.
func scan(path string, maxData int) (scanResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return scanResult{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return scanResult{}, err
	}
	r := scanResult{size: st.Size()}
	m := make([]byte, headerSize)
	if _, err := f.ReadAt(m, 0); err != nil || string(m) != magic {
		r.bad = fmt.Errorf("%w: not a segment (bad magic)", errCorrupt)
		return r, nil
	}
	r.end = headerSize
	var buf []byte // reused: only the checksum is wanted
	for r.end < r.size {
		t, data, next, err := readRecord(f, r.end, r.size, maxData, buf)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				return r, err
			}
			r.bad = err
			return r, nil
		}
		buf = data
		if r.records == 0 {
			r.first = t
		}
		r.records++
		r.end = next
	}
	return r, nil
}

// createSegment creates segment seq in dir with its magic, synced, and syncs the directory so the file
// survives a crash.
func createSegment(dir string, seq uint64) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, segmentName(seq)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write([]byte(magic)); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
