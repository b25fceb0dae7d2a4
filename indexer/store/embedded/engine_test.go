package embedded

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/querysvc"
	"github.com/meshtrace/meshtrace/indexer/rollup"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"
)

// span returns span i of trace t, started at start (unix microseconds), with one attribute.
func span(t, i int, start int64, attr map[string]any) document.Span {
	trace, id := fmt.Sprintf("%032x", t+1), fmt.Sprintf("%016x", i+1)
	return document.Span{ID: trace + "-" + id, TraceID: trace, SpanID: id, Name: "op", Kind: "server", Service: "svc",
		Start: start, End: start + 10, Duration: 10, StatusCode: "unset", Attr: attr}
}

func count(t testing.TB, s store.Store, index store.Index, filter query.Expr) int {
	t.Helper()
	res, err := s.Search(context.Background(), store.Request{Index: index, Filter: filter, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	return res.Total
}

func eq(field, v string) query.Expr {
	return &query.Compare{Field: field, Op: query.Eq, Value: query.Value{Str: v}}
}

// segments waits until the index holds at most n segments (merges are asynchronous).
func segments(t testing.TB, x *index, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		x.mu.RLock()
		got := len(x.segs)
		x.mu.RUnlock()
		if got <= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %d segments after 30s, want at most %d", x.dir, got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUpsertReplacesAcrossSegmentsAndMerges(t *testing.T) {
	s, err := OpenConfig(t.TempDir(), Config{MergeFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	// Ten writes of the same ten traces, each version naming its round: every write replaces the last.
	for round := range 10 {
		var spans []document.Span
		var traces []document.Trace
		for tr := range 10 {
			sp := span(tr, round%3, int64(1_700_000_000_000_000+tr), map[string]any{"round": strconv.Itoa(round)})
			spans = append(spans, sp)
			traces = append(traces, document.Trace{ID: sp.TraceID, TraceID: sp.TraceID, Start: sp.Start, SpanCount: round + 1,
				Keys: map[string][]string{"round": {strconv.Itoa(round)}}})
		}
		if err := s.Write(ctx, spans, traces); err != nil {
			t.Fatal(err)
		}
	}
	segments(t, s.traces, 3)
	if n := count(t, s, store.Traces, nil); n != 10 {
		t.Errorf("%d trace documents, want 10 (one per id)", n)
	}
	if n := count(t, s, store.Traces, eq("keys.round", "9")); n != 10 {
		t.Errorf("%d trace documents of the last round, want 10", n)
	}
	if n := count(t, s, store.Spans, nil); n != 30 {
		t.Errorf("%d spans, want 30 (3 span ids in 10 traces)", n)
	}
	got, err := s.GetTraces(ctx, []string{fmt.Sprintf("%032x", 4)})
	if err != nil || len(got) != 1 || got[0].SpanCount != 10 {
		t.Errorf("GetTraces = %+v, %v; want the last version (span_count 10)", got, err)
	}
}

func TestRetentionDropsWholeSegments(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenConfig(dir, Config{MergeFactor: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	hour := int64(time.Hour / time.Microsecond)
	base := int64(1_700_000_000_000_000)
	for h := range 4 { // one segment per hour of spans
		var spans []document.Span
		for i := range 100 {
			spans = append(spans, span(h, i, base+int64(h)*hour+int64(i), nil))
		}
		if err := s.Write(ctx, spans, nil); err != nil {
			t.Fatal(err)
		}
	}
	files := func() int {
		ents, _ := os.ReadDir(filepath.Join(dir, "spans"))
		return len(ents)
	}
	before := files()
	// Two hours and a half before the last: two segments go whole, the third loses half its rows.
	if err := s.DeleteBefore(ctx, time.UnixMicro(base+2*hour+50), nil); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, store.Spans, nil); n != 150 {
		t.Errorf("%d spans after retention, want 150", n)
	}
	if after := files(); after != before-2+1 { // two segments gone, one deleted-rows file
		t.Errorf("%d files after retention, %d before: want the two old segments removed", after, before)
	}
}

func TestManyAttributeKeysStayFindable(t *testing.T) {
	// More distinct keys than a 16-bit field id holds: nothing in this engine numbers fields.
	s, err := OpenConfig(t.TempDir(), Config{MergeFactor: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const n, perSpan = 1400, 50
	for w := range 4 {
		var spans []document.Span
		for i := w * n / 4; i < (w+1)*n/4; i++ {
			attr := map[string]any{}
			for k := range perSpan {
				attr[fmt.Sprintf("key.%d.%d", i, k)] = k
			}
			spans = append(spans, span(i/10, i, int64(1_700_000_000_000_000+i), attr))
		}
		if err := s.Write(ctx, spans, nil); err != nil {
			t.Fatal(err)
		}
	}
	segments(t, s.spans, 1)
	fields, err := s.Fields(ctx)
	if err != nil || len(fields) < n*perSpan {
		t.Fatalf("Fields: %d, %v; want at least %d", len(fields), err, n*perSpan)
	}
	for _, i := range []int{0, 699, 1399} {
		num := &query.Compare{Field: fmt.Sprintf("attr.key.%d.7", i), Op: query.Eq, Value: query.Value{Str: "7", Num: 7, IsNum: true}}
		if c := count(t, s, store.Spans, num); c != 1 {
			t.Errorf("span %d by its own key: %d hits, want 1", i, c)
		}
	}
}

func TestOpenRemovesWhatNoManifestNames(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), []document.Span{span(1, 1, 1, nil)}, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// What a crash between a segment's fsync and its manifest leaves: files no manifest names.
	for _, name := range []string{"seg-00000099", "seg-00000001.del-7", "MANIFEST.tmp"} {
		if err := os.WriteFile(filepath.Join(dir, "spans", name), []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := count(t, s, store.Spans, nil); n != 1 {
		t.Errorf("%d spans after reopening, want 1", n)
	}
	for _, name := range []string{"seg-00000099", "seg-00000001.del-7", "MANIFEST.tmp"} {
		if _, err := os.Stat(filepath.Join(dir, "spans", name)); !os.IsNotExist(err) {
			t.Errorf("%s still there after Open (%v)", name, err)
		}
	}
}

func TestOpenRefusesACorruptSegment(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(path string) error
		want   string
	}{
		{"truncated", func(path string) error { return os.Truncate(path, 100) }, "truncated"},
		{"one byte flipped", func(path string) error {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 0x40
			return os.WriteFile(path, b, 0o644)
		}, "checksum mismatch"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Write(context.Background(), []document.Span{span(1, 1, 1, map[string]any{"k": "v"})}, nil); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if err := c.damage(filepath.Join(dir, "spans", "seg-00000001")); err != nil {
				t.Fatal(err)
			}
			_, err = Open(dir)
			if err == nil || !strings.Contains(err.Error(), "seg-00000001") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Open: err = %v, want one naming the segment and saying %q", err, c.want)
			}
		})
	}
}

// crashChild is the environment variable that makes the test binary the writer TestKill9 kills.
const crashChild = "MESHTRACE_EMBEDDED_CRASH_DIR"

// TestKill9KeepsAcknowledgedWrites kills a writing process with SIGKILL at a random moment (while it writes,
// merges and retains) and checks that every batch whose Write had returned is there after reopening, and
// that no batch is there in part.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	if dir := os.Getenv(crashChild); dir != "" {
		crashWriter(dir)
		return
	}
	dir := t.TempDir()
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9KeepsAcknowledgedWrites$")
		cmd.Env = append(os.Environ(), crashChild+"="+dir, "MESHTRACE_CRASH_ROUND="+strconv.Itoa(round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if n, err := strconv.Atoi(sc.Text()); err == nil {
				acked = n + 1
			}
			if acked >= 15+round*7 {
				break
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		s, err := Open(dir)
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		for b := range acked {
			if n := count(t, s, store.Spans, eq("attr.batch", fmt.Sprintf("%d-%d", round, b))); n != 200 {
				t.Errorf("round %d: acknowledged batch %d has %d spans, want 200", round, b, n)
			}
		}
		// A batch not acknowledged is there whole or not at all.
		if n := count(t, s, store.Spans, eq("attr.batch", fmt.Sprintf("%d-%d", round, acked))); n != 0 && n != 200 {
			t.Errorf("round %d: the batch in flight has %d spans: partly written", round, n)
		}
		s.Close()
	}
}

// crashWriter writes batches of 200 spans with small merges until it is killed, printing each batch's
// number once its Write has returned.
func crashWriter(dir string) {
	s, err := OpenConfig(dir, Config{MergeFactor: 3})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	round := os.Getenv("MESHTRACE_CRASH_ROUND")
	ctx := context.Background()
	for b := 0; ; b++ {
		var spans []document.Span
		var traces []document.Trace
		for i := range 200 {
			sp := span(b*1000+i/10, i, int64(1_700_000_000_000_000+b*1000+i), map[string]any{"batch": fmt.Sprintf("%s-%d", round, b)})
			sp.ID = sp.ID + "r" + round
			spans = append(spans, sp)
			if i%10 == 0 {
				traces = append(traces, document.Trace{ID: sp.TraceID, TraceID: sp.TraceID, Start: sp.Start})
			}
		}
		if err := s.Write(ctx, spans, traces); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(b)
	}
}

// TestMergedSegmentsAnswerAsOne writes the same generated spans into a store as one segment and into
// another as 40 writes with merges (concatenations and rewrites, with upserts in between), and compares
// the answers of searches, sorts, distinct counts and facets.
func TestMergedSegmentsAnswerAsOne(t *testing.T) {
	ctx := context.Background()
	var spans []document.Span
	var traces []document.Trace
	err := storetest.Generate(8000, 7, func(sp []document.Span, tr document.Trace) error {
		spans, traces = append(spans, sp...), append(traces, tr)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	one, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if err := one.Write(ctx, spans, traces); err != nil {
		t.Fatal(err)
	}
	many, err := OpenConfig(t.TempDir(), Config{MergeFactor: 4, MaxSegmentRows: 3000})
	if err != nil {
		t.Fatal(err)
	}
	defer many.Close()
	for i := 0; i < len(spans); i += 200 {
		if err := many.Write(ctx, spans[i:min(i+200, len(spans))], traces); err != nil { // every trace again: upserts
			t.Fatal(err)
		}
	}
	segments(t, many.spans, 8)
	answered := 0
	for _, src := range []string{"", "service=inventory-service", "error=true since=1h", "customer_id=123",
		`"connection reset" since=30m`, "duration>=1s sort=-duration", "NOT service=frontend duration<1ms",
		"trace.customer_id=17 trace.duration>100ms", "service IN [payments, shipping] sort=start"} {
		q, err := query.Compile(src, storetest.Now)
		if err != nil {
			t.Fatal(err)
		}
		for _, target := range []query.Scope{query.SpanScope, query.TraceScope} {
			q.Target = target
			a, err := querysvc.Execute(ctx, one, q, querysvc.Page{Limit: 50}, rollup.DefaultKeys)
			if err != nil {
				t.Fatal(err)
			}
			b, err := querysvc.Execute(ctx, many, q, querysvc.Page{Limit: 50}, rollup.DefaultKeys)
			if err != nil {
				t.Fatal(err)
			}
			if a.Total > 0 {
				answered++
			}
			if a.Total != b.Total || !slices.Equal(ids(a), ids(b)) {
				t.Errorf("%q (target %v): one segment %d hits %v, merged %d hits %v", src, target, a.Total, ids(a)[:min(3, len(ids(a)))], b.Total, ids(b)[:min(3, len(ids(b)))])
			}
		}
		for _, field := range []string{"attr.customer_id", "service", "name", "attr.http.response.status_code"} {
			fa, err := one.Facet(ctx, store.Spans, q.Span, field, 20)
			if err != nil {
				t.Fatal(err)
			}
			fb, err := many.Facet(ctx, store.Spans, q.Span, field, 20)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(fa, fb) {
				t.Errorf("Facet(%q, %s): one segment %v, merged %v", src, field, fa, fb)
			}
		}
	}
	if answered < 14 {
		t.Errorf("only %d of 18 searches found anything: the comparison says little", answered)
	}
}

func ids(r store.Result) []string {
	var out []string
	for _, s := range r.Spans {
		out = append(out, s.ID)
	}
	for _, t := range r.Traces {
		out = append(out, t.ID)
	}
	return out
}

// TestConcurrentWritesSearchesMergesAndRetention runs two writers, a searcher and retention at once (run
// it with -race), then checks that every span written after the last retention cut is there.
func TestConcurrentWritesSearchesMergesAndRetention(t *testing.T) {
	s, err := OpenConfig(t.TempDir(), Config{MergeFactor: 3, MaxSegmentRows: 2000})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	base := int64(1_700_000_000_000_000)
	const writers, batches, perBatch = 2, 30, 100
	errs := make(chan error, writers+2)
	done := make(chan struct{})
	for w := range writers {
		go func() {
			for b := range batches {
				var spans []document.Span
				var traces []document.Trace
				for i := range perBatch {
					n := (w*batches+b)*perBatch + i
					sp := span(n/5, n, base+int64(b*perBatch+i), map[string]any{"writer": strconv.Itoa(w)})
					spans = append(spans, sp)
					traces = append(traces, document.Trace{ID: sp.TraceID, TraceID: sp.TraceID, Start: sp.Start})
				}
				if err := s.Write(ctx, spans, traces); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	go func() { // searches while the writes and merges run
		for {
			select {
			case <-done:
				errs <- nil
				return
			default:
			}
			for _, src := range []string{"writer=1", "duration<1s sort=-start", "customer_id EXISTS"} {
				q, _ := query.Compile(src, time.UnixMicro(base))
				if _, err := querysvc.Execute(ctx, s, q, querysvc.Page{Limit: 20}, rollup.DefaultKeys); err != nil {
					errs <- err
					return
				}
			}
			if _, err := s.Facet(ctx, store.Spans, nil, "attr.writer", 10); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() { // retention of the first tenth of the time range, twice
		for range 2 {
			time.Sleep(20 * time.Millisecond)
			if err := s.DeleteBefore(ctx, time.UnixMicro(base+batches*perBatch/10), nil); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	for range writers + 1 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	cut := &query.Compare{Field: "start", Op: query.Ge, Value: query.Int(base + batches*perBatch/10)}
	if n := count(t, s, store.Spans, cut); n != writers*batches*perBatch*9/10 {
		t.Errorf("%d spans at or after the retention cut, want %d", n, writers*batches*perBatch*9/10)
	}
}
