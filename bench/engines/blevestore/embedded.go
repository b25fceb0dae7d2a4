// Package blevestore is the bleve (scorch) store the embedded store replaced, kept to measure against: the
// non-test files of indexer/store/embedded as they were at commit 5c0dec1, unchanged except for this doc,
// the package name, OpenWith (scorch options for the tuned variant of the engine benchmark) and Facet
// refusing (store.ErrBadRequest) the fields store.FacetFields has gained since, which it has no column for. It
// implements store.Store with the same filter semantics as Meilisearch (see package query).
package blevestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/mapping"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// Store is the bleve store: one bleve index for spans and one for traces, under one directory.
type Store struct {
	spans  *idx
	traces *idx
}

var _ store.Store = (*Store)(nil)

// BatchSize is the number of spans per Write the pipeline uses with this store unless told otherwise. bleve
// builds a whole batch in memory (documents, analysis, an in-memory segment) before persisting it: with two
// writers, batches of 5,000 spans took the indexer to 1.2 GB RSS under sustained ingest, batches of 2,000 to
// 710 MB at the same throughput (make bench-ingest).
const BatchSize = 2000

// idx is one bleve index with the fields its documents search and sort on.
type idx struct {
	b          bleve.Index
	searchable map[string]bool
	sortable   map[string]bool
	facetable  map[string]bool // paths Facet counts (store.FacetFields)
}

// sortable paths carry doc values; start also serves the default order and retention.
var (
	spanSortable  = set("start", "end", "duration")
	traceSortable = set("start", "end", "duration", "span_count", "error_count")
)

func set(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// Open opens the store in dir, creating it if needed, with bleve's default scorch configuration.
func Open(dir string) (*Store, error) { return OpenWith(dir, nil) }

// OpenWith is Open with a scorch runtime configuration (bleve.OpenUsing / bleve.NewUsing's map, e.g.
// {"unsafe_batch": true}); nil is bleve's default. The configuration applies to both indexes and is not
// stored: pass it again on every open.
func OpenWith(dir string, config map[string]any) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	spans, err := openIndex(filepath.Join(dir, "spans.bleve"), config)
	if err != nil {
		return nil, err
	}
	traces, err := openIndex(filepath.Join(dir, "traces.bleve"), config)
	if err != nil {
		spans.Close()
		return nil, err
	}
	return &Store{
		spans:  &idx{b: spans, searchable: set(query.SpanSearchable...), sortable: spanSortable},
		traces: &idx{b: traces, searchable: map[string]bool{}, sortable: traceSortable, facetable: set(store.FacetFields[store.Traces]...)},
	}, nil
}

func openIndex(path string, config map[string]any) (bleve.Index, error) {
	var b bleve.Index
	var err error
	// bleve writes the index path into the map it is given: each index needs a copy of its own.
	config = maps.Clone(config)
	if config == nil {
		b, err = bleve.Open(path)
	} else {
		b, err = bleve.OpenUsing(path, config)
	}
	if errors.Is(err, bleve.ErrorIndexPathDoesNotExist) {
		// Documents are built field by field (IndexAdvanced), so the mapping only has to stay out of the way.
		m := mapping.NewIndexMapping()
		m.DefaultMapping.Dynamic = false
		if config == nil {
			b, err = bleve.New(path, m)
		} else {
			b, err = bleve.NewUsing(path, m, bleve.Config.DefaultIndexType, bleve.Config.DefaultKVStore, config)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("embedded store: open %s: %w", path, err)
	}
	return b, nil
}

// Close implements store.Store.
func (s *Store) Close() error {
	return errors.Join(s.spans.b.Close(), s.traces.b.Close())
}

// Write implements store.Store. It returns once both batches are persisted to disk.
func (s *Store) Write(ctx context.Context, spans []document.Span, traces []document.Trace) error {
	if len(spans) > 0 {
		if err := s.spans.write(ctx, len(spans), func(i int) (string, any) { return spans[i].ID, &spans[i] }); err != nil {
			return err
		}
	}
	if len(traces) > 0 {
		return s.traces.write(ctx, len(traces), func(i int) (string, any) { return traces[i].ID, &traces[i] })
	}
	return nil
}

func (x *idx) write(ctx context.Context, n int, doc func(int) (string, any)) error {
	batch := x.b.NewBatch()
	for i := range n {
		id, d := doc(i)
		if err := store.CheckID(id); err != nil {
			return fmt.Errorf("embedded store: document %d: %w", i, err)
		}
		src, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("embedded store: encode %s: %w", id, err)
		}
		bd, err := buildDocument(id, src, x.searchable, x.sortable, x.facetable)
		if err != nil {
			return fmt.Errorf("embedded store: %s: %w", id, err)
		}
		if err := batch.IndexAdvanced(bd); err != nil {
			return fmt.Errorf("embedded store: %s: %w", id, err)
		}
	}
	persisted := make(chan error, 1)
	batch.SetPersistedCallback(func(err error) { persisted <- err })
	if err := x.b.Batch(batch); err != nil {
		return fmt.Errorf("embedded store: write batch: %w", err)
	}
	select {
	case err := <-persisted:
		if err != nil {
			return fmt.Errorf("embedded store: persist batch: %w", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// GetTraces implements store.Store.
func (s *Store) GetTraces(ctx context.Context, ids []string) ([]document.Trace, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	req := bleve.NewSearchRequestOptions(bleve.NewDocIDQuery(ids), len(ids), 0, false)
	req.Fields = []string{sourceField}
	res, err := s.traces.b.SearchInContext(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("embedded store: get traces: %w", err)
	}
	out := make([]document.Trace, 0, len(res.Hits))
	for _, h := range res.Hits {
		var t document.Trace
		if err := decodeHit(h.Fields, &t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// Fields implements store.Store with the field names of the span index (bleve's Index.Fields), leaving out
// the internal fields (_source, _fields, _text). The names persist with the index, so they survive reopening.
func (s *Store) Fields(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	all, err := s.spans.b.Fields()
	if err != nil {
		return nil, fmt.Errorf("embedded store: fields: %w", err)
	}
	out := make([]string, 0, len(all))
	for _, f := range all {
		if !strings.HasPrefix(f, "_") {
			out = append(out, f)
		}
	}
	return out, nil
}

func decodeHit(fields map[string]any, v any) error {
	src, ok := fields[sourceField].(string)
	if !ok {
		return errors.New("embedded store: hit without stored source")
	}
	if err := json.Unmarshal([]byte(src), v); err != nil {
		return fmt.Errorf("embedded store: decode stored document: %w", err)
	}
	return nil
}
