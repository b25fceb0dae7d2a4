package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshtrace/meshtrace/indexer/api"
	"github.com/meshtrace/meshtrace/testenv/indexerproc"
	"github.com/meshtrace/meshtrace/testenv/meilisearch"
)

// load exports traces of 5 spans, 10 traces a request, with real OTel SDK OTLP/HTTP exporters (retries off,
// so every failure is seen) and remembers which traces were acknowledged.
type load struct {
	mu      sync.Mutex
	acked   map[string]int // trace id -> spans acknowledged
	refused map[string]int // error text -> count
	seq     uint64
}

func newLoad() *load { return &load{acked: map[string]int{}, refused: map[string]int{}} }

// request builds one export of 10 whole traces.
func (l *load) request() (tracetest.SpanStubs, []string) {
	l.mu.Lock()
	l.seq++
	seq := l.seq
	l.mu.Unlock()
	rng := rand.New(rand.NewPCG(seq, 7))
	res := resource.NewSchemaless(attribute.String("service.name", "checkout"), attribute.String("k8s.pod.name", "checkout-7d9f"))
	now := time.Now()
	var stubs tracetest.SpanStubs
	var ids []string
	for range 10 {
		var tid trace.TraceID
		for i := range tid {
			tid[i] = byte(rng.Uint32())
		}
		ids = append(ids, tid.String())
		var root trace.SpanID
		for i := range 5 {
			var sid trace.SpanID
			for j := range sid {
				sid[j] = byte(rng.Uint32())
			}
			sid[0] |= 1
			st := tracetest.SpanStub{Name: fmt.Sprintf("op-%d", i), Resource: res, SpanKind: trace.SpanKindServer,
				SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}),
				StartTime:   now.Add(time.Duration(i) * time.Millisecond), EndTime: now.Add(time.Duration(10-i) * time.Millisecond),
				Attributes: []attribute.KeyValue{attribute.String("customer_id", fmt.Sprint(rng.IntN(1000))),
					attribute.String("http.request.method", "POST"), attribute.Int("http.response.status_code", 200)}}
			if i == 0 {
				root = sid
			} else {
				st.Parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: root})
			}
			stubs = append(stubs, st)
		}
	}
	return stubs, ids
}

// run sends from n exporters to the OTLP/HTTP endpoint until ctx ends, pausing pause between requests.
func (l *load) run(ctx context.Context, t *testing.T, endpoint string, n int, pause time.Duration) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint),
				otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}), otlptracehttp.WithTimeout(5*time.Second))
			if err != nil {
				t.Error(err)
				return
			}
			defer exp.Shutdown(context.Background())
			for ctx.Err() == nil {
				stubs, ids := l.request()
				err := exp.ExportSpans(ctx, stubs.Snapshots())
				l.mu.Lock()
				if err == nil {
					for _, id := range ids {
						l.acked[id] = 5
					}
				} else if ctx.Err() == nil {
					msg := err.Error()
					if i := strings.Index(msg, "127.0.0.1"); i >= 0 {
						msg = msg[:i] // connection errors name a port
					}
					l.refused[msg]++
				}
				l.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		})
	}
	wg.Wait()
}

// verify checks acknowledged traces: that the index holds at least as many spans as were acknowledged, and
// that each of the first sample traces (all when sample is 0) is searchable with all its spans and a correct
// trace document.
func (l *load) verify(t *testing.T, server string, sample int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.acked) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	var total api.SearchResponse
	if err := json.Unmarshal([]byte(get(t, server+"/api/v1/search?target=spans&limit=1&q=since%3D24h")), &total); err != nil {
		t.Fatal(err)
	}
	if total.Total < 5*len(l.acked) {
		t.Errorf("the index holds %d spans, %d were acknowledged", total.Total, 5*len(l.acked)) // which: below
	}
	missing, checked := 0, 0
	for id, n := range l.acked {
		if sample > 0 && checked == sample {
			break
		}
		checked++
		resp, err := http.Get(server + "/api/v1/traces/" + id)
		if err != nil {
			t.Fatal(err)
		}
		var tr api.TraceResponse
		err = json.NewDecoder(resp.Body).Decode(&tr)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil || len(tr.Spans) != n || tr.Trace.SpanCount != n {
			missing++
			if missing <= 3 {
				t.Errorf("acknowledged trace %s: status %d, %d spans, span_count %d, want %d (%v)", id, resp.StatusCode,
					len(tr.Spans), tr.Trace.SpanCount, n, err)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged traces checked lost or wrong", missing, checked)
	}
	t.Logf("%d traces (%d spans) acknowledged, %d spans in the index, %d traces checked one by one; refusals: %v",
		len(l.acked), 5*len(l.acked), total.Total, checked, l.refused)
}

// startProcess runs `indexer serve` from bin in dir (data under dir/data, log in dir/indexer.log).
func startProcess(t *testing.T, bin, dir string, args ...string) *indexerproc.Process {
	t.Helper()
	p, err := indexerproc.Start(context.Background(), bin, dir, append([]string{"--batch-timeout", "20ms"}, args...), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill() })
	return p
}

