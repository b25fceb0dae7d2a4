package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/testenv/artifact"
)

// TestDemoOnce runs what `make demo ONCE=1` runs, smaller: a real `indexer serve` process, the scenario through
// the shipped TinyGo build, and the answer checked (run fails if no trace matches or a span lacks customer_id).
func TestDemoOnce(t *testing.T) { testDemo(t, false) }

// TestDemoOnceMeili runs what `make demo MEILI=1 ONCE=1` runs, smaller: the same on a real Meilisearch, the
// indexer holding only the keys `indexer meili-keys` made.
func TestDemoOnceMeili(t *testing.T) { testDemo(t, true) }

func testDemo(t *testing.T, meili bool) {
	root, err := artifact.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	indexer := filepath.Join(dir, "indexer")
	build := exec.Command("go", "build", "-o", indexer, "./indexer/cmd/indexer")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the indexer: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	wasm := artifact.Builds(t)[0] // the shipped TinyGo build
	if err := run(ctx, indexer, wasm.Path, filepath.Join(dir, "data"), 150, true, meili); err != nil {
		t.Fatal(err)
	}
}
