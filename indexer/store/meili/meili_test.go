package meili

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"
	meiliproc "github.com/meshtrace/meshtrace/testenv/meilisearch"
)

// Every test of this package that talks to Meilisearch talks to a real Meilisearch process (the pinned
// binary `make tools` installs, see testenv/meilisearch); a missing binary fails the test, naming `make
// tools`. Tests that leave the server as they found it share one process (shared), each under its own index
// prefix (testConfig); tests that take the server down or need other server options start their own.

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// serverConfig bounds a test server so that several fit on a small machine.
var serverConfig = meiliproc.Config{MaxIndexingThreads: 2, MaxIndexingMemory: "512 MiB"}

var shared struct {
	once sync.Once
	srv  *meiliproc.Server
	err  error
}

// sharedServer returns the package's shared server, starting it on first use; TestMain stops it.
func sharedServer(t testing.TB) *meiliproc.Server {
	t.Helper()
	shared.once.Do(func() { shared.srv, shared.err = meiliproc.Start(context.Background(), serverConfig) })
	if shared.err != nil {
		t.Fatalf("shared Meilisearch server: %v", shared.err)
	}
	return shared.srv
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "shared meilisearch pid %d at %s, %s (tail):\n%s\n", shared.srv.PID,
				shared.srv.URL, meiliproc.LogFile, shared.srv.LogTail(20))
		}
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}

// ownServer starts a server for t alone, for tests that take it down or start it with other options.
func ownServer(t *testing.T, edit func(*meiliproc.Config)) *meiliproc.Server {
	t.Helper()
	cfg := serverConfig
	if edit != nil {
		edit(&cfg)
	}
	return meiliproc.StartTest(t, cfg)
}

// adminClient is a client with the master key and a request timeout, for tests to look at or change the
// server behind the store's back.
func adminClient(srv *meiliproc.Server) meilisearch.ServiceManager {
	return meilisearch.New(srv.URL, meilisearch.WithAPIKey(srv.Key),
		meilisearch.WithCustomClient(&http.Client{Timeout: 10 * time.Second}))
}

// testConfig returns a configuration with a unique index prefix (indexes are deleted after the test) and
// short batching and retry delays.
func testConfig(t testing.TB, srv *meiliproc.Server) Config {
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "meshtrace-test-" + hex.EncodeToString(b[:]) + "-"
	t.Cleanup(func() {
		c := adminClient(srv)
		for _, ix := range []string{"spans", "traces", fieldsIndex} {
			_, _ = c.DeleteIndex(prefix + ix)
		}
	})
	return Config{URL: srv.URL, APIKey: srv.Key, IndexPrefix: prefix, Linger: 2 * time.Millisecond,
		RetryInitial: 5 * time.Millisecond, RetryFor: 5 * time.Second, Logger: quiet}
}

// openStore opens a store on srv with testConfig, edited, and closes it when the test ends.
func openStore(t testing.TB, srv *meiliproc.Server, edit func(*Config)) *Store {
	t.Helper()
	cfg := testConfig(t, srv)
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

// spans returns n span documents, four per trace, whose span ids start with prefix.
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

// TestConformance runs the store conformance suite against the real server.
func TestConformance(t *testing.T) {
	t.Parallel()
	srv := sharedServer(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(context.Background(), testConfig(t, srv))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// TestRangesMatchNumbersOnly checks the query language's rule that <, <=, >, >= match numbers only, which
// Meilisearch 1.15 and later would otherwise break by comparing strings lexicographically. The attribute is
// one that usually holds a number, so ranges on it are allowed whatever the attribute settings.
func TestRangesMatchNumbersOnly(t *testing.T) {
	t.Parallel()
	s := openStore(t, sharedServer(t), nil)
	// OpenTelemetry attribute arrays are homogeneous, so lists are all numbers or all strings.
	values := []any{123, "123", "abc", true, []any{50, 150}, []any{"200", "300"}}
	docs := spans(len(values), "r")
	for i, v := range values {
		docs[i].Attr = map[string]any{"http.response.status_code": v}
	}
	if err := s.Write(context.Background(), docs, nil); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		op   query.Op
		want int // documents matched
	}{{query.Gt, 2}, {query.Lt, 1}, {query.Ge, 2}} {
		res, err := s.Search(context.Background(), store.Request{Index: store.Spans,
			Filter: &query.Compare{Field: "attr.http.response.status_code", Op: tt.op, Value: query.Value{Str: "100", Num: 100, IsNum: true}}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Total != tt.want {
			var got []any
			for _, sp := range res.Spans {
				got = append(got, sp.Attr["http.response.status_code"])
			}
			t.Errorf("attr.http.response.status_code %s 100 matched %v, want %d numeric documents", tt.op, got, tt.want)
		}
	}
}