// waitCaughtUp waits until the index lag is zero and the WAL holds no record to replay.
func waitCaughtUp(t *testing.T, server string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		m := get(t, server+"/metrics")
		if strings.Contains(m, "\nmeshtrace_index_oldest_unindexed_seconds 0\n") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("index still lagging after %v", timeout)
}

// TestKill9LosesNothingAcknowledged kills `indexer serve` with SIGKILL at random moments under load from real
// OTel SDK exporters (during appends, syncs, store writes and segment deletions, with small segments so that
// deletions are frequent), restarts it on the same data directory each time, and finally checks that every
// acknowledged trace is searchable with exact trace documents.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	bin := indexerproc.Build(t)
	l := newLoad()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	const crashes = 6
	for i := range crashes + 1 {
		p := startProcess(t, bin, dir, "--wal-segment-bytes", "65536")
		t.Logf("start %d: %d traces acknowledged so far", i, len(l.acked))
		if i == crashes {
			waitCaughtUp(t, p.APIURL, 60*time.Second)
			l.verify(t, p.APIURL, 0)
			if err := p.Stop(time.Minute); err != nil {
				t.Fatalf("clean stop after the crashes: %v", err)
			}
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { l.run(ctx, t, p.OTLPURL, 4, time.Millisecond); close(done) }()
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		p.Kill()
		cancel()
		<-done
	}
}

// TestMeilisearchOutageIsAbsorbed freezes a real Meilisearch (SIGSTOP) under steady load: the indexer keeps
// acknowledging from its write-ahead log (no 429 or 503 while the log has room), and once Meilisearch is back
// the lag drains and every acknowledged trace is searchable. MESHTRACE_TEST_OUTAGE (default 20s) and
// MESHTRACE_TEST_OUTAGE_EXPORTERS (default 2, about 500 spans/s each) make the outage longer or the load
// heavier, e.g. 10m and 4 for the 10-minute outage at 2,000 spans/s.
func TestMeilisearchOutageIsAbsorbed(t *testing.T) {
	outage, exporters := 20*time.Second, 2
	if v := os.Getenv("MESHTRACE_TEST_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("MESHTRACE_TEST_OUTAGE: %v", err)
		}
		outage = d
	}
	if v := os.Getenv("MESHTRACE_TEST_OUTAGE_EXPORTERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("MESHTRACE_TEST_OUTAGE_EXPORTERS: %v", err)
		}
		exporters = n
	}
	ms := meilisearch.StartTest(t, meilisearch.Config{})
	p := startProcess(t, indexerproc.Build(t), t.TempDir(), "--meili-url", ms.URL, "--meili-key", ms.Key)
	l := newLoad()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	// About 500 spans/s offered per exporter: 50 spans a request, 10 requests a second.
	go func() { l.run(ctx, t, p.OTLPURL, exporters, 100*time.Millisecond); close(done) }()
	time.Sleep(2 * time.Second)
	if err := ms.Freeze(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(outage)
	// The API cannot search a frozen Meilisearch, but metrics still answer.
	if m := get(t, p.APIURL+"/metrics"); strings.Contains(m, "\nmeshtrace_index_oldest_unindexed_seconds 0\n") {
		t.Fatalf("no index lag after a %v outage:\n%s", outage, m)
	}
	if err := ms.Thaw(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	cancel()
	<-done
	l.mu.Lock()
	refused := fmt.Sprint(l.refused)
	l.mu.Unlock()
	if refused != "map[]" {
		t.Fatalf("clients were refused during the outage: %s", refused)
	}
	waitCaughtUp(t, p.APIURL, 120*time.Second+4*outage) // the store drains the backlog at its own speed
	l.verify(t, p.APIURL, 300)
}
