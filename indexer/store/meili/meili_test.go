package meili

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/meili/meilitest"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"
)

// testKey is the master key of the stand-in, so every request is checked for its Authorization header.
const testKey = "meshtrace-test-master-key"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// target is the Meilisearch the conformance suite runs against: the server at MEILI_URL (with
// MEILI_MASTER_KEY) when set, as `make test-meili` does, else a fresh stand-in.
func target(t *testing.T) (url, key string) {
	if u := os.Getenv("MEILI_URL"); u != "" {
		return u, os.Getenv("MEILI_MASTER_KEY")
	}
	srv := meilitest.Start(meilitest.Options{MasterKey: testKey, TaskDelay: time.Millisecond})
	t.Cleanup(srv.Close)
	return srv.URL, testKey
}

// testConfig returns a configuration with a unique index prefix (indexes are deleted after the test) and
// short batching and retry delays.
func testConfig(t *testing.T, url, key string) Config {
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "meshtrace-test-" + hex.EncodeToString(b[:]) + "-"
	t.Cleanup(func() {
		c := meilisearch.New(url, meilisearch.WithAPIKey(key))
		for _, ix := range []string{"spans", "traces", fieldsIndex} {
			_, _ = c.DeleteIndex(prefix + ix)
		}
	})
	return Config{URL: url, APIKey: key, IndexPrefix: prefix, Linger: 2 * time.Millisecond,
		RetryInitial: 5 * time.Millisecond, RetryFor: 5 * time.Second, Logger: quiet}
}

func TestConformance(t *testing.T) {
	url, key := target(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(context.Background(), testConfig(t, url, key))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// TestRangesMatchNumbersOnly checks the query language's rule that <, <=, >, >= match numbers only, which
// Meilisearch 1.15 and later would otherwise break by comparing strings lexicographically.
func TestRangesMatchNumbersOnly(t *testing.T) {
	url, key := target(t)
	rangesMatchNumbersOnly(t, url, key)
}

func rangesMatchNumbersOnly(t *testing.T, url, key string) {
	s, err := Open(context.Background(), testConfig(t, url, key))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// OpenTelemetry attribute arrays are homogeneous, so lists are all numbers or all strings.
	values := []any{123, "123", "abc", true, []any{50, 150}, []any{"200", "300"}}
	docs := spans(len(values), "r")
	for i, v := range values {
		docs[i].Attr = map[string]any{"n": v}
	}
	if err := s.Write(context.Background(), docs, nil); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		op   query.Op
		want int // documents matched
	}{{query.Gt, 2}, {query.Lt, 1}, {query.Ge, 2}} {
		res, err := s.Search(context.Background(), store.Request{Index: store.Spans,
			Filter: &query.Compare{Field: "attr.n", Op: tt.op, Value: query.Value{Str: "100", Num: 100, IsNum: true}}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Total != tt.want {
			var got []any
			for _, sp := range res.Spans {
				got = append(got, sp.Attr["n"])
			}
			t.Errorf("attr.n %s 100 matched %v, want %d numeric documents", tt.op, got, tt.want)
		}
	}
}
