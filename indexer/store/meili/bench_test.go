package meili

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"
	"github.com/meshtrace/meshtrace/testenv/indexerproc"
	"github.com/meshtrace/meshtrace/testenv/ingestbench"
	meiliproc "github.com/meshtrace/meshtrace/testenv/meilisearch"
)

// BenchmarkBatchBuild measures what the writer spends on the CPU per batch of 5,000 generated spans, side by
// side: "ndjson" is the store's path (id check and NDJSON encoding), "json-array" what handing the slice to
// the client's AddDocuments would cost (one json.Marshal), "queue" the copy of encoded lines into a batch,
// and "ndjson+gzip" the extra cost of compressing the payload (not done by default). Documents per second
// against a real Meilisearch depend on the server's indexing and are not measured here.
func BenchmarkBatchBuild(b *testing.B) {
	var spans []document.Span
	err := storetest.Generate(5000, 1, func(sp []document.Span, _ document.Trace) error {
		spans = append(spans, sp...)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	spans = spans[:5000]
	encoded, err := encodeSpans(spans)
	if err != nil {
		b.Fatal(err)
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(len(spans)*b.N)/b.Elapsed().Seconds(), "docs/s")
		b.ReportMetric(float64(len(encoded.buf))/float64(len(spans)), "bytes/doc")
	}
	b.Run("ndjson", func(b *testing.B) {
		for b.Loop() {
			if _, err := encodeSpans(spans); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("json-array", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(spans); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("queue", func(b *testing.B) {
		bt := &batcher{s: &Store{cfg: Config{MaxBatchDocs: 50_000, Linger: time.Hour}}, maxBytes: 64 << 20,
			wake: make(chan struct{}, 1)}
		for b.Loop() {
			if _, err := bt.add(encoded); err != nil {
				b.Fatal(err)
			}
			bt.open, bt.sealed = nil, nil
		}
		report(b)
	})
	b.Run("ndjson+gzip", func(b *testing.B) {
		var out bytes.Buffer
		for b.Loop() {
			l, err := encodeSpans(spans)
			if err != nil {
				b.Fatal(err)
			}
			out.Reset()
			zw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
			_, _ = zw.Write(l.buf)
			_ = zw.Close()
		}
		report(b)
		b.ReportMetric(float64(out.Len())/float64(len(spans)), "gzip-bytes/doc")
	})
}

// v1SpanSettings are the span index settings before filterable attributes were made granular (every fixed
// field, attr and resource filterable with every feature; attr searchable; all relevancy rules): the
// "before" of BenchmarkIndexSettings.
const v1SpanSettings = `{
 "filterableAttributes": ["duration","end","error","events.name","id","kind","links.span_id","links.trace_id","name",
   "parent_span_id","scope","service","span_id","start","status_code","status_message","trace_id","attr","resource"],
 "sortableAttributes": ["duration","end","error","id","kind","name","parent_span_id","scope","service","span_id",
   "start","status_code","status_message","trace_id"],
 "searchableAttributes": ["name","status_message","attr","events.name"],
 "rankingRules": ["sort","words","typo","proximity","attribute","exactness"],
 "typoTolerance": {"enabled": true, "minWordSizeForTypos": {"oneTypo": 5, "twoTypos": 9}, "disableOnWords": [],
   "disableOnAttributes": ["id","trace_id","span_id","parent_span_id","links.trace_id","links.span_id"]},
 "pagination": {"maxTotalHits": 100000}
}`

// BenchmarkIndexSettings measures how fast a real Meilisearch (testenv/meilisearch, 2 indexing threads)
// indexes 50,000 filter-like span documents (testenv/ingestbench's, about 1.3 KB of JSON each), in two NDJSON tasks of 25,000, under different span index
// settings, side by side on one server: "v1" (v1SpanSettings), "store" (the store's settings), and the
// store's settings with one choice changed. Each iteration indexes into a fresh index; docs/s is wall
// time from the first upload to the last task's success, and meili-cpu-us/doc Meilisearch's CPU time. Run
// with -benchtime 1x (rounds are long); -count alternates nothing, so compare variants within one run.
func BenchmarkIndexSettings(b *testing.B) {
	srv := meiliproc.StartTest(b, meiliproc.Config{MaxIndexingThreads: 2, MaxIndexingMemory: "1 GiB"})
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: srv.URL, APIKey: srv.Key, IndexPrefix: "bench-", Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const docs, perTask = 50_000, 25_000
	spans, err := ingestbench.Documents(docs, 7, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	var payloads [][]byte
	for i := 0; i < len(spans); i += perTask {
		l, err := encodeSpans(spans[i:min(i+perTask, len(spans))])
		if err != nil {
			b.Fatal(err)
		}
		payloads = append(payloads, l.buf)
	}
	store := func(edit func(*schema)) func(uid string) error {
		return func(uid string) error {
			sc := spanSchema(s.cfg)
			if edit != nil {
				edit(&sc)
			}
			return s.setup(ctx, uid, sc)
		}
	}
	variants := []struct {
		name  string
		apply func(uid string) error
	}{
		{"v1", func(uid string) error {
			var v1 meilisearch.Settings
			if err := json.Unmarshal([]byte(v1SpanSettings), &v1); err != nil {
				return err
			}
			return s.setup(ctx, uid, schema{settings: &v1})
		}},
		{"store", store(nil)},
		{"store-attr-searchable", store(func(sc *schema) {
			sc.settings.SearchableAttributes = []string{"name", "status_message", "attr", "events.name"}
		})},
		{"store-by-attribute", store(func(sc *schema) { sc.settings.ProximityPrecision = meilisearch.ByAttribute })},
		{"store-prefix-search-on", store(func(sc *schema) { sc.settings.PrefixSearch = ptr("indexingTime") })},
		{"store-typo-on", store(func(sc *schema) { sc.settings.TypoTolerance.Enabled = true })},
		{"store-locale-eng", store(func(sc *schema) {
			sc.settings.LocalizedAttributes = []*meilisearch.LocalizedAttributes{{AttributePatterns: []string{"*"}, Locales: []string{"eng"}}}
		})},
		{"store-attributes-unfilterable", store(func(sc *schema) { sc.filterable = filterRules(query.SpanFields, nil, nil) })},
		{"store-name-only-searchable", store(func(sc *schema) { sc.settings.SearchableAttributes = []string{"name"} })},
		{"store-attr-ranges", store(func(sc *schema) {
			sc.filterable = filterRules(query.SpanFields, []string{query.AttrPrefix + "*"}, []string{query.ResourcePrefix + "*"})
		})},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			var wall, cpu time.Duration
			n := 0
			for b.Loop() {
				n++
				uid := fmt.Sprintf("bench-%s-%d", v.name, n)
				if err := v.apply(uid); err != nil {
					b.Fatal(err)
				}
				cpu0, _ := indexerproc.CPUTime(srv.PID)
				t0 := time.Now()
				var tasks []int64
				for _, p := range payloads {
					ti, err := s.client.Index(uid).AddDocumentsNdjsonWithContext(ctx, p, nil)
					if err != nil {
						b.Fatal(err)
					}
					tasks = append(tasks, ti.TaskUID)
				}
				for _, t := range tasks {
					if err := s.wait(ctx, t); err != nil {
						b.Fatal(err)
					}
				}
				wall += time.Since(t0)
				cpu1, _ := indexerproc.CPUTime(srv.PID)
				cpu += cpu1 - cpu0
				_, _ = s.client.DeleteIndexWithContext(ctx, uid)
			}
			b.ReportMetric(float64(docs*n)/wall.Seconds(), "docs/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(docs*n), "meili-cpu-us/doc")
		})
	}
}

func ptr[T any](v T) *T { return &v }
