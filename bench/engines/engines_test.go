package engines

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"

	"github.com/meshtrace/meshtrace/bench/engines/blevestore"
)

// candidate is one engine of the comparison, with how the benchmark writes to it.
type candidate struct {
	name    string
	new     func() engine
	writers int // concurrent Writes
	batch   int // spans per Write (whole traces, with their trace documents)
	note    string
}

// bleveTuned is the scorch configuration of the tuned bleve candidate: fewer, larger merges (segments of
// up to 20 per tier, merged 20 at a time, none smaller than 25,000 documents counted as small) and two
// persister workers. unsafe_batch lets Batch return before the segment is persisted; the store still waits
// for the persisted callback, so Write keeps its durability.
var bleveTuned = map[string]any{
	"unsafe_batch": true,
	"scorchMergePlanOptions": map[string]any{
		"MaxSegmentsPerTier": 20, "SegmentsPerMergeTask": 20, "FloorSegmentSize": 25_000,
	},
	"scorchPersisterOptions": map[string]any{"NumPersisterWorkers": 2},
}

// candidates are the engines, in the order they run (candidate_embedded_test.go puts embedded first).
var candidates = []candidate{
	{name: "bleve", writers: 2, batch: 5000, note: "blevestore (embedded at 5c0dec1), default scorch config, through querysvc",
		new: func() engine {
			return &storeEngine{openStore: func(dir string) (store.Store, error) { return blevestore.Open(dir) }}
		}},
	{name: "bleve-tuned", writers: 2, batch: 25_000, note: "blevestore with bleveTuned and batches of 25,000 spans",
		new: func() engine {
			return &storeEngine{openStore: func(dir string) (store.Store, error) { return blevestore.OpenWith(dir, bleveTuned) }}
		}},
	{name: "sqlite", writers: 2, batch: 5000, note: "modernc.org/sqlite, WAL, synchronous=FULL, FTS5",
		new: func() engine { return &sqliteEngine{} }},
	{name: "duckdb", writers: 2, batch: 5000, note: "duckdb-go/v2, Appender, no indexes, regexp free text",
		new: func() engine { return &duckdbEngine{} }},
}

// outcome is what one engine measured, for the summary.
type outcome struct {
	name                    string
	spans                   int
	spansPerSec, cpuPerSpan float64
	bytesPerSpan            float64
	ingest                  time.Duration
	p50, p99                map[string]float64
	status                  map[string]string // case -> "unsupported" / "FAIL" when not measured
	failed                  string
}

