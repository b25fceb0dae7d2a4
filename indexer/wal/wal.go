// Package wal is the indexer's write-ahead log: the durable queue between the receivers and the pipeline.
//
// A receiver appends one record per accepted request and acknowledges the request once Append returns: the
// record is then on disk (fdatasync'd). Appends are group-committed: records that arrive while a sync is
// running are written together and share the next sync, so concurrent requests cost one sync, not one each.
// The pipeline reads records in order (Reader) and, once their documents are in the store, commits the
// position after them (Commit); segments wholly before the committed position are deleted.
//
// The log is a directory of segment files, each a magic header and records with a length, a CRC-32C checksum
// and the append time. Open checks every record not yet committed: a torn or corrupt tail of the newest
// segment (a crash during a write) is truncated, and damage inside an older segment makes the rest of that
// segment unreadable; either is logged with the file, the offset and how many bytes were dropped, never
// silently. After a crash everything appended and not committed is read again, so readers see each record at
// least once.
//
// Back-pressure is on size: Append refuses with ErrFull while the files hold Config.MaxBytes, whatever the
// age of the records, so an outage of the store is absorbed until the disk budget is used up.
package wal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/meshtrace/meshtrace/indexer/internal/defaults"
)

// Defaults for Config.
const (
	DefaultSegmentBytes   = 64 << 20
	DefaultMaxBytes       = 4 << 30
	DefaultMaxRecordBytes = 64 << 20
	// maxGroupBytes bounds the records written under one sync.
	maxGroupBytes = 16 << 20
)

// Errors of Append.
var (
	// ErrFull refuses a record while the log holds MaxBytes; retry once the store has caught up.
	ErrFull = errors.New("write-ahead log full")
	// ErrClosed refuses a record after Close.
	ErrClosed = errors.New("write-ahead log closed")
	// ErrTooLarge refuses a record above MaxRecordBytes.
	ErrTooLarge = errors.New("record too large for the write-ahead log")
)

// Config sets up a WAL. Zero fields take the values of DefaultConfig.
type Config struct {
	Dir            string // required
	SegmentBytes   int64  // a new segment starts once the current one holds this much; DefaultSegmentBytes
	MaxBytes       int64  // Append refuses with ErrFull beyond this total; DefaultMaxBytes
	MaxRecordBytes int    // largest record; DefaultMaxRecordBytes
	Logger         *slog.Logger
}

// DefaultConfig returns the defaults (without a directory).
func DefaultConfig() Config {
	return Config{SegmentBytes: DefaultSegmentBytes, MaxBytes: DefaultMaxBytes, MaxRecordBytes: DefaultMaxRecordBytes}
}

