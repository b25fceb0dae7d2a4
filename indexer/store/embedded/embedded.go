// Package embedded is the default store: an on-disk, in-process search engine with no server to run. It
// implements store.Store with the same filter semantics as Meilisearch (see package query), which the
// conformance suite in storetest checks.
//
// Each index (spans, traces) is a directory of immutable segments, in the manner of Lucene: a Write
// becomes one segment, background merges combine small segments into larger ones, and a manifest names the
// live set. A segment holds its documents as zstd-compressed JSON in blocks of 64, and for every path
// present in them a dictionary of normalized values with the rows holding each (varint lists, or roaring
// bitmaps when longer), the rows holding the path at all, a column of its numbers, and dense columns of
// the sortable numbers (start, end, duration and the trace counts). Filters become bitmap operations per
// segment; the words of the searchable values and their adjacent pairs are terms of a text field, so a
// phrase is a conjunction of pairs. Segments are memory-mapped; memory holds their directories, id
// filters and deleted rows.
//
// Durability: Write returns once the segment file and the manifest naming it are fsynced (and the
// directory); upserts delete the older version's row in the same manifest change. A crash leaves the last
// manifest's state, and Open removes the files no manifest names. design notes: docs/stores.md.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	gojson "github.com/goccy/go-json"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// Store is the embedded store: one index for spans and one for traces, under one directory.
type Store struct {
	spans  *index
	traces *index
	once   sync.Once
}

var _ store.Store = (*Store)(nil)

// BatchSize is the number of spans per Write the pipeline uses with this store unless told otherwise: each
// Write makes a segment, so larger batches make fewer segments to merge.
const BatchSize = 5000

// Config tunes the store. DefaultConfig gives the defaults; OpenConfig takes them for zero fields.
type Config struct {
	// MergeFactor is the number of segments of a size tier merged at once, and the ratio between tiers.
	MergeFactor int
	// MaxSegmentRows bounds the live rows of a merged segment, and so the memory a merge builds it in
	// (about 0.5 KB per row) and the work one merge does.
	MaxSegmentRows int
	Logger         *slog.Logger
}

// DefaultConfig returns the store's defaults.
func DefaultConfig() Config {
	return Config{MergeFactor: 10, MaxSegmentRows: 250_000, Logger: slog.Default()}
}

var (
	spanSchema = &schema{
		searchable: set(query.SpanSearchable...),
		sortable:   []string{"start", "end", "duration"},
	}
	traceSchema = &schema{
		searchable: map[string]bool{},
		sortable:   []string{"start", "end", "duration", "span_count", "error_count"},
	}
)

func set(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// Open opens the store in dir with DefaultConfig, creating it if needed.
func Open(dir string) (*Store, error) { return OpenConfig(dir, Config{}) }

// OpenConfig opens the store in dir, creating it if needed.
func OpenConfig(dir string, cfg Config) (*Store, error) {
	def := DefaultConfig()
	if cfg.MergeFactor < 2 {
		cfg.MergeFactor = def.MergeFactor
	}
	if cfg.MaxSegmentRows <= 0 {
		cfg.MaxSegmentRows = def.MaxSegmentRows
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for _, old := range []string{"spans.bleve", "traces.bleve"} {
		if _, err := os.Stat(filepath.Join(dir, old)); err == nil {
			cfg.Logger.Warn("embedded store: the directory holds an index of the bleve store this engine replaced; it is not read (delete it to reclaim the disk)",
				"path", filepath.Join(dir, old))
		}
	}
	spans, err := openIndex(filepath.Join(dir, "spans"), spanSchema, cfg, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("embedded store: open spans: %w", err)
	}
	traces, err := openIndex(filepath.Join(dir, "traces"), traceSchema, cfg, cfg.Logger)
	if err != nil {
		spans.close()
		return nil, fmt.Errorf("embedded store: open traces: %w", err)
	}
	return &Store{spans: spans, traces: traces}, nil
}

func (s *Store) index(i store.Index) *index {
	if i == store.Traces {
		return s.traces
	}
	return s.spans
}

// Close implements store.Store: it waits for a running merge and unmaps the segments. Closing again does
// nothing.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.spans.close()
		s.traces.close()
	})
	return nil
}

// Write implements store.Store. It returns once both batches are durable and searchable.
func (s *Store) Write(ctx context.Context, spans []document.Span, traces []document.Trace) error {
	if len(spans) > 0 {
		err := write(ctx, s.spans, len(spans), func(i int) (string, int64, any) { return spans[i].ID, spans[i].Start, &spans[i] })
		if err != nil {
			return err
		}
	}
	if len(traces) > 0 {
		return write(ctx, s.traces, len(traces), func(i int) (string, int64, any) { return traces[i].ID, traces[i].Start, &traces[i] })
	}
	return nil
}

func write(ctx context.Context, x *index, n int, doc func(int) (id string, start int64, v any)) error {
	docs := make([]pending, n)
	for i := range n {
		id, start, d := doc(i)
		if err := store.CheckID(id); err != nil {
			return fmt.Errorf("embedded store: document %d: %w", i, err)
		}
		// Map keys unsorted: sorting them is most of what encoding/json spends on a span, and no reader
		// depends on their order.
		src, err := gojson.MarshalWithOption(d, gojson.UnorderedMap(), gojson.DisableHTMLEscape())
		if err != nil {
			return fmt.Errorf("embedded store: encode %s: %w", id, err)
		}
		docs[i] = pending{id: id, start: start, src: src}
	}
	if err := x.write(ctx, docs); err != nil {
		return fmt.Errorf("embedded store: write: %w", err)
	}
	return nil
}

// Fields implements store.Store with the paths of the live span segments. The engine has no limit on
// their number: a path is a dictionary entry of the segments holding it, not a global field id.
func (s *Store) Fields(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.spans.fieldNames(), nil
}

// DeleteBefore implements store.Store.
func (s *Store) DeleteBefore(ctx context.Context, t time.Time, filter query.Expr) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := check(filter); err != nil {
		return err
	}
	before := t.UnixMicro()
	if err := errors.Join(s.spans.deleteBefore(before, filter), s.traces.deleteBefore(before, filter)); err != nil {
		return fmt.Errorf("embedded store: retention: %w", err)
	}
	return nil
}
