package meili

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/meili/meilitest"
)

// These tests need control over the server (taking it down, counting requests), so they always run against
// the stand-in.

// front is an HTTP front for a stand-in that can drop connections (as a restarting server does) and counts
// document additions.
type front struct {
	srv       *meilitest.Server
	url       string
	down      atomic.Bool
	additions atomic.Int64
	requests  atomic.Int64
}

func newFront(t *testing.T, opts meilitest.Options) *front {
	opts.MasterKey = testKey
	f := &front{srv: meilitest.Start(opts)}
	t.Cleanup(f.srv.Close)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		if f.down.Load() {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/documents") {
			f.additions.Add(1)
		}
		f.srv.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	f.url = hs.URL
	return f
}

// logCounter counts log records by message.
type logCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[r.Message]++
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }
func (l *logCounter) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[msg]
}

// await waits until a record with msg has been logged; it fails the test after 30s.
func (l *logCounter) await(t *testing.T, msg string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); l.count(msg) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("nothing logged %q", msg)
		}
	}
}

const retrying = "meilisearch request failed, retrying"

func openFront(t *testing.T, f *front, edit func(*Config)) *Store {
	t.Helper()
	cfg := testConfig(t, f.url, testKey)
	if edit != nil {
		edit(&cfg)
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func spans(n int, prefix string) []document.Span {
	out := make([]document.Span, n)
	for i := range out {
		trace := fmt.Sprintf("%032x", i/4+1)
		span := fmt.Sprintf("%s%015x", prefix, i)
		out[i] = document.Span{ID: trace + "-" + span, TraceID: trace, SpanID: span, Name: "GET /x",
			Service: "svc", Start: int64(1_700_000_000_000_000 + i), Duration: int64(i), StatusCode: "unset"}
	}
	return out
}

func TestServerDownRetriesThenFails(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now

	logs := &logCounter{counts: map[string]int{}}
	_, err = Open(context.Background(), Config{URL: "http://" + addr, RetryInitial: 10 * time.Millisecond,
		RetryFor: 300 * time.Millisecond, Logger: slog.New(logs)})
	var u *unreachable
	if !errors.As(err, &u) {
		t.Fatalf("Open against a closed port: err = %v, want an unreachable error", err)
	}
	if n := logs.count(retrying); n < 3 {
		t.Errorf("retried %d times before giving up, want at least 3", n)
	}
}

func TestServerComingUpDuringOpen(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	logs := &logCounter{counts: map[string]int{}}
	opened := make(chan error, 1)
	go func() {
		s, err := Open(context.Background(), Config{URL: "http://" + addr, APIKey: testKey,
			RetryInitial: 10 * time.Millisecond, RetryFor: 10 * time.Second, Logger: slog.New(logs)})
		if err == nil {
			err = s.Close()
		}
		opened <- err
	}()
	logs.await(t, retrying) // Open found the server down
	srv, err := meilitest.StartOn(addr, meilitest.Options{MasterKey: testKey})
	if err != nil {
		t.Fatalf("StartOn(%s): %v", addr, err)
	}
	defer srv.Close()
	if err := <-opened; err != nil {
		t.Fatalf("Open while the server came up: %v", err)
	}
}

func TestWriteWaitsOutAnOutage(t *testing.T) {
	f := newFront(t, meilitest.Options{})
	logs := &logCounter{counts: map[string]int{}}
	s := openFront(t, f, func(c *Config) { c.Logger = slog.New(logs) })

	f.down.Store(true)
	done := make(chan error, 1)
	go func() { done <- s.Write(context.Background(), spans(10, "a"), nil) }()
	logs.await(t, retrying) // the batch met the outage
	select {
	case err := <-done:
		t.Fatalf("Write returned %v while Meilisearch was down", err)
	default:
	}
	f.down.Store(false)
	if err := <-done; err != nil {
		t.Fatalf("Write after the outage: %v", err)
	}
	res, err := s.Search(context.Background(), store.Request{Index: store.Spans})
	if err != nil || res.Total != 10 {
		t.Fatalf("after the outage: Total = %d, err = %v; want 10 spans", res.Total, err)
	}
}

func TestFailedTaskSurfacesMeilisearchMessage(t *testing.T) {
	f := newFront(t, meilitest.Options{})
	s := openFront(t, f, nil)
	// Someone deletes the span index behind the store's back: Meilisearch then creates it again on the next
	// addition, cannot infer the primary key (id, trace_id, span_id...) and fails the task.
	c := meilisearch.New(f.url, meilisearch.WithAPIKey(testKey))
	task, err := c.DeleteIndex(s.cfg.IndexPrefix + "spans")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitForTask(task.TaskUID, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	err = s.Write(context.Background(), spans(3, "b"), nil)
	var te *TaskError
	if !errors.As(err, &te) {
		t.Fatalf("Write = %v, want a *TaskError", err)
	}
	if te.Code != "index_primary_key_multiple_candidates_found" || !strings.Contains(te.Message, "primary key inference failed") ||
		te.Type != "documentAdditionOrUpdate" || te.Index != s.cfg.IndexPrefix+"spans" {
		t.Errorf("TaskError = %+v", te)
	}
	if !strings.Contains(err.Error(), te.Message) {
		t.Errorf("error %q does not carry Meilisearch's message", err)
	}
}

func TestBadDocumentIDRefusedBeforeSending(t *testing.T) {
	f := newFront(t, meilitest.Options{})
	s := openFront(t, f, nil)
	docs := spans(3, "c")
	docs[1].ID = "abc/def"
	before := f.additions.Load()
	err := s.Write(context.Background(), docs, []document.Trace{{ID: "t1"}})
	if !errors.Is(err, store.ErrBadRequest) || !strings.Contains(err.Error(), "span document 1: ") ||
		!strings.Contains(err.Error(), `invalid id "abc/def"`) {
		t.Fatalf("Write = %v, want a bad request naming span document 1 and its id", err)
	}
	long := spans(1, "d")
	long[0].ID = strings.Repeat("a", 512)
	if err := s.Write(context.Background(), long, nil); err == nil || !strings.Contains(err.Error(), "1 to 511 bytes") {
		t.Errorf("Write with a 512-byte id = %v", err)
	}
	if err := s.Write(context.Background(), nil, []document.Trace{{ID: ""}}); err == nil {
		t.Error("Write with an empty trace id succeeded")
	}
	if n := f.additions.Load() - before; n != 0 {
		t.Errorf("%d document additions were sent", n)
	}
	if !errors.Is(err, store.ErrBadRequest) {
		t.Errorf("a bad id is not a store.ErrBadRequest (the pipeline would retry it forever): %v", err)
	}
}

func TestPayloadTooLargeIsSplit(t *testing.T) {
	// The server accepts 4 KB payloads; 40 spans of ~200 bytes are sent as one 8 KB batch first.
	f := newFront(t, meilitest.Options{MaxPayload: 4 << 10})
	logs := &logCounter{counts: map[string]int{}}
	s := openFront(t, f, func(c *Config) { c.Logger = slog.New(logs) })
	if err := s.Write(context.Background(), spans(40, "k"), nil); err != nil {
		t.Fatalf("Write: %v", err)
	}
	res, err := s.Search(context.Background(), store.Request{Index: store.Spans})
	if err != nil || res.Total != 40 {
		t.Fatalf("Total = %d, err %v; want 40", res.Total, err)
	}
	if logs.count("meilisearch refused a batch as too large; splitting it") == 0 {
		t.Fatal("the batch was not split: raise the document count so it exceeds MaxPayload")
	}
	// Later batches stay under the size that failed: no more refusals.
	before := logs.count("meilisearch refused a batch as too large; splitting it")
	if err := s.Write(context.Background(), spans(40, "l"), nil); err != nil {
		t.Fatalf("second Write: %v", err)
	}
	if n := logs.count("meilisearch refused a batch as too large; splitting it"); n != before {
		t.Errorf("%d more refusals after the limit was learned", n-before)
	}
}

func TestOpenRejectsForeignIndex(t *testing.T) {
	f := newFront(t, meilitest.Options{})
	cfg := testConfig(t, f.url, testKey)
	c := meilisearch.New(f.url, meilisearch.WithAPIKey(testKey))
	task, err := c.CreateIndex(&meilisearch.IndexConfig{Uid: cfg.IndexPrefix + "traces", PrimaryKey: "trace_id"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitForTask(task.TaskUID, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), `primary key "trace_id"`) {
		t.Errorf("Open over an index keyed by trace_id = %v", err)
	}
}

func TestSettingsAppliedBeforeDocuments(t *testing.T) {
	f := newFront(t, meilitest.Options{TaskDelay: 5 * time.Millisecond})
	s := openFront(t, f, nil)
	c := meilisearch.New(f.url, meilisearch.WithAPIKey(testKey))
	st, err := c.Index(s.cfg.IndexPrefix + "spans").GetSettings()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"service", "duration", "attr", "resource", "trace_id"} {
		if !slices.Contains(st.FilterableAttributes, a) {
			t.Errorf("%s is not filterable: %v", a, st.FilterableAttributes)
		}
	}
	if !slices.Contains(st.SortableAttributes, "start") || !slices.Contains(st.SortableAttributes, "id") {
		t.Errorf("sortable attributes %v lack start or id", st.SortableAttributes)
	}
	if st.RankingRules[0] != "sort" || st.Pagination.MaxTotalHits != 100_000 {
		t.Errorf("ranking rules %v, maxTotalHits %d", st.RankingRules, st.Pagination.MaxTotalHits)
	}
	if f.additions.Load() != 0 {
		t.Errorf("documents were sent before the settings were applied")
	}
}

func TestRetentionOnOpen(t *testing.T) {
	f := newFront(t, meilitest.Options{})
	s := openFront(t, f, nil)
	old, recent := spans(4, "e"), spans(4, "f")
	now := time.Now()
	for i := range old {
		old[i].Start = now.Add(-48 * time.Hour).UnixMicro()
		recent[i].Start = now.Add(-time.Hour).UnixMicro()
	}
	traces := []document.Trace{{ID: "aa", TraceID: "aa", Start: now.Add(-48 * time.Hour).UnixMicro()},
		{ID: "bb", TraceID: "bb", Start: now.UnixMicro()}}
	if err := s.Write(context.Background(), append(old, recent...), traces); err != nil {
		t.Fatal(err)
	}
	again := openFront(t, f, func(c *Config) { c.IndexPrefix, c.Retention = s.cfg.IndexPrefix, 24*time.Hour })
	res, err := again.Search(context.Background(), store.Request{Index: store.Spans})
	if err != nil || res.Total != 4 {
		t.Errorf("spans after retention: Total %d, err %v; want the 4 recent ones", res.Total, err)
	}
	got, err := again.GetTraces(context.Background(), []string{"aa", "bb"})
	if err != nil || len(got) != 1 || got[0].ID != "bb" {
		t.Errorf("traces after retention: %+v, err %v; want bb only", got, err)
	}
}

func TestBatching(t *testing.T) {
	t.Run("concurrent writes share tasks", func(t *testing.T) {
		f := newFront(t, meilitest.Options{TaskDelay: 20 * time.Millisecond})
		s := openFront(t, f, nil)
		const writers = 40
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- s.Write(context.Background(), spans(10, fmt.Sprintf("%02d", i)), nil)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := f.additions.Load(); n > writers/4 {
			t.Errorf("%d writes took %d document additions, want them grouped into at most %d", writers, n, writers/4)
		}
	})
	t.Run("limits split a write", func(t *testing.T) {
		f := newFront(t, meilitest.Options{})
		s := openFront(t, f, func(c *Config) { c.MaxBatchDocs = 100 })
		if err := s.Write(context.Background(), spans(250, "h"), nil); err != nil {
			t.Fatal(err)
		}
		if n := f.additions.Load(); n != 3 {
			t.Errorf("250 documents with MaxBatchDocs 100 took %d additions, want 3", n)
		}
		res, err := s.Search(context.Background(), store.Request{Index: store.Spans})
		if err != nil || res.Total != 250 {
			t.Errorf("Total = %d, err %v; want 250", res.Total, err)
		}
	})
	t.Run("close flushes", func(t *testing.T) {
		f := newFront(t, meilitest.Options{})
		s := openFront(t, f, func(c *Config) { c.Linger = time.Hour })
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // Write still queues the documents, then stops waiting
		if err := s.Write(ctx, spans(5, "i"), nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("Write with a canceled context = %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if f.additions.Load() != 1 {
			t.Errorf("Close sent %d additions, want the pending batch", f.additions.Load())
		}
		if err := s.Write(context.Background(), spans(1, "j"), nil); !errors.Is(err, errClosed) {
			t.Errorf("Write after Close = %v", err)
		}
	})
}

func TestSearchErrorsCarryMeilisearchMessage(t *testing.T) {
	f := newFront(t, meilitest.Options{})
	s := openFront(t, f, nil)
	_, err := s.Search(context.Background(), store.Request{Index: store.Spans, Distinct: "nope"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "invalid_search_distinct" || ae.Status != 400 {
		t.Fatalf("Search with a bad distinct attribute = %v, want an APIError invalid_search_distinct", err)
	}
	if !errors.Is(err, store.ErrBadRequest) {
		t.Errorf("an invalid search is not a store.ErrBadRequest: %v", err)
	}
	if n := f.requests.Load(); n == 0 {
		t.Fatal("no request reached the server")
	}
}
