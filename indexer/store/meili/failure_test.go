package meili

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
	meiliproc "github.com/meshtrace/meshtrace/testenv/meilisearch"
)

// These tests take a real server down (killed, frozen, restarted on its address), start it with a small
// payload limit, make its tasks fail, and count what reached it from its own task list.

// logCounter counts log records by message.
type logCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func newLogCounter() *logCounter { return &logCounter{counts: map[string]int{}} }

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

const (
	retrying  = "meilisearch request failed, retrying"
	splitting = "meilisearch refused a batch as too large; splitting it"
)

// tasks returns the tasks of the given types the server has registered on the store's indexes (spans,
// traces and fields), oldest first. Meilisearch registers a task when it accepts the request, so this counts
// what the store sent.
func tasks(t *testing.T, srv *meiliproc.Server, s *Store, types ...meilisearch.TaskType) []meilisearch.Task {
	t.Helper()
	res, err := adminClient(srv).GetTasks(&meilisearch.TasksQuery{Limit: 1000, Types: types, Reverse: true,
		IndexUIDS: []string{s.uid(store.Spans), s.uid(store.Traces), s.cfg.IndexPrefix + fieldsIndex}})
	if err != nil {
		t.Fatalf("GET /tasks: %v", err)
	}
	if res.Total > int64(len(res.Results)) {
		t.Fatalf("GET /tasks: %d of %d tasks", len(res.Results), res.Total)
	}
	return res.Results
}

// additions counts the document additions the store sent to index ix.
func additions(t *testing.T, srv *meiliproc.Server, s *Store, ix store.Index) int {
	t.Helper()
	n := 0
	for _, task := range tasks(t, srv, s, meilisearch.TaskTypeDocumentAdditionOrUpdate) {
		if task.IndexUID == s.uid(ix) {
			n++
		}
	}
	return n
}

func TestServerDownRetriesThenFails(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now

	logs := newLogCounter()
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
	t.Parallel()
	srv := ownServer(t, nil)
	srv.Kill() // its address now refuses connections; Restart brings it back there
	logs := newLogCounter()
	cfg := testConfig(t, srv)
	cfg.RetryInitial, cfg.RetryFor, cfg.Logger = 10*time.Millisecond, 30*time.Second, slog.New(logs)
	opened := make(chan error, 1)
	go func() {
		s, err := Open(context.Background(), cfg)
		if err == nil {
			err = s.Close()
		}
		opened <- err
	}()
	logs.await(t, retrying) // Open found the server down
	if err := srv.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-opened; err != nil {
		t.Fatalf("Open while the server came up: %v", err)
	}
}

func TestWriteWaitsOutAnOutage(t *testing.T) {
	t.Parallel()
	srv := ownServer(t, nil)
	restart := func() error { return srv.Restart(context.Background()) }
	for _, outage := range []struct {
		name     string
		down, up func() error
	}{
		// A crashed server refuses connections until it is brought up again, with its database.
		{"killed", func() error { srv.Kill(); return nil }, restart},
		// A hung server accepts connections but never answers: each request ends at the client's timeout.
		{"frozen", srv.Freeze, srv.Thaw},
	} {
		t.Run(outage.name, func(t *testing.T) {
			logs := newLogCounter()
			s := openStore(t, srv, func(c *Config) {
				c.Logger, c.RetryFor = slog.New(logs), 60*time.Second
				c.HTTPClient = &http.Client{Timeout: time.Second}
			})
			if err := outage.down(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				done <- s.Write(context.Background(), spans(10, "a"), []document.Trace{{ID: "aa", TraceID: "aa"}})
			}()
			logs.await(t, retrying) // the batch met the outage
			time.Sleep(50 * time.Millisecond)
			select {
			case err := <-done:
				t.Fatalf("Write returned %v while Meilisearch was down", err)
			default:
			}
			if err := outage.up(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("Write after the outage: %v", err)
			}
			res, err := s.Search(context.Background(), store.Request{Index: store.Spans})
			if err != nil || res.Total != 10 {
				t.Fatalf("after the outage: Total = %d, err = %v; want 10 spans", res.Total, err)
			}
		})
	}
}