func (c *Config) defaults() {
	d := DefaultConfig()
	defaults.Set(&c.SegmentBytes, d.SegmentBytes)
	defaults.Set(&c.MaxBytes, d.MaxBytes)
	defaults.Set(&c.MaxRecordBytes, d.MaxRecordBytes)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Position is the place of a record: its segment and its byte offset there.
type Position struct {
	Segment uint64
	Offset  int64
}

// Before reports whether p comes before q in the log.
func (p Position) Before(q Position) bool {
	return p.Segment < q.Segment || p.Segment == q.Segment && p.Offset < q.Offset
}

// segment is what the WAL knows of one segment file.
type segment struct {
	seq   uint64
	end   int64 // end of the valid, durable records
	size  int64 // bytes on disk
	first time.Time
}

// Stats describe the log.
type Stats struct {
	Bytes       int64 // on disk, committed or not
	Segments    int
	Appended    int64 // records appended since Open
	SyncErrors  int64 // failed writes or syncs since Open (their requests were refused)
	Durable     Position
	Committed   Position
	OldestStart time.Time // append time of the oldest segment's first record (zero when empty)
}

// WAL is a write-ahead log. Create it with Open; it is safe for concurrent use.
type WAL struct {
	cfg  Config
	log  *slog.Logger
	reqs chan *appendReq
	done chan struct{} // closed when the writer has stopped

	mu        sync.Mutex
	segs      []segment // ascending; the last is the one being written
	committed Position
	bytes     int64 // on disk
	reserved  int64 // admitted, not yet written
	closed    bool
	inflight  sync.WaitGroup // Append calls past admission
	advanced  chan struct{}  // closed and replaced whenever the durable end moves or the WAL closes
	appended  int64
	syncErrs  int64

	commitMu sync.Mutex // serialises Commit

	// writer-owned
	f      *os.File
	buf    []byte
	synced int64 // durable end of the active segment
	sync   func(*os.File) error
}

type appendReq struct {
	data [][]byte
	size int64
	done chan error
}

// Open opens the log in cfg.Dir (created if missing), checks the records not yet committed, deletes the
// committed segments and starts a new segment for appends.
func Open(cfg Config) (*WAL, error) {
	cfg.defaults()
	if cfg.Dir == "" {
		return nil, errors.New("wal: no directory")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	w := &WAL{cfg: cfg, log: cfg.Logger, reqs: make(chan *appendReq, 1024), done: make(chan struct{}),
		advanced: make(chan struct{}), sync: fdatasync}
	if err := w.recover(); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	go w.writer()
	return w, nil
}

// recover loads the checkpoint and the segments, deletes committed segments, truncates a torn tail, and
// creates the segment new records go to.
func (w *WAL) recover() error {
	dir := w.cfg.Dir
	cp, haveCP, err := readCheckpoint(dir)
	if err != nil {
		w.log.Error("wal: checkpoint unreadable; replaying every segment (the store absorbs duplicates)", "err", err)
	}
	seqs, err := listSegments(dir)
	if err != nil {
		return err
	}
	var replay int
	for i, seq := range seqs {
		path := filepath.Join(dir, segmentName(seq))
		if haveCP && seq < cp.Segment {
			if err := os.Remove(path); err != nil {
				return err
			}
			continue
		}
		r, err := scan(path, w.cfg.MaxRecordBytes)
		if err != nil {
			return err
		}
		if r.bad != nil {
			last := i == len(seqs)-1
			if last && r.end >= headerSize {
				// A crash during a write leaves a torn tail in the newest segment.
				if err := os.Truncate(path, r.end); err != nil {
					return err
				}
				w.log.Warn("wal: truncated the tail of the newest segment", "file", path, "offset", r.end,
					"dropped_bytes", r.size-r.end, "reason", r.bad.Error())
				r.size = r.end
			} else {
				w.log.Error("wal: damaged segment: records after this offset are unreadable and skipped",
					"file", path, "offset", r.end, "unreadable_bytes", r.size-r.end, "reason", r.bad.Error())
			}
		}
		w.segs = append(w.segs, segment{seq: seq, end: max(r.end, headerSize), size: r.size, first: r.first})
		w.bytes += r.size
		replay += r.records
	}
	next := uint64(1)
	if n := len(w.segs); n > 0 {
		next = w.segs[n-1].seq + 1
	}
	f, err := createSegment(dir, next)
	if err != nil {
		return err
	}
	w.f, w.synced = f, headerSize
	w.segs = append(w.segs, segment{seq: next, end: headerSize, size: headerSize})
	w.bytes += headerSize
	switch {
	case haveCP && cp.Segment >= w.segs[0].seq:
		w.committed = cp
	default:
		w.committed = Position{Segment: w.segs[0].seq, Offset: headerSize}
	}
	w.log.Info("wal: opened", "dir", dir, "segments", len(w.segs), "bytes", w.bytes, "records_to_replay", replay)
	return nil
}

// Append writes data as one record (several parts one after the other, as one record of their concatenation,
// so that a caller need not copy them together) and returns once it is durable, or with ErrFull, ErrTooLarge,
// ErrClosed, or the I/O error that kept it from disk (nothing was acknowledged then). If ctx ends first Append
// returns ctx.Err(); the record may still be written, from data. Otherwise data is no longer used once Append
// returns.
func (w *WAL) Append(ctx context.Context, data ...[]byte) error {
	n := 0
	for _, p := range data {
		n += len(p)
	}
	if n > w.cfg.MaxRecordBytes {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, n, w.cfg.MaxRecordBytes)
	}
	size := int64(recordHeader + n)
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	if w.bytes+w.reserved+size > w.cfg.MaxBytes {
		w.mu.Unlock()
		return fmt.Errorf("%w: %d of %d bytes used", ErrFull, w.bytes+w.reserved, w.cfg.MaxBytes)
	}
	w.reserved += size
	w.inflight.Add(1)
	w.mu.Unlock()
	defer w.inflight.Done()

	req := &appendReq{data: data, size: size, done: make(chan error, 1)}
	w.reqs <- req
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writer takes append requests in groups: everything queued is written, then synced once.
func (w *WAL) writer() {
	defer close(w.done)
	var group []*appendReq
	for req := range w.reqs {
		group = append(group[:0], req)
		n := req.size
	drain:
		for n < maxGroupBytes {
			select {
			case r, ok := <-w.reqs:
				if !ok {
					break drain
				}
				group = append(group, r)
				n += r.size
			default:
				break drain
			}
		}
		err := w.write(group, n)
		for _, r := range group {
			r.done <- err
		}
	}
	if err := w.f.Close(); err != nil {
		w.log.Error("wal: close segment", "err", err)
	}
}

// write appends a group to the active segment, syncs it, and publishes the new durable end. On failure the
// segment is cut back to its last durable end, so a later write cannot follow unsynced garbage.
func (w *WAL) write(group []*appendReq, n int64) error {
	if err := w.rollIfFull(); err != nil {
		return w.failed(group, n, fmt.Errorf("wal: start a new segment: %w", err))
	}
	now := time.Now()
	w.buf = w.buf[:0]
	for _, r := range group {
		w.buf = appendRecord(w.buf, now, r.data)
	}
	if _, err := w.f.WriteAt(w.buf, w.synced); err != nil {
		return w.failed(group, n, fmt.Errorf("wal: write: %w", err))
	}
	if err := w.sync(w.f); err != nil {
		return w.failed(group, n, fmt.Errorf("wal: sync: %w", err))
	}
	w.synced += n
	if cap(w.buf) > maxGroupBytes {
		w.buf = nil // one huge record must not pin its buffer
	}
	w.mu.Lock()
	s := &w.segs[len(w.segs)-1]
	if s.end == headerSize {
		s.first = now
	}
	s.end, s.size = w.synced, w.synced
	w.bytes += n
	w.reserved -= n
	w.appended += int64(len(group))
	w.wakeLocked()
	w.mu.Unlock()
	return nil
}

// failed gives up on a group: its reservation is released and the segment cut back to its durable end.
func (w *WAL) failed(group []*appendReq, n int64, err error) error {
	if terr := w.f.Truncate(w.synced); terr != nil {
		w.log.Error("wal: cannot cut a failed write back; starting a new segment", "err", terr)
		w.synced = -1 // rollIfFull starts a new segment
	}
	w.mu.Lock()
	w.reserved -= n
	w.syncErrs++
	w.mu.Unlock()
	w.log.Error("wal: append failed; requests refused", "records", len(group), "err", err)
	return err
}

// rollIfFull starts a new segment when the active one has reached SegmentBytes (or is unusable).
func (w *WAL) rollIfFull() error {
	if w.synced >= 0 && w.synced < w.cfg.SegmentBytes {
		return nil
	}
	w.mu.Lock()
	seq := w.segs[len(w.segs)-1].seq + 1
	w.mu.Unlock()
	f, err := createSegment(w.cfg.Dir, seq)
	if err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		w.log.Warn("wal: close full segment", "err", err)
	}
	w.f, w.synced = f, headerSize
	w.mu.Lock()
	w.segs = append(w.segs, segment{seq: seq, end: headerSize, size: headerSize})
	w.bytes += headerSize
	w.mu.Unlock()
	return nil
}

// wakeLocked tells waiting readers that something changed. w.mu is held.
func (w *WAL) wakeLocked() {
	close(w.advanced)
	w.advanced = make(chan struct{})
}

// Commit records that every record before pos is in the store: the position survives a restart, and segments
// wholly before it are deleted. Positions only move forward; an older pos is ignored.
func (w *WAL) Commit(pos Position) error {
	w.commitMu.Lock()
	defer w.commitMu.Unlock()
	w.mu.Lock()
	pos = w.normalLocked(pos)
	if !w.committed.Before(pos) {
		w.mu.Unlock()
		return nil
	}
	w.mu.Unlock()
	if err := writeCheckpoint(w.cfg.Dir, pos); err != nil {
		return fmt.Errorf("wal: checkpoint: %w", err)
	}
	w.mu.Lock()
	w.committed = pos
	var drop []segment
	for len(w.segs) > 1 && w.segs[0].seq < pos.Segment {
		drop = append(drop, w.segs[0])
		w.bytes -= w.segs[0].size
		w.segs = w.segs[1:]
	}
	w.mu.Unlock()
	for _, s := range drop {
		if err := os.Remove(filepath.Join(w.cfg.Dir, segmentName(s.seq))); err != nil {
			w.log.Warn("wal: remove committed segment (removed again at the next start)", "seq", s.seq, "err", err)
		}
	}
	return nil
}

// normalLocked moves a position at the end of a finished segment to the start of the next one. w.mu is held.
func (w *WAL) normalLocked(pos Position) Position {
	for i := 0; i+1 < len(w.segs); i++ {
		if w.segs[i].seq == pos.Segment && pos.Offset >= w.segs[i].end {
			pos = Position{Segment: w.segs[i+1].seq, Offset: headerSize}
		}
	}
	return pos
}

// Oldest returns the append time of the oldest durable record not yet committed, and false when every
// durable record is committed. It reads that record's header from disk, so it is exact whether or not a
// reader has reached the record yet (after a restart, the whole backlog is uncommitted and unread).
func (w *WAL) Oldest() (time.Time, bool, error) {
	w.commitMu.Lock() // no segment is deleted while its header is read
	defer w.commitMu.Unlock()
	w.mu.Lock()
	pos := w.normalLocked(w.committed)
	var end int64
	for _, s := range w.segs {
		if s.seq == pos.Segment {
			end = s.end
		}
	}
	w.mu.Unlock()
	if pos.Offset >= end {
		return time.Time{}, false, nil
	}
	f, err := os.Open(filepath.Join(w.cfg.Dir, segmentName(pos.Segment)))
	if err != nil {
		return time.Time{}, false, fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	var h [recordHeader]byte
	if _, err := f.ReadAt(h[:], pos.Offset); err != nil {
		return time.Time{}, false, fmt.Errorf("wal: read the record at %d of %s: %w", pos.Offset, segmentName(pos.Segment), err)
	}
	return recordTime(h[:]), true, nil
}

// Committed returns the committed position: where a reader starts after a restart.
func (w *WAL) Committed() Position {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.committed
}

// Stats returns a snapshot of the log's state.
func (w *WAL) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	last := w.segs[len(w.segs)-1]
	s := Stats{Bytes: w.bytes, Segments: len(w.segs), Appended: w.appended, SyncErrors: w.syncErrs,
		Durable: Position{Segment: last.seq, Offset: last.end}, Committed: w.committed}
	for _, seg := range w.segs {
		if !seg.first.IsZero() {
			s.OldestStart = seg.first
			break
		}
	}
	return s
}

// Close stops taking records, waits for the appends in progress and closes the files. Readers get ErrClosed
// once they have read everything durable.
func (w *WAL) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	w.inflight.Wait()
	close(w.reqs)
	<-w.done
	w.mu.Lock()
	w.wakeLocked()
	w.mu.Unlock()
	return nil
}

// fdatasync flushes a segment's data (and the size it grew to) without its other metadata.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