// BenchmarkEngines ingests the same generated spans (gen.go) into each engine selected by ENGINES (comma
// list; default all: embedded, bleve, bleve-tuned, sqlite, duckdb), one after another, ENGINES_SPANS spans
// (default 200,000), each engine in a directory of its own under ENGINES_DIR (default
// os.TempDir()/meshtrace-engines), removed afterwards unless ENGINES_KEEP=1. Per engine, the sub-benchmark
// "ingest" reports spans/s (wall time of the Writes, generation running alongside), cpu-us/span (process
// user+system CPU over the ingest and the close, less the generator's own CPU, measured on a pass that only
// generates) and bytes/span (du of the directory after close, trace documents included); then each query
// case runs with b.Loop and reports p50-ms and p99-ms. Every answer's count must be the one counted at
// generation (and the first answer's hits must match, in order), or the benchmark fails. A markdown summary
// goes to stderr at the end.
func BenchmarkEngines(b *testing.B) {
	n := envInt(b, "ENGINES_SPANS", 200_000)
	benchSpans = n
	selected := candidates
	if v := os.Getenv("ENGINES"); v != "" {
		selected = nil
		for _, name := range strings.Split(v, ",") {
			i := slices.IndexFunc(candidates, func(c candidate) bool { return c.name == strings.TrimSpace(name) })
			if i < 0 {
				b.Fatalf("ENGINES: unknown engine %q", name)
			}
			selected = append(selected, candidates[i])
		}
	}
	base := os.Getenv("ENGINES_DIR")
	if base == "" {
		base = filepath.Join(os.TempDir(), "meshtrace-engines")
	}
	keep := os.Getenv("ENGINES_KEEP") == "1"

	// Expected answers, and the generator's own cost.
	t0 := time.Now()
	benchLookup = benchLookupTrace()
	cases := benchCases(benchLookup)
	if err := benchGenerate(func([]document.Span, []document.Trace) error { return nil }, cases); err != nil {
		b.Fatal(err)
	}
	countTime := time.Since(t0)
	cpu0, t0 := cpuTime(b), time.Now()
	if err := benchGenerate(func([]document.Span, []document.Trace) error { return nil }, nil); err != nil {
		b.Fatal(err)
	}
	genCPU, genWall := cpuTime(b)-cpu0, time.Since(t0)
	fmt.Fprintf(os.Stderr, "BenchmarkEngines: %d spans; counting the expected answers took %v; generating alone %v wall, %.2f us CPU/span (subtracted from the engines' CPU)\n",
		n, countTime.Round(time.Millisecond), genWall.Round(time.Millisecond), float64(genCPU.Microseconds())/float64(n))
	for _, c := range cases {
		if c.Want == 0 {
			fmt.Fprintf(os.Stderr, "BenchmarkEngines: case %s has no match at %d spans: it is skipped (an empty answer measures nothing)\n", c.Name, n)
		}
	}

	var results []*outcome
	for _, cand := range selected {
		out := &outcome{name: cand.name, spans: n, p50: map[string]float64{}, p99: map[string]float64{}, status: map[string]string{}}
		results = append(results, out)
		b.Run(cand.name, func(b *testing.B) {
			dir := filepath.Join(base, cand.name)
			if err := os.RemoveAll(dir); err != nil {
				b.Fatal(err)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			if !keep {
				defer os.RemoveAll(dir)
			}
			e := cand.new()
			defer e.close()
			ok := b.Run("ingest", func(b *testing.B) {
				if out.ingest == 0 {
					if err := ingest(b, e, cand, dir, genCPU, out); err != nil {
						out.failed = err.Error()
						b.Fatal(err)
					}
				}
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(out.spansPerSec, "spans/s")
				b.ReportMetric(out.cpuPerSpan, "cpu-us/span")
				b.ReportMetric(out.bytesPerSpan, "bytes/span")
			})
			if !ok {
				if out.failed == "" {
					out.failed = "ingest failed"
				}
				return
			}
			for _, c := range cases {
				out.status[c.Name] = "FAIL"
				b.Run(c.Name, func(b *testing.B) { runCase(b, e, c, out) })
			}
		})
	}
	printSummary(results, cases)
}

// ingest opens the engine, writes the fixture with cand.writers concurrent Writes of cand.batch spans,
// closes it, measures its directory and opens it again for the queries.
func ingest(b *testing.B, e engine, cand candidate, dir string, genCPU time.Duration, out *outcome) error {
	if err := e.open(dir); err != nil {
		return err
	}
	ctx := context.Background()
	type batch struct {
		spans  []document.Span
		traces []document.Trace
	}
	work := make(chan batch, cand.writers)
	errc := make(chan error, cand.writers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	written, next := 0, 100_000
	cpu0, t0 := cpuTime(b), time.Now()
	for range cand.writers {
		wg.Go(func() {
			for bt := range work {
				if err := e.write(ctx, bt.spans, bt.traces); err != nil {
					errc <- err
					for range work { // drain, so that the generator is not blocked
					}
					return
				}
				mu.Lock()
				written += len(bt.spans)
				if written >= next {
					fmt.Fprintf(os.Stderr, "BenchmarkEngines/%s: %d spans written in %v\n", cand.name, written, time.Since(t0).Round(time.Second))
					next += max(100_000, out.spans/10/100_000*100_000)
				}
				mu.Unlock()
			}
		})
	}
	var writeErr error
	genErr := benchGenerate(func(spans []document.Span, traces []document.Trace) error {
		// Split the generator's batch into Writes of at most cand.batch spans of whole traces.
		first := 0
		for len(traces) > 0 {
			k, m := 0, 0
			for k < len(traces) && (m == 0 || m+traces[k].SpanCount <= cand.batch) {
				m += traces[k].SpanCount
				k++
			}
			select {
			case work <- batch{spans[first : first+m], traces[:k]}:
			case writeErr = <-errc:
				return writeErr
			}
			first += m
			traces = traces[k:]
		}
		if first != len(spans) {
			return fmt.Errorf("generator batch of %d spans, its traces hold %d", len(spans), first)
		}
		return nil
	}, nil)
	close(work)
	wg.Wait()
	close(errc)
	if err := errors.Join(genErr, <-errc); err != nil {
		return err
	}
	wall := time.Since(t0)
	if err := e.close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	cpu := cpuTime(b) - cpu0 - genCPU
	size, err := du(dir)
	if err != nil {
		return err
	}
	out.ingest = wall
	out.spansPerSec = float64(out.spans) / wall.Seconds()
	out.cpuPerSpan = float64(cpu.Microseconds()) / float64(out.spans)
	out.bytesPerSpan = float64(size) / float64(out.spans)
	fmt.Fprintf(os.Stderr, "BenchmarkEngines/%s: ingest %v (%.0f spans/s), %.1f us CPU/span, %d bytes on disk (%.0f/span)\n",
		cand.name, wall.Round(time.Millisecond), out.spansPerSec, out.cpuPerSpan, size, out.bytesPerSpan)
	return e.open(dir)
}

// runCase runs one query case b.N times, timing each answer, and checks every answer's count (and the first
// answer's hits).
func runCase(b *testing.B, e engine, c *queryCase, out *outcome) {
	if c.Want == 0 {
		out.status[c.Name] = "empty"
		b.Skipf("%s: no match in the fixture at this size", c.Name)
	}
	ctx := context.Background()
	durs := make([]time.Duration, 0, 1024)
	checked := false
	var last store.Result
	for b.Loop() {
		t0 := time.Now()
		if c.Facet != nil {
			got, err := e.facet(ctx, c)
			durs = append(durs, time.Since(t0))
			if errors.Is(err, store.ErrBadRequest) {
				out.status[c.Name] = "unsupported"
				b.Skipf("%s: unsupported by this engine: %v", c.Name, err)
			}
			if err != nil {
				b.Fatalf("%s: %v", c.Name, err)
			}
			if !slices.Equal(got, c.WantFacet) {
				b.Fatalf("%s: facet %v, want %v counted at generation", c.Name, got, c.WantFacet)
			}
			last = store.Result{Total: len(got)}
			continue
		}
		res, err := e.search(ctx, c)
		durs = append(durs, time.Since(t0))
		if err == nil {
			err = c.Verify(res, !checked)
		}
		if err != nil {
			b.Fatalf("%s: %v", c.Src, err)
		}
		checked = true
		last = res
	}
	p50, p99 := storetest.Percentiles(durs)
	out.p50[c.Name], out.p99[c.Name] = p50, p99
	out.status[c.Name] = ""
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(float64(last.Total), "total")
}

// printSummary writes the markdown tables (p99 and p50 per case) to stderr.
func printSummary(results []*outcome, cases []*queryCase) {
	var sb strings.Builder
	for _, p := range []string{"p99", "p50"} {
		fmt.Fprintf(&sb, "\n%s ms per query case:\n\n| engine | spans | ingest spans/s | CPU us/span | bytes/span |", p)
		for _, c := range cases {
			fmt.Fprintf(&sb, " %s |", c.Name)
		}
		sb.WriteString("\n|---|---:|---:|---:|---:|" + strings.Repeat("---:|", len(cases)) + "\n")
		for _, r := range results {
			if r.failed != "" {
				fmt.Fprintf(&sb, "| %s | %d | FAILED: %s |\n", r.name, r.spans, strings.ReplaceAll(r.failed, "\n", " "))
				continue
			}
			fmt.Fprintf(&sb, "| %s | %d | %.0f | %.1f | %.0f |", r.name, r.spans, r.spansPerSec, r.cpuPerSpan, r.bytesPerSpan)
			m := r.p99
			if p == "p50" {
				m = r.p50
			}
			for _, c := range cases {
				if s, ok := r.status[c.Name]; ok && s != "" {
					fmt.Fprintf(&sb, " %s |", s)
				} else if v, ok := m[c.Name]; ok {
					fmt.Fprintf(&sb, " %.2f |", v)
				} else {
					sb.WriteString(" - |")
				}
			}
			sb.WriteString("\n")
		}
	}
	fmt.Fprint(os.Stderr, "\nBenchmarkEngines summary"+sb.String())
}

// envInt reads a positive integer from the environment.
func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(strings.ReplaceAll(v, "_", ""))
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// cpuTime is the user plus system CPU time of the process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// du is the disk usage of the files under dir (allocated blocks, as du counts them).
func du(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += info.Size()
		}
		return nil
	})
	return total, err
}