func TestFailedTaskSurfacesMeilisearchMessage(t *testing.T) {
	t.Parallel()
	srv := sharedServer(t)
	s := openStore(t, srv, nil)
	// Someone replaces the span index behind the store's back with one keyed by "uid", which span documents
	// lack: Meilisearch accepts the addition and then refuses the documents when it processes the task.
	c := adminClient(srv)
	uid := s.uid(store.Spans)
	for _, op := range []func() (*meilisearch.TaskInfo, error){
		func() (*meilisearch.TaskInfo, error) { return c.DeleteIndex(uid) },
		func() (*meilisearch.TaskInfo, error) {
			return c.CreateIndex(&meilisearch.IndexConfig{Uid: uid, PrimaryKey: "uid"})
		},
	} {
		task, err := op()
		if err != nil {
			t.Fatal(err)
		}
		if task, err := c.WaitForTask(task.TaskUID, 5*time.Millisecond); err != nil || task.Status != meilisearch.TaskStatusSucceeded {
			t.Fatalf("task %+v, err %v", task, err)
		}
	}
	err := s.Write(context.Background(), spans(3, "b"), nil)
	var te *TaskError
	if !errors.As(err, &te) {
		t.Fatalf("Write = %v, want a *TaskError", err)
	}
	// missing_document_id if the store lets the index's primary key stand; index_primary_key_already_exists
	// if it names "id" with the addition.
	if (te.Code != "missing_document_id" && te.Code != "index_primary_key_already_exists") || te.Message == "" ||
		te.Type != "documentAdditionOrUpdate" || te.Index != uid || te.TaskUID == 0 {
		t.Errorf("TaskError = %+v", te)
	}
	if !strings.Contains(err.Error(), te.Message) || !strings.Contains(err.Error(), te.Code) {
		t.Errorf("error %q does not carry Meilisearch's message and code", err)
	}
	// The task really failed in Meilisearch, with that message.
	task, err := adminClient(srv).GetTask(te.TaskUID)
	if err != nil || task.Status != meilisearch.TaskStatusFailed || task.Error.Message != te.Message {
		t.Errorf("task %d in Meilisearch: %+v, err %v", te.TaskUID, task, err)
	}
}

func TestBadDocumentIDRefusedBeforeSending(t *testing.T) {
	t.Parallel()
	srv := sharedServer(t)
	s := openStore(t, srv, nil)
	docs := spans(3, "c")
	docs[1].ID = "abc/def"
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
	} else if !errors.Is(err, store.ErrBadRequest) {
		t.Errorf("a bad id is not a store.ErrBadRequest (the pipeline would retry it forever): %v", err)
	}
	if got := tasks(t, srv, s, meilisearch.TaskTypeDocumentAdditionOrUpdate); len(got) != 0 {
		t.Errorf("%d document additions reached Meilisearch: %+v", len(got), got)
	}
}

func TestPayloadTooLargeIsSplit(t *testing.T) {
	t.Parallel()
	// The server accepts 4 KiB payloads; 40 spans of about 200 bytes are sent as one 8 KB batch first.
	srv := ownServer(t, func(c *meiliproc.Config) { c.PayloadSizeLimit = "4 KiB" })
	logs := newLogCounter()
	s := openStore(t, srv, func(c *Config) { c.Logger = slog.New(logs) })
	if err := s.Write(context.Background(), spans(40, "k"), nil); err != nil {
		t.Fatalf("Write: %v", err)
	}
	res, err := s.Search(context.Background(), store.Request{Index: store.Spans})
	if err != nil || res.Total != 40 {
		t.Fatalf("Total = %d, err %v; want 40", res.Total, err)
	}
	if logs.count(splitting) == 0 {
		t.Fatal("the batch was not split: raise the document count so it exceeds the payload limit")
	}
	// Later batches stay under the size that failed: no more refusals.
	before, sent := logs.count(splitting), additions(t, srv, s, store.Spans)
	if err := s.Write(context.Background(), spans(40, "l"), nil); err != nil {
		t.Fatalf("second Write: %v", err)
	}
	if n := logs.count(splitting); n != before {
		t.Errorf("%d more refusals after the limit was learned", n-before)
	}
	if n := additions(t, srv, s, store.Spans) - sent; n < 2 {
		t.Errorf("the second Write took %d document additions, want it split", n)
	}
	if res, err := s.Search(context.Background(), store.Request{Index: store.Spans}); err != nil || res.Total != 80 {
		t.Errorf("Total = %d, err %v; want 80", res.Total, err)
	}
}

