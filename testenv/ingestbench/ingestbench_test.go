package ingestbench

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/testenv/indexerproc"
)

// TestRunCountsWhatWasSent runs a tiny load (2 exporters x 3 requests of 40 spans) against both stores and
// checks that the report counts every request and span and that every span became searchable.
func TestRunCountsWhatWasSent(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: this test starts an indexer and a Meilisearch process (make test runs it, without -short)")
	}
	bin := indexerproc.Build(t)
	var log bytes.Buffer
	cfg := Config{Indexer: bin, Exporters: 2, BatchSpans: 40, Spans: 6 * 40, LagEvery: 1,
		SearchableTimeout: time.Minute, WorkDir: t.TempDir(), Log: &log}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	results, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	if len(results) != 2 || results[0].Store != Embedded || results[1].Store != Meili {
		t.Fatalf("results for %v, want embedded then meili", results)
	}
	for _, r := range results {
		if r.Requests != 6 || r.AckedRequests != 6 || r.Failed != 0 {
			t.Errorf("%s: %d requests, %d acked, %d failed; want 6, 6, 0", r.Store, r.Requests, r.AckedRequests, r.Failed)
		}
		if r.SentSpans != 240 || r.AckedSpans != 240 {
			t.Errorf("%s: %d spans sent, %d acked; want 240", r.Store, r.SentSpans, r.AckedSpans)
		}
		if !r.Complete || r.Searchable != 240 || r.SearchableTarget != 240 {
			t.Errorf("%s: %d of %d spans searchable (complete %v); want all 240", r.Store, r.Searchable, r.SearchableTarget, r.Complete)
		}
		if r.LagSamples != 6 || r.LagMissing != 0 {
			t.Errorf("%s: %d lag samples, %d missing; want 6, 0", r.Store, r.LagSamples, r.LagMissing)
		}
		if r.AckP50 <= 0 || r.AckMax < r.AckP99 || r.AckP99 < r.AckP50 || r.AckedPerSec <= 0 {
			t.Errorf("%s: ack latency p50 %v p99 %v max %v, %.0f spans/s", r.Store, r.AckP50, r.AckP99, r.AckMax, r.AckedPerSec)
		}
		if r.IndexerCPU <= 0 || r.IndexerPeakRSS < 1<<20 {
			t.Errorf("%s: indexer CPU %v, peak RSS %d", r.Store, r.IndexerCPU, r.IndexerPeakRSS)
		}
		if r.Store == Meili && r.MeiliPeakRSS < 1<<20 {
			t.Errorf("meili: Meilisearch peak RSS %d", r.MeiliPeakRSS)
		}
		if r.Pipeline == nil {
			t.Errorf("%s: no GET /api/v1/ingest stats", r.Store)
		}
	}
	var table bytes.Buffer
	if err := WriteTable(&table, results); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s%s", table.String(), Summary(cfg, results))
	if entries, _ := os.ReadDir(cfg.WorkDir); len(entries) != 0 {
		t.Errorf("work directory not cleaned up: %v", entries)
	}
}

// TestGeneratorRequests checks the shape of generated requests: exactly n spans in whole traces of 4-6
// (bar the last), 14 span and 5 resource attributes, fresh ids.
func TestGeneratorRequests(t *testing.T) {
	g := newGenerator(1)
	seen := map[string]bool{}
	for _, n := range []int{1, 7, 500} {
		req, traces := g.request(n, time.Now())
		if _, err := proto.Marshal(req); err != nil {
			t.Fatal(err)
		}
		perTrace := map[string]int{}
		total := 0
		for _, rs := range req.ResourceSpans {
			if got := len(rs.Resource.Attributes); got != ResourceAttributes {
				t.Errorf("resource has %d attributes, want %d", got, ResourceAttributes)
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					total++
					if got := len(sp.Attributes); got != SpanAttributes {
						t.Errorf("span has %d attributes, want %d", got, SpanAttributes)
					}
					id := string(sp.SpanId)
					if seen[id] {
						t.Errorf("span id %x repeated", sp.SpanId)
					}
					seen[id] = true
					perTrace[string(sp.TraceId)]++
				}
			}
		}
		if total != n || len(perTrace) != len(traces) {
			t.Errorf("request(%d): %d spans in %d traces, ids for %d", n, total, len(perTrace), len(traces))
		}
		for i, id := range traces {
			if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
				t.Errorf("trace id %q", id)
			}
			if c := perTrace[string(must(hex.DecodeString(id)))]; i < len(traces)-1 && (c < 4 || c > 6) {
				t.Errorf("trace %d of %d has %d spans, want 4-6", i, len(traces), c)
			}
		}
	}
}

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if q := quantile(d, 0.5); q != 50 {
		t.Errorf("p50 = %d", q)
	}
	if q := quantile(d, 0.99); q != 99 {
		t.Errorf("p99 = %d", q)
	}
	if q := quantile(d, 1); q != 100 {
		t.Errorf("max = %d", q)
	}
	if q := quantile(nil, 0.5); q != 0 {
		t.Errorf("empty = %d", q)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
