package pipeline

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/record"
	"github.com/meshtrace/meshtrace/indexer/rollup"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
	"github.com/meshtrace/meshtrace/indexer/wal"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openStore(t testing.TB) store.Store {
	t.Helper()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func openWAL(t testing.TB, dir string) *wal.WAL {
	t.Helper()
	w, err := wal.Open(wal.Config{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func start(t testing.TB, st store.Store, w *wal.WAL, cfg Config) *Pipeline {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	p, err := New(st, w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A test that failed with its store down must not wait for it forever.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p
}

// flaky wraps a store: while down is set, writes fail; while gate is non-nil, writes wait on it; spans named
// "poison" are refused as invalid.
type flaky struct {
	store.Store
	mu     sync.Mutex
	down   bool
	gate   chan struct{}
	writes int
}

func (f *flaky) Write(ctx context.Context, spans []document.Span, traces []document.Trace) error {
	f.mu.Lock()
	down, gate := f.down, f.gate
	f.writes++
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if down {
		return errors.New("connection refused")
	}
	for _, s := range spans {
		if s.Name == "poison" {
			return fmt.Errorf("%w: span %s has a field the store cannot take", store.ErrBadRequest, s.SpanID)
		}
	}
	return f.Store.Write(ctx, spans, traces)
}

func (f *flaky) attempts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

func (f *flaky) set(down bool, gate chan struct{}) {
	f.mu.Lock()
	f.down, f.gate = down, gate
	f.mu.Unlock()
}

func makeSpans(trace, n int, base int64) []document.Span {
	traceID := fmt.Sprintf("%032x", 0x1000+trace)
	var out []document.Span
	for i := range n {
		s := document.Span{
			TraceID: traceID, SpanID: fmt.Sprintf("%016x", trace*1000+i+1), Name: fmt.Sprintf("op%d", i),
			Service: fmt.Sprintf("svc-%d", i%3), Kind: "server", StatusCode: "unset",
			Start: base + int64(i)*10, End: base + int64(i)*10 + 5, Duration: 5,
			Attr: map[string]any{"customer_id": fmt.Sprint(trace)},
		}
		if i > 0 {
			s.ParentSpanID = fmt.Sprintf("%016x", trace*1000+1)
		}
		s.ID = s.TraceID + "-" + s.SpanID
		out = append(out, s)
	}
	return out
}

// encode is the OTLP request a receiver would have logged for spans (scalar attributes, one resource per span).
func encode(t testing.TB, spans []document.Span) []byte {
	t.Helper()
	req := &coltracepb.ExportTraceServiceRequest{}
	for _, s := range spans {
		tid, _ := hex.DecodeString(s.TraceID)
		sid, _ := hex.DecodeString(s.SpanID)
		pid, _ := hex.DecodeString(s.ParentSpanID)
		sp := &tracepb.Span{TraceId: tid, SpanId: sid, ParentSpanId: pid, Name: s.Name, Kind: tracepb.Span_SPAN_KIND_SERVER,
			StartTimeUnixNano: uint64(s.Start) * 1000, EndTimeUnixNano: uint64(s.End) * 1000}
		for k, v := range s.Attr {
			sp.Attributes = append(sp.Attributes, &commonpb.KeyValue{Key: k, Value: anyValue(t, v)})
		}
		req.ResourceSpans = append(req.ResourceSpans, &tracepb.ResourceSpans{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
				Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s.Service}}}}},
			ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{sp}}},
		})
	}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// anyValue is the OTLP value of a document attribute value.
func anyValue(t testing.TB, v any) *commonpb.AnyValue {
	switch v := v.(type) {
	case string:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}
	case bool:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v}}
	case int:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(v)}}
	case int64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}
	case float64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: v}}
	}
	t.Fatalf("attribute value %v (%T) has no OTLP form here", v, v)
	return nil
}

func appendSpans(t testing.TB, w *wal.WAL, spans []document.Span) {
	t.Helper()
	if err := w.Append(context.Background(), encode(t, spans)); err != nil {
		t.Fatal(err)
	}
}

