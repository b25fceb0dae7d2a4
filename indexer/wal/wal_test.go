package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func open(t *testing.T, cfg Config) (*WAL, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	w, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, logs
}

func appendAll(t *testing.T, w *WAL, recs ...string) {
	t.Helper()
	for _, r := range recs {
		if err := w.Append(context.Background(), []byte(r)); err != nil {
			t.Fatalf("append %q: %v", r, err)
		}
	}
}

// readN reads n records from a new reader.
func readN(t *testing.T, w *WAL, n int) []Record {
	t.Helper()
	rd := w.NewReader()
	defer rd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []Record
	for range n {
		rec, err := rd.Next(ctx)
		if err != nil {
			t.Fatalf("read record %d of %d: %v", len(out)+1, n, err)
		}
		out = append(out, rec)
	}
	return out
}

func datas(recs []Record) []string {
	var s []string
	for _, r := range recs {
		s = append(s, string(r.Data))
	}
	return s
}

func records(prefix string, n int) []string {
	var s []string
	for i := range n {
		s = append(s, fmt.Sprintf("%s-%03d-%s", prefix, i, strings.Repeat("x", i%17)))
	}
	return s
}

func TestAppendReadAcrossSegmentsAndRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, SegmentBytes: 200}
	w, _ := open(t, cfg)
	first := records("a", 30)
	appendAll(t, w, first...)
	got := readN(t, w, 30)
	if fmt.Sprint(datas(got)) != fmt.Sprint(first) {
		t.Fatalf("read %v, want %v", datas(got), first)
	}
	if s := w.Stats(); s.Segments < 3 {
		t.Fatalf("%d segments for 30 records of segments of 200 bytes", s.Segments)
	}
	// Commit the first 20; the rest must come back after a restart.
	if err := w.Commit(got[19].Next); err != nil {
		t.Fatal(err)
	}
	before := w.Stats()
	w.Close()

	w2, _ := open(t, cfg)
	appendAll(t, w2, "after-restart")
	again := readN(t, w2, 11)
	want := append(append([]string{}, first[20:]...), "after-restart")
	if fmt.Sprint(datas(again)) != fmt.Sprint(want) {
		t.Fatalf("after restart read %v, want %v", datas(again), want)
	}
	if after := w2.Stats(); after.Segments > before.Segments+1 {
		t.Fatalf("committed segments not deleted: %d before restart, %d after", before.Segments, after.Segments)
	}
}

func TestCommitDeletesWhollyCommittedSegments(t *testing.T) {
	dir := t.TempDir()
	w, _ := open(t, Config{Dir: dir, SegmentBytes: 100})
	appendAll(t, w, records("r", 20)...)
	recs := readN(t, w, 20)
	files := func() int {
		seqs, err := listSegments(dir)
		if err != nil {
			t.Fatal(err)
		}
		return len(seqs)
	}
	n := files()
	if err := w.Commit(recs[19].Next); err != nil {
		t.Fatal(err)
	}
	if got := files(); got != 1 {
		t.Fatalf("%d segment files after committing everything (had %d), want only the active one", got, n)
	}
	// An older position is ignored.
	if err := w.Commit(recs[3].Next); err != nil {
		t.Fatal(err)
	}
	if w.Committed() != w.Stats().Durable {
		t.Fatalf("committed %v moved back from durable end %v", w.Committed(), w.Stats().Durable)
	}
}