func TestOpenRejectsForeignIndex(t *testing.T) {
	t.Parallel()
	srv := sharedServer(t)
	cfg := testConfig(t, srv)
	c := adminClient(srv)
	task, err := c.CreateIndex(&meilisearch.IndexConfig{Uid: cfg.IndexPrefix + "traces", PrimaryKey: "trace_id"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitForTask(task.TaskUID, 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), `primary key "trace_id"`) {
		t.Errorf("Open over an index keyed by trace_id = %v", err)
	}
}

// TestSettingsAppliedBeforeDocuments checks that Open has waited for the settings before the first document
// goes out, and that the fields the query language filters and sorts on work right after Open.
func TestSettingsAppliedBeforeDocuments(t *testing.T) {
	t.Parallel()
	srv := sharedServer(t)
	s := openStore(t, srv, func(c *Config) { c.MaxTotalHits = 5 })
	docs := spans(8, "m")
	for i := range docs {
		docs[i].Attr = map[string]any{"http.route": "/stock"}
		docs[i].Resource = map[string]any{"k8s.namespace.name": "shop"}
	}
	if err := s.Write(context.Background(), docs, []document.Trace{{ID: "aa", TraceID: "aa", Services: []string{"svc"},
		Keys: map[string][]string{"customer_id": {"123"}}}}); err != nil {
		t.Fatal(err)
	}
	var lastSettings time.Time
	firstAddition := map[string]time.Time{}
	for _, task := range tasks(t, srv, s) {
		switch task.Type {
		case meilisearch.TaskTypeSettingsUpdate:
			if task.Status != meilisearch.TaskStatusSucceeded {
				t.Errorf("settings task %d on %s: %s %+v", task.UID, task.IndexUID, task.Status, task.Error)
			}
			lastSettings = task.FinishedAt
		case meilisearch.TaskTypeDocumentAdditionOrUpdate:
			if firstAddition[task.IndexUID].IsZero() {
				firstAddition[task.IndexUID] = task.EnqueuedAt
			}
		}
	}
	if len(firstAddition) == 0 || lastSettings.IsZero() {
		t.Fatalf("tasks: settings finished %v, additions %v", lastSettings, firstAddition)
	}
	for uid, at := range firstAddition {
		if at.Before(lastSettings) {
			t.Errorf("the first document addition to %s was enqueued at %v, before the settings finished at %v",
				uid, at, lastSettings)
		}
	}

	span := func(field string, v string) query.Expr {
		return &query.Compare{Field: field, Op: query.Eq, Value: query.Value{Str: v}}
	}
	for _, r := range []store.Request{
		{Index: store.Spans, Filter: &query.And{Terms: []query.Expr{span("service", "svc"), &query.In{Field: "trace_id", Values: []query.Value{str(docs[0].TraceID), str(docs[4].TraceID)}},
			span("attr.http.route", "/stock"), span("resource.k8s.namespace.name", "shop"),
			&query.Compare{Field: "duration", Op: query.Ge, Value: query.Value{Str: "0", IsNum: true}}}},
			Sort: []query.Sort{{Field: query.Field{Path: "duration"}, Desc: true}}},
		{Index: store.Traces, Filter: &query.And{Terms: []query.Expr{span("services", "svc"), span("keys.customer_id", "123")}},
			Sort: []query.Sort{{Field: query.Field{Path: "duration"}}}},
	} {
		res, err := s.Search(context.Background(), r)
		if err != nil {
			t.Errorf("%s %s: %v", r.Index, r.Filter, err)
			continue
		}
		if r.Index == store.Traces {
			if res.Total != 1 {
				t.Errorf("%s: Total %d, want 1", r.Filter, res.Total)
			}
			continue
		}
		// MaxTotalHits caps the reachable hits at 5 (Meilisearch 1.50 still counts all 8 matches in
		// totalHits with page/hitsPerPage); the sort comes first in the ranking.
		if len(res.Spans) != 5 || res.Total < 5 {
			t.Errorf("%s: Total %d, %d hits; want the hits capped at 5", r.Filter, res.Total, len(res.Spans))
		}
		for i, sp := range res.Spans {
			if want := int64(7 - i); sp.Duration != want {
				t.Errorf("hit %d has duration %d, want %d (sorted by duration descending)", i, sp.Duration, want)
			}
		}
	}
}

func TestRetentionOnOpen(t *testing.T) {
	t.Parallel()
	srv := sharedServer(t)
	s := openStore(t, srv, nil)
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
	again := openStore(t, srv, func(c *Config) { c.IndexPrefix, c.Retention = s.cfg.IndexPrefix, 24*time.Hour })
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
	t.Parallel()
	srv := sharedServer(t)
	t.Run("concurrent writes share tasks", func(t *testing.T) {
		s := openStore(t, srv, nil)
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
		if n := additions(t, srv, s, store.Spans); n > writers/4 {
			t.Errorf("%d writes took %d document additions, want them grouped into at most %d", writers, n, writers/4)
		}
		if res, err := s.Search(context.Background(), store.Request{Index: store.Spans}); err != nil || res.Total != writers*10 {
			t.Errorf("Total = %d, err %v; want %d", res.Total, err, writers*10)
		}
	})
	t.Run("limits split a write", func(t *testing.T) {
		s := openStore(t, srv, func(c *Config) { c.MaxBatchDocs = 100 })
		if err := s.Write(context.Background(), spans(250, "h"), nil); err != nil {
			t.Fatal(err)
		}
		if n := additions(t, srv, s, store.Spans); n != 3 {
			t.Errorf("250 documents with MaxBatchDocs 100 took %d additions, want 3", n)
		}
		res, err := s.Search(context.Background(), store.Request{Index: store.Spans})
		if err != nil || res.Total != 250 {
			t.Errorf("Total = %d, err %v; want 250", res.Total, err)
		}
	})
	t.Run("close flushes", func(t *testing.T) {
		s := openStore(t, srv, func(c *Config) { c.Linger = time.Hour })
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // Write still queues the documents, then stops waiting
		if err := s.Write(ctx, spans(5, "i"), nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("Write with a canceled context = %v", err)
		}
		if n := additions(t, srv, s, store.Spans); n != 0 {
			t.Fatalf("%d additions before Close with an hour of linger", n)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if n := additions(t, srv, s, store.Spans); n != 1 {
			t.Errorf("Close sent %d additions, want the pending batch", n)
		}
		// Close waited for the task: the documents are searchable.
		reader := openStore(t, srv, func(c *Config) { c.IndexPrefix = s.cfg.IndexPrefix })
		if res, err := reader.Search(context.Background(), store.Request{Index: store.Spans}); err != nil || res.Total != 5 {
			t.Errorf("after Close: Total = %d, err %v; want 5", res.Total, err)
		}
		if err := s.Write(context.Background(), spans(1, "j"), nil); !errors.Is(err, errClosed) {
			t.Errorf("Write after Close = %v", err)
		}
	})
}

func TestSearchErrorsCarryMeilisearchMessage(t *testing.T) {
	t.Parallel()
	s := openStore(t, sharedServer(t), nil)
	_, err := s.Search(context.Background(), store.Request{Index: store.Spans, Distinct: "nope"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "invalid_search_distinct" || ae.Status != 400 || !strings.Contains(ae.Message, "nope") {
		t.Fatalf("Search with a bad distinct attribute = %v, want an APIError invalid_search_distinct naming it", err)
	}
	if !errors.Is(err, store.ErrBadRequest) {
		t.Errorf("an invalid search is not a store.ErrBadRequest: %v", err)
	}
}