// waitCommitted waits until everything durable in w is committed.
func waitCommitted(t testing.TB, w *wal.WAL) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for w.Committed() != w.Stats().Durable {
		if time.Now().After(deadline) {
			t.Fatalf("not committed after 30s: committed %v, durable %v", w.Committed(), w.Stats().Durable)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func wantTrace(spans []document.Span) document.Trace {
	t := document.Trace{ID: spans[0].TraceID, TraceID: spans[0].TraceID, RootService: spans[0].Service, RootName: spans[0].Name,
		Start: spans[0].Start, End: spans[len(spans)-1].End, SpanCount: len(spans),
		Keys: map[string][]string{"customer_id": {spans[0].Attr["customer_id"].(string)}}}
	t.Duration = t.End - t.Start
	for _, s := range spans {
		if !slices.Contains(t.Services, s.Service) {
			t.Services = append(t.Services, s.Service)
		}
	}
	slices.Sort(t.Services)
	byID := map[string]document.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	for _, s := range spans {
		if p, ok := byID[s.ParentSpanID]; ok && p.Service != s.Service && !slices.Contains(t.Edges, p.Service+">"+s.Service) {
			t.Edges = append(t.Edges, p.Service+">"+s.Service)
		}
	}
	slices.Sort(t.Edges)
	return t
}

// checkStored compares the stored trace documents with want and counts the stored spans.
func checkStored(t *testing.T, st store.Store, want map[string]document.Trace, spans int) {
	t.Helper()
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	got, err := st.GetTraces(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("stored %d traces, want %d", len(got), len(want))
	}
	for _, g := range got {
		if !reflect.DeepEqual(g, want[g.ID]) {
			t.Errorf("trace %s:\n got %+v\nwant %+v", g.ID, g, want[g.ID])
		}
	}
	res, err := st.Search(context.Background(), store.Request{Index: store.Spans, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != spans {
		t.Fatalf("stored %d spans, want %d", res.Total, spans)
	}
}

// traffic is the spans of 40 traces, shuffled into records of up to 5 spans, with 30 duplicated spans.
func traffic() (records [][]document.Span, want map[string]document.Trace, distinct int) {
	base := time.Now().Add(-time.Minute).UnixMicro()
	var all []document.Span
	want = map[string]document.Trace{}
	for tr := range 40 {
		spans := makeSpans(tr, 1+tr%7, base+int64(tr)*1000)
		want[spans[0].TraceID] = wantTrace(spans)
		all = append(all, spans...)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	arrival := append(slices.Clone(all), all[:30]...)
	rng.Shuffle(len(arrival), func(i, j int) { arrival[i], arrival[j] = arrival[j], arrival[i] })
	for i := 0; i < len(arrival); i += 5 {
		records = append(records, arrival[i:min(i+5, len(arrival))])
	}
	return records, want, len(all)
}

// TestConcurrentAppendsConverge logs the spans of many traces from concurrent clients, shuffled, split into
// small records, with duplicates, and checks the trace documents written through several shards.
func TestConcurrentAppendsConverge(t *testing.T) {
	st := openStore(t)
	w := openWAL(t, t.TempDir())
	p := start(t, st, w, Config{Shards: 3, BatchSize: 50, BatchTimeout: 5 * time.Millisecond})
	records, want, distinct := traffic()
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			for i := c; i < len(records); i += 4 {
				appendSpans(t, w, records[i])
			}
		})
	}
	wg.Wait()
	waitCommitted(t, w)
	checkStored(t, st, want, distinct)
	if s := p.Stats(); s.Lag != 0 || s.Written < int64(distinct) {
		t.Fatalf("stats %+v: want no lag and at least %d written", s, distinct)
	}
}

// TestReplayConverges replays the whole log into a store that already holds it (a crash after the store write
// and before the commit): the trace documents must not count a span twice.
func TestReplayConverges(t *testing.T) {
	st := openStore(t)
	dir := t.TempDir()
	w := openWAL(t, dir)
	p := start(t, st, w, Config{Shards: 2, BatchSize: 20, BatchTimeout: time.Millisecond})
	records, want, distinct := traffic()
	for _, r := range records {
		appendSpans(t, w, r)
	}
	waitCommitted(t, w)
	p.Close(context.Background())
	w.Close()
	if err := os.Remove(filepath.Join(dir, "checkpoint")); err != nil {
		t.Fatal(err)
	}
	w2 := openWAL(t, dir)
	start(t, st, w2, Config{Shards: 2, BatchSize: 20, BatchTimeout: time.Millisecond})
	waitCommitted(t, w2)
	checkStored(t, st, want, distinct)
}

// TestLateSpanAfterEviction checks that a span arriving after its trace left the cache is merged with what the
// store already holds, through TraceSpans over the real store.
func TestLateSpanAfterEviction(t *testing.T) {
	st := openStore(t)
	w := openWAL(t, t.TempDir())
	start(t, st, w, Config{Shards: 1, BatchSize: 1, BatchTimeout: time.Millisecond, Rollup: rollup.Config{MaxSpans: 1}})
	spans := makeSpans(1, 4, time.Now().UnixMicro())
	appendSpans(t, w, spans[2:3])
	appendSpans(t, w, spans[0:1])
	// Another trace pushes trace 1 out of the one-span cache, then its late spans and a duplicate arrive.
	appendSpans(t, w, makeSpans(2, 1, time.Now().UnixMicro()))
	appendSpans(t, w, []document.Span{spans[3], spans[1], spans[0]})
	waitCommitted(t, w)
	got, err := st.GetTraces(context.Background(), []string{spans[0].TraceID})
	if err != nil || len(got) != 1 {
		t.Fatalf("GetTraces = %v, %v", got, err)
	}
	if want := wantTrace(spans); !reflect.DeepEqual(got[0], want) {
		t.Fatalf("got  %+v\nwant %+v", got[0], want)
	}
}

// TestStoreOutageIsRetriedUntilItRecovers keeps the store down while records are logged: nothing is committed,
// the lag grows, and everything is written once the store is back.
func TestStoreOutageIsRetriedUntilItRecovers(t *testing.T) {
	f := &flaky{Store: openStore(t)}
	f.set(true, nil)
	w := openWAL(t, t.TempDir())
	p := start(t, f, w, Config{Shards: 1, BatchTimeout: time.Millisecond, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond})
	records, want, distinct := traffic()
	for _, r := range records {
		appendSpans(t, w, r)
	}
	for f.attempts() < 10 {
		time.Sleep(time.Millisecond)
	}
	if w.Committed() == w.Stats().Durable {
		t.Fatal("committed while the store was down")
	}
	if lag := p.Lag(); lag <= 0 {
		t.Fatalf("lag %v while the store is down", lag)
	}
	f.set(false, nil)
	waitCommitted(t, w)
	checkStored(t, f, want, distinct)
	if p.Stats().WriteErrors < 10 {
		t.Fatalf("write errors %d", p.Stats().WriteErrors)
	}
}

// TestTenantsOfOneTrace sends one trace id from two tenants and the empty tenant, each part in two records
// with the rollup cache too small to keep any: every part is stamped with its record's tenant and tenant id,
// and rolls up into a trace document of its own, merged through the store with its own earlier spans only.
func TestTenantsOfOneTrace(t *testing.T) {
	st := openStore(t)
	w := openWAL(t, t.TempDir())
	start(t, st, w, Config{Shards: 1, BatchSize: 1, BatchTimeout: time.Millisecond, Rollup: rollup.Config{MaxSpans: 1}})
	spans := makeSpans(1, 6, time.Now().UnixMicro())
	parts := map[string][]document.Span{"team-a": spans[0:2], "team-b": spans[2:5], "": spans[5:6]}
	send := func(tn string, spans []document.Span) {
		if err := w.Append(context.Background(), record.Header(tn), encode(t, spans)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tn := range []string{"team-a", "team-b", ""} {
		send(tn, parts[tn][:1])
	}
	appendSpans(t, w, makeSpans(2, 1, time.Now().UnixMicro())) // evicts every part of trace 1
	for _, tn := range []string{"team-a", "team-b"} {
		send(tn, parts[tn][1:])
	}
	waitCommitted(t, w)
	traceID := spans[0].TraceID
	for tn, part := range parts {
		id := document.TraceDocID(tn, traceID)
		got, err := st.GetTraces(context.Background(), []string{id})
		if err != nil || len(got) != 1 {
			t.Fatalf("tenant %q: GetTraces(%s) = %v, %v", tn, id, got, err)
		}
		if got[0].Tenant != tn || got[0].TraceID != traceID || got[0].SpanCount != len(part) {
			t.Errorf("tenant %q: trace document %+v, want %d spans of its own", tn, got[0], len(part))
		}
		stored, err := store.TraceSpans(context.Background(), st, traceID, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, sp := range stored {
			if sp.ID != document.SpanDocID(sp.Tenant, sp.TraceID, sp.SpanID) {
				t.Errorf("span %s of tenant %q: not its tenant id", sp.ID, sp.Tenant)
			}
		}
	}
}

// TestLagCountsTheUnreadBacklog starts a pipeline on a log that already holds records (a restart): the lag is
// their age from the start, before the reader has read anything, and zero once the store holds them.
func TestLagCountsTheUnreadBacklog(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, dir)
	records, want, distinct := traffic()
	for _, r := range records {
		appendSpans(t, w, r)
	}
	f := &flaky{Store: openStore(t)}
	f.set(true, nil)
	p := start(t, f, w, Config{Shards: 1, BatchTimeout: time.Millisecond, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond})
	if lag := p.Lag(); lag <= 0 {
		t.Fatalf("lag %v with %d records not yet in the store", lag, len(records))
	}
	f.set(false, nil)
	waitCommitted(t, w)
	checkStored(t, f, want, distinct)
	if lag := p.Lag(); lag != 0 {
		t.Fatalf("lag %v once everything is committed", lag)
	}
}

// TestPoisonSpansAreIsolated has the store refuse two spans as invalid: they go to the dead-letter file with
// the store's reason, and every other span is written.
func TestPoisonSpansAreIsolated(t *testing.T) {
	f := &flaky{Store: openStore(t)}
	w := openWAL(t, t.TempDir())
	dead := filepath.Join(t.TempDir(), "dead-letter.ndjson")
	p := start(t, f, w, Config{Shards: 2, BatchSize: 100, BatchTimeout: 5 * time.Millisecond, DeadLetter: dead})
	var all []document.Span
	for tr := range 25 {
		all = append(all, makeSpans(tr, 4, time.Now().UnixMicro())...)
	}
	all[17].Name, all[60].Name = "poison", "poison"
	for i := 0; i < len(all); i += 10 {
		appendSpans(t, w, all[i:i+10])
	}
	waitCommitted(t, w)
	res, err := f.Search(context.Background(), store.Request{Index: store.Spans, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != len(all)-2 {
		t.Fatalf("stored %d spans, want %d", res.Total, len(all)-2)
	}
	if s := p.Stats(); s.DeadLettered != 2 {
		t.Fatalf("dead-lettered %d", s.DeadLettered)
	}
	p.Close(context.Background())
	fh, err := os.Open(dead)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var ids []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var e deadEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(e.Reason, "cannot take") || e.Span == nil {
			t.Fatalf("dead-letter entry %s", sc.Bytes())
		}
		ids = append(ids, e.Span.SpanID)
	}
	slices.Sort(ids)
	if want := []string{all[17].SpanID, all[60].SpanID}; !slices.Equal(ids, want) {
		t.Fatalf("dead-lettered %v, want %v", ids, want)
	}
}

// TestCloseGivesUpAndKeepsTheLog closes while the store hangs: Close returns at its deadline and nothing is
// committed, so a restart writes it all.
func TestCloseGivesUpAndKeepsTheLog(t *testing.T) {
	f := &flaky{Store: openStore(t)}
	f.set(false, make(chan struct{})) // writes hang
	dir := t.TempDir()
	w := openWAL(t, dir)
	p := start(t, f, w, Config{Shards: 1, BatchTimeout: time.Millisecond})
	records, want, distinct := traffic()
	for _, r := range records {
		appendSpans(t, w, r)
	}
	for f.attempts() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	began := time.Now()
	p.Close(ctx)
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("Close took %v past its 50ms deadline", d)
	}
	if w.Committed() == w.Stats().Durable {
		t.Fatal("committed what the store never took")
	}
	w.Close()
	f.set(false, nil)
	w2 := openWAL(t, dir)
	start(t, f, w2, Config{Shards: 1, BatchTimeout: time.Millisecond})
	waitCommitted(t, w2)
	checkStored(t, f, want, distinct)
}

// TestShardOfIsFNV1a pins the shard function to FNV-1a, as hash/fnv computes it.
func TestShardOfIsFNV1a(t *testing.T) {
	for _, id := range []string{"", "0", "4bf92f3577b34da6a3ce929d0e0e4736", "ffffffffffffffffffffffffffffffff"} {
		h := fnv.New32a()
		h.Write([]byte(id))
		for _, n := range []int{1, 2, 3, 7} {
			if got, want := shardOf(id, n), int(h.Sum32()%uint32(n)); got != want {
				t.Errorf("shardOf(%q, %d) = %d, want %d", id, n, got, want)
			}
		}
	}
}
