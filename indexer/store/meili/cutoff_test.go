package meili

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/testenv/ingestbench"
)

// TestSearchCutoffIsReportedPartial checks on a real server that a search Meilisearch stopped at
// searchCutoffMs comes back marked partial, and the same search under the default cut-off does not. The
// same documents are written to two stores (searchCutoffMs is an index setting): one with a 1 ms cut-off,
// which a sorted full-text search over 20,000 documents exceeds, and one with the default.
func TestSearchCutoffIsReportedPartial(t *testing.T) {
	docs, err := ingestbench.Documents(20_000, 3, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := sharedServer(t)
	cut := openStore(t, srv, func(c *Config) { c.SearchCutoff = time.Millisecond })
	full := openStore(t, srv, nil)
	ctx := context.Background()
	for _, s := range []*Store{cut, full} {
		if err := s.Write(ctx, docs, nil); err != nil {
			t.Fatal(err)
		}
	}
	req := store.Request{Index: store.Spans, Text: []string{"get"}, Limit: 100,
		Sort: []query.Sort{{Field: query.Field{Path: "duration"}, Desc: true}}}
	res, err := full.Search(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Partial || res.Total == 0 {
		t.Fatalf("default cut-off: partial=%v total=%d, want a complete, non-empty answer", res.Partial, res.Total)
	}
	res, err = cut.Search(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Partial {
		t.Errorf("1 ms cut-off: answer (total %d) not marked partial", res.Total)
	}
}

// TestRangeOnUnindexedAttributeIsRefused checks that a range on an attribute outside RangeAttributes is a
// bad request naming the setting, while one on a listed attribute runs.
func TestRangeOnUnindexedAttributeIsRefused(t *testing.T) {
	s := openStore(t, sharedServer(t), func(c *Config) { c.RangeAttributes = []string{"http.response.status_code"} })
	for _, tt := range []struct {
		field string
		ok    bool
	}{{"attr.http.response.status_code", true}, {"duration", true}, {"attr.server.port", false}, {"resource.pid", false}} {
		_, err := s.Search(context.Background(), store.Request{Index: store.Spans,
			Filter: &query.Not{X: &query.Compare{Field: tt.field, Op: query.Gt, Value: query.Int(5)}}})
		if tt.ok != (err == nil) {
			t.Errorf("%s > 5: err = %v, want ok=%v", tt.field, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, store.ErrBadRequest) || !strings.Contains(err.Error(), "--meili-range-attributes")) {
			t.Errorf("%s > 5: err = %v, want a bad request naming --meili-range-attributes", tt.field, err)
		}
	}
}
