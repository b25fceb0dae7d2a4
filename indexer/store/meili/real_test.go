package meili

import (
	"context"
	"testing"

	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"
	meiliproc "github.com/meshtrace/meshtrace/testenv/meilisearch"
)

// TestRealServer runs the conformance suite, and the checks whose point is Meilisearch's own behaviour,
// against a real Meilisearch process (the pinned binary `make tools` installs, see testenv/meilisearch), so
// plain `go test` checks the store against the server's actual indexing, filter and task semantics and not
// only against the in-process stand-in the other tests use. A missing binary fails the test (`make tools`).
func TestRealServer(t *testing.T) {
	srv := meiliproc.StartTest(t, meiliproc.Config{MaxIndexingThreads: 2, MaxIndexingMemory: "512 MiB"})
	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			s, err := Open(context.Background(), testConfig(t, srv.URL, srv.Key))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return s
		})
	})
	t.Run("RangesMatchNumbersOnly", func(t *testing.T) { rangesMatchNumbersOnly(t, srv.URL, srv.Key) })
}