func TestGroupCommitSharesSyncs(t *testing.T) {
	w, _ := open(t, Config{Dir: t.TempDir()})
	var syncs atomic.Int64
	w.sync = func(f *os.File) error {
		syncs.Add(1)
		time.Sleep(2 * time.Millisecond) // a disk's sync latency
		return fdatasync(f)
	}
	const writers, each = 32, 20
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for j := range each {
				if err := w.Append(context.Background(), fmt.Appendf(nil, "%d-%d", i, j)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	n := syncs.Load()
	if n >= writers*each/4 {
		t.Fatalf("%d syncs for %d appends from %d writers: appends are not grouped", n, writers*each, writers)
	}
	if got := len(readN(t, w, writers*each)); got != writers*each {
		t.Fatalf("read %d records", got)
	}
	t.Logf("%d appends from %d writers took %d syncs", writers*each, writers, n)
}

func TestFullRefusesUntilCommitted(t *testing.T) {
	w, _ := open(t, Config{Dir: t.TempDir(), SegmentBytes: 128, MaxBytes: 600})
	var accepted []string
	for i := range 100 {
		r := fmt.Sprintf("record-%02d-%s", i, strings.Repeat("y", 20))
		err := w.Append(context.Background(), []byte(r))
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		accepted = append(accepted, r)
	}
	if len(accepted) == 0 || len(accepted) == 100 {
		t.Fatalf("%d records accepted under a 600-byte limit", len(accepted))
	}
	if s := w.Stats(); s.Bytes > 600 {
		t.Fatalf("log holds %d bytes, limit 600", s.Bytes)
	}
	recs := readN(t, w, len(accepted))
	if err := w.Commit(recs[len(recs)-1].Next); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(context.Background(), []byte("room again")); err != nil {
		t.Fatalf("append after commit: %v", err)
	}
}

func TestTooLargeAndClosed(t *testing.T) {
	w, _ := open(t, Config{Dir: t.TempDir(), MaxRecordBytes: 10})
	if err := w.Append(context.Background(), make([]byte, 11)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("11-byte record under a 10-byte limit: %v", err)
	}
	w.Close()
	if err := w.Append(context.Background(), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after Close: %v", err)
	}
}

func TestReaderWaitsAndEndsAtClose(t *testing.T) {
	w, _ := open(t, Config{Dir: t.TempDir()})
	rd := w.NewReader()
	defer rd.Close()
	got := make(chan string, 1)
	go func() {
		rec, err := rd.Next(context.Background())
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(rec.Data)
	}()
	time.Sleep(20 * time.Millisecond)
	appendAll(t, w, "late")
	if s := <-got; s != "late" {
		t.Fatalf("waiting reader got %q", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := rd.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with nothing to read: %v", err)
	}
	w.Close()
	if _, err := rd.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
}

func TestSyncFailureRefusesAndRecovers(t *testing.T) {
	w, logs := open(t, Config{Dir: t.TempDir()})
	appendAll(t, w, "good-1")
	fail := errors.New("injected EIO")
	w.sync = func(*os.File) error { return fail }
	if err := w.Append(context.Background(), []byte("lost")); !errors.Is(err, fail) {
		t.Fatalf("append with a failing sync: %v", err)
	}
	w.sync = fdatasync
	appendAll(t, w, "good-2")
	if got := datas(readN(t, w, 2)); fmt.Sprint(got) != "[good-1 good-2]" {
		t.Fatalf("read %v: a refused record must not be read, the next must follow", got)
	}
	if s := w.Stats(); s.SyncErrors != 1 {
		t.Fatalf("SyncErrors %d, want 1", s.SyncErrors)
	}
	if !strings.Contains(logs.String(), "injected EIO") {
		t.Fatalf("failure not logged: %s", logs)
	}
}

// segmentFiles returns the paths of dir's segments, oldest first.
func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	seqs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, s := range seqs {
		paths = append(paths, filepath.Join(dir, segmentName(s)))
	}
	return paths
}

func TestOpenTruncatesTornTail(t *testing.T) {
	for _, cut := range []int64{1, recordHeader - 1, recordHeader + 3} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			dir := t.TempDir()
			w, _ := open(t, Config{Dir: dir})
			appendAll(t, w, "one", "two", "three-is-longer")
			w.Close()
			// The newest segment holding records is the only one; simulate a crash mid-write of "three".
			path := segmentFiles(t, dir)[0]
			st, _ := os.Stat(path)
			whole := st.Size()
			size := whole - int64(recordHeader+len("three-is-longer")) + cut
			if err := os.Truncate(path, size); err != nil {
				t.Fatal(err)
			}
			// Open appends a fresh segment, so the torn one must be the newest at open: remove later empties.
			for _, p := range segmentFiles(t, dir)[1:] {
				os.Remove(p)
			}
			w2, logs := open(t, Config{Dir: dir})
			if got := datas(readN(t, w2, 2)); fmt.Sprint(got) != "[one two]" {
				t.Fatalf("read %v", got)
			}
			msg := logs.String()
			for _, want := range []string{"truncated the tail", path, fmt.Sprintf("dropped_bytes=%d", cut)} {
				if !strings.Contains(msg, want) {
					t.Fatalf("log %q lacks %q", msg, want)
				}
			}
			if st, _ := os.Stat(path); st.Size() != whole-int64(recordHeader+len("three-is-longer")) {
				t.Fatalf("torn segment is %d bytes after open", st.Size())
			}
		})
	}
}

