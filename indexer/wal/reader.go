package wal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"
)

// Record is one record read from the log.
type Record struct {
	Pos  Position  // where the record starts
	Next Position  // where the next one starts: commit this once the record is stored
	Time time.Time // when it was appended (acknowledged)
	Data []byte    // owned by the caller, who may give it back with Reader.Recycle
}

// Reader reads records in log order. Create it with NewReader; it is not safe for concurrent use.
type Reader struct {
	w     *WAL
	pos   Position
	f     *os.File
	seq   uint64 // segment f belongs to
	spare []byte // a recycled record's data, read into next
}

// maxRecycled is the largest buffer Recycle keeps, so that one huge record does not pin its size.
const maxRecycled = 16 << 20

// Recycle gives back the Data of a record read from r that the caller no longer uses, nor will: a later
// record may be read into it.
func (r *Reader) Recycle(data []byte) {
	if cap(data) > cap(r.spare) && cap(data) <= maxRecycled {
		r.spare = data[:0]
	}
}

// NewReader returns a reader starting at the committed position.
func (w *WAL) NewReader() *Reader {
	return &Reader{w: w, pos: w.Committed()}
}

// Next returns the next durable record, waiting for one to be appended. It returns ErrClosed once the WAL is
// closed and everything durable has been read, or ctx.Err().
//
// A record that fails its checksum here (damage after Open checked it) is logged with its place, and the rest
// of its segment is skipped, as Open would do.
func (r *Reader) Next(ctx context.Context) (Record, error) {
	for {
		end, next, wait, closed := r.w.limit(r.pos)
		switch {
		case r.pos.Offset < end:
			rec, err := r.read(end)
			if err == nil {
				return rec, nil
			}
			if !errors.Is(err, errCorrupt) {
				return Record{}, err
			}
			r.w.log.Error("wal: damaged record; skipping the rest of its segment",
				"file", filepath.Join(r.w.cfg.Dir, segmentName(r.pos.Segment)), "offset", r.pos.Offset,
				"skipped_bytes", end-r.pos.Offset, "reason", err.Error())
			r.pos.Offset = end
		case next != 0:
			r.pos = Position{Segment: next, Offset: headerSize}
		case closed:
			r.Close()
			return Record{}, ErrClosed
		default:
			select {
			case <-wait:
			case <-ctx.Done():
				return Record{}, ctx.Err()
			}
		}
	}
}

// limit returns, for a reader at pos, the durable end of pos's segment, the segment after it (0 while pos's
// segment is the one being written), a channel closed when that may change, and whether the WAL is closed.
func (w *WAL) limit(pos Position) (end int64, next uint64, wait <-chan struct{}, closed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, s := range w.segs {
		if s.seq < pos.Segment {
			continue
		}
		if s.seq > pos.Segment {
			// pos's segment is gone (committed and deleted): continue at the oldest one after it.
			return 0, s.seq, w.advanced, w.closed
		}
		if i+1 < len(w.segs) {
			next = w.segs[i+1].seq
		}
		return s.end, next, w.advanced, w.closed
	}
	return 0, 0, w.advanced, w.closed
}

func (r *Reader) read(end int64) (Record, error) {
	if r.f == nil || r.seq != r.pos.Segment {
		r.Close()
		f, err := os.Open(filepath.Join(r.w.cfg.Dir, segmentName(r.pos.Segment)))
		if err != nil {
			return Record{}, err
		}
		r.f, r.seq = f, r.pos.Segment
	}
	t, data, next, err := readRecord(r.f, r.pos.Offset, end, r.w.cfg.MaxRecordBytes, r.spare)
	if err != nil {
		return Record{}, err
	}
	r.spare = nil // handed out with the record, or too small for it
	rec := Record{Pos: r.pos, Next: Position{Segment: r.pos.Segment, Offset: next}, Time: t, Data: data}
	r.pos = rec.Next
	return rec, nil
}

// Close releases the reader's file.
func (r *Reader) Close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}