func TestOpenReportsDamageInOlderSegment(t *testing.T) {
	dir := t.TempDir()
	w, _ := open(t, Config{Dir: dir, SegmentBytes: 64})
	appendAll(t, w, records("d", 12)...)
	w.Close()
	paths := segmentFiles(t, dir)
	if len(paths) < 4 {
		t.Fatalf("%d segments", len(paths))
	}
	// Flip one byte in the data of the first record of the second segment.
	victim := paths[1]
	b, _ := os.ReadFile(victim)
	b[headerSize+recordHeader] ^= 0x40
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	w2, logs := open(t, Config{Dir: dir, SegmentBytes: 64})
	rd := w2.NewReader()
	defer rd.Close()
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	for {
		rec, err := rd.Next(ctx)
		if err != nil {
			break
		}
		got = append(got, string(rec.Data))
	}
	all := records("d", 12)
	if len(got) == 0 || len(got) >= len(all) || got[0] != all[0] {
		t.Fatalf("read %v after damage", got)
	}
	msg := logs.String()
	for _, want := range []string{"damaged segment", victim, "checksum mismatch"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("log %q lacks %q", msg, want)
		}
	}
	if got[len(got)-1] != all[len(all)-1] {
		t.Fatalf("segments after the damaged one were not read: %v", got)
	}
}

func TestDamagedCheckpointReplaysEverything(t *testing.T) {
	dir := t.TempDir()
	w, _ := open(t, Config{Dir: dir})
	appendAll(t, w, "a", "b")
	recs := readN(t, w, 2)
	if err := w.Commit(recs[0].Next); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := os.WriteFile(filepath.Join(dir, checkpointFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	w2, logs := open(t, Config{Dir: dir})
	if got := datas(readN(t, w2, 2)); fmt.Sprint(got) != "[a b]" {
		t.Fatalf("read %v", got)
	}
	if !strings.Contains(logs.String(), "checkpoint unreadable") {
		t.Fatalf("damaged checkpoint not logged: %s", logs)
	}
}

// TestRecycledDataIsReadInto checks that a reader reads later records into data given back with Recycle, and
// that records of every size still read back whole.
func TestRecycledDataIsReadInto(t *testing.T) {
	w, _ := open(t, Config{Dir: t.TempDir()})
	recs := []string{strings.Repeat("a", 100), "short", strings.Repeat("b", 100), strings.Repeat("c", 300), ""}
	appendAll(t, w, recs...)
	rd := w.NewReader()
	defer rd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var prev []byte
	for i, want := range recs {
		rec, err := rd.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(rec.Data) != want {
			t.Fatalf("record %d = %q, want %q", i, rec.Data, want)
		}
		if i == 1 && &prev[:1][0] != &rec.Data[:1][0] {
			t.Error("the record after a recycled larger one was not read into it")
		}
		prev = rec.Data
		rd.Recycle(rec.Data)
	}
}

// TestOldestIsTheFirstUncommittedRecord checks Oldest against the records' own times as commits move through
// segments, and after a restart, before any reader has read the backlog.
func TestOldestIsTheFirstUncommittedRecord(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), SegmentBytes: 100}
	w, _ := open(t, cfg)
	oldest := func(w *WAL) (time.Time, bool) {
		t.Helper()
		ts, ok, err := w.Oldest()
		if err != nil {
			t.Fatal(err)
		}
		return ts, ok
	}
	if _, ok := oldest(w); ok {
		t.Fatal("an empty log has an uncommitted record")
	}
	recs := records("r", 12)
	for _, r := range recs {
		appendAll(t, w, r)
		time.Sleep(time.Millisecond) // distinct append times
	}
	got := readN(t, w, len(recs))
	for i := range got {
		if ts, ok := oldest(w); !ok || !ts.Equal(got[i].Time) {
			t.Fatalf("after committing %d records: oldest %v %v, want record %d's %v", i, ts, ok, i, got[i].Time)
		}
		if err := w.Commit(got[i].Next); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := oldest(w); ok {
		t.Fatal("everything is committed, yet a record is reported uncommitted")
	}
	appendAll(t, w, "x", "y")
	w.Close()
	w2, _ := open(t, cfg)
	unread := readN(t, w2, 2) // a reader of its own: w2's state is not moved by it
	if ts, ok := oldest(w2); !ok || !ts.Equal(unread[0].Time) {
		t.Fatalf("after a restart: oldest %v %v, want the backlog's first record's %v", ts, ok, unread[0].Time)
	}
}

// TestAppendPartsIsOneRecord appends a record in parts: it reads back as their concatenation, and the limit
// applies to the whole.
func TestAppendPartsIsOneRecord(t *testing.T) {
	w, _ := open(t, Config{Dir: t.TempDir(), MaxRecordBytes: 8})
	if err := w.Append(context.Background(), []byte("head"), nil, []byte("body")); err != nil {
		t.Fatal(err)
	}
	if got := datas(readN(t, w, 1)); got[0] != "headbody" {
		t.Fatalf("read %q, want the parts together", got[0])
	}
	if err := w.Append(context.Background(), []byte("head"), []byte("body!")); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("9 bytes in two parts: %v, want ErrTooLarge", err)
	}
}
