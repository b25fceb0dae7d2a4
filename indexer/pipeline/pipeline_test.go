package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/rollup"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// flaky wraps a store: while down is set, writes fail; while gate is non-nil, writes wait on it.
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
	return t
}

// TestConcurrentConsumeConverges sends the spans of many traces from concurrent clients, shuffled, split
// into small requests, with retried duplicates, through several shards, into the embedded store.
func TestConcurrentConsumeConverges(t *testing.T) {
	st := openStore(t)
	p := New(st, Config{Shards: 3, BatchSize: 50, BatchTimeout: 5 * time.Millisecond, Logger: quiet})
	base := time.Now().Add(-time.Minute).UnixMicro()
	var all []document.Span
	want := map[string]document.Trace{}
	for tr := range 40 {
		spans := makeSpans(tr, 1+tr%7, base+int64(tr)*1000)
		want[spans[0].TraceID] = wantTrace(spans)
		all = append(all, spans...)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	arrival := append(slices.Clone(all), all[:30]...)
	rng.Shuffle(len(arrival), func(i, j int) { arrival[i], arrival[j] = arrival[j], arrival[i] })
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			for i := c * 5; i < len(arrival); i += 20 {
				if err := p.Consume(context.Background(), arrival[i:min(i+5, len(arrival))]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
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
	if res.Total != len(all) {
		t.Fatalf("stored %d spans, want %d", res.Total, len(all))
	}
	if s := p.Stats(); s.Queued != 0 || s.Written != int64(len(arrival)) {
		t.Fatalf("stats %+v, want 0 queued and %d written", s, len(arrival))
	}
}

// TestLateSpanAfterEviction checks that a span arriving after its trace left the cache is merged with what the
// store already holds, through TraceSpans over the real store.
func TestLateSpanAfterEviction(t *testing.T) {
	st := openStore(t)
	p := New(st, Config{Shards: 1, BatchTimeout: time.Millisecond, Rollup: rollup.Config{MaxSpans: 1}, Logger: quiet})
	defer p.Close(context.Background())
	spans := makeSpans(1, 4, time.Now().UnixMicro())
	for _, s := range []document.Span{spans[2], spans[0]} {
		if err := p.Consume(context.Background(), []document.Span{s}); err != nil {
			t.Fatal(err)
		}
	}
	// Another trace pushes trace 1 out of the one-span cache, then its late spans and a duplicate arrive.
	if err := p.Consume(context.Background(), makeSpans(2, 1, time.Now().UnixMicro())); err != nil {
		t.Fatal(err)
	}
	if err := p.Consume(context.Background(), []document.Span{spans[3], spans[1], spans[0]}); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetTraces(context.Background(), []string{spans[0].TraceID})
	if err != nil || len(got) != 1 {
		t.Fatalf("GetTraces = %v, %v", got, err)
	}
	if want := wantTrace(spans); !reflect.DeepEqual(got[0], want) {
		t.Fatalf("got  %+v\nwant %+v", got[0], want)
	}
}

func TestStoreDownRefusesThenRecovers(t *testing.T) {
	f := &flaky{Store: openStore(t)}
	f.set(true, nil)
	p := New(f, Config{Shards: 1, BatchTimeout: time.Millisecond, RetryInitial: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, Logger: quiet})
	defer p.Close(context.Background())
	spans := makeSpans(1, 3, time.Now().UnixMicro())
	first := make(chan error, 1)
	go func() { first <- p.Consume(context.Background(), spans) }()

	// While the write is being retried, new spans are refused as "unavailable" with a Retry-After.
	var oe *OverloadError
	deadline := time.Now().Add(5 * time.Second)
	for {
		// Probes admitted before the first failure wait for the store; give up on them quickly.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		err := p.Consume(ctx, makeSpans(2, 1, 0))
		cancel()
		if errors.As(err, &oe) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Consume while the store is down = %v, want an OverloadError", err)
		}
		time.Sleep(time.Millisecond)
	}
	if !oe.Unavailable || oe.RetryAfter < time.Second {
		t.Fatalf("overload %+v: want Unavailable and RetryAfter >= 1s", oe)
	}
	select {
	case err := <-first:
		t.Fatalf("Consume returned %v while its spans were not stored", err)
	case <-time.After(20 * time.Millisecond):
	}
	f.set(false, nil)
	if err := <-first; err != nil {
		t.Fatalf("after recovery Consume = %v", err)
	}
	if got, _ := f.GetTraces(context.Background(), []string{spans[0].TraceID}); len(got) != 1 || got[0].SpanCount != 3 {
		t.Fatalf("stored trace %+v", got)
	}
	if err := p.Consume(context.Background(), makeSpans(2, 1, 1)); err != nil {
		t.Fatalf("after recovery new spans are refused: %v", err)
	}
}

func TestQueueFullRefuses(t *testing.T) {
	f := &flaky{Store: openStore(t)}
	gate := make(chan struct{})
	f.set(false, gate)
	p := New(f, Config{Shards: 1, QueueSpans: 5, BatchTimeout: time.Millisecond, Logger: quiet})
	defer p.Close(context.Background())
	held := make(chan error, 1)
	go func() { held <- p.Consume(context.Background(), makeSpans(1, 4, 1)) }()
	for p.Stats().Queued != 4 {
		time.Sleep(time.Millisecond)
	}
	var oe *OverloadError
	deadline := time.Now().Add(5 * time.Second)
	probe := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		return p.Consume(ctx, makeSpans(2, 2, 1))
	}
	for !errors.As(probe(), &oe) {
		if time.Now().After(deadline) {
			t.Fatal("a full queue did not refuse spans")
		}
		time.Sleep(time.Millisecond)
	}
	if oe.Unavailable {
		t.Fatalf("a full queue must not report the store unavailable: %+v", oe)
	}
	close(gate)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Refused == 0 {
		t.Fatalf("stats %+v: refused spans not counted", s)
	}
}

func TestCloseGivesUpAtDeadline(t *testing.T) {
	f := &flaky{Store: openStore(t)}
	f.set(true, nil)
	p := New(f, Config{Shards: 1, BatchTimeout: time.Millisecond, RetryInitial: time.Millisecond, Logger: quiet})
	waiting := make(chan error, 1)
	go func() { waiting <- p.Consume(context.Background(), makeSpans(1, 2, 1)) }()
	for f.attempts() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); err == nil {
		t.Fatal("Close with unwritten spans returned nil")
	}
	if err := <-waiting; !errors.Is(err, ErrStopped) {
		t.Fatalf("waiting Consume = %v, want ErrStopped", err)
	}
	if err := p.Consume(context.Background(), makeSpans(2, 1, 1)); !errors.Is(err, ErrStopped) {
		t.Fatalf("Consume after Close = %v, want ErrStopped", err)
	}
}

func TestAckQueued(t *testing.T) {
	f := &flaky{Store: openStore(t)}
	gate := make(chan struct{})
	f.set(false, gate)
	p := New(f, Config{Shards: 1, BatchTimeout: time.Millisecond, AckQueued: true, Logger: quiet})
	spans := makeSpans(1, 3, 1)
	if err := p.Consume(context.Background(), spans); err != nil {
		t.Fatalf("Consume = %v while the store is slow; want an acknowledgement on enqueue", err)
	}
	if s := p.Stats(); s.Written != 0 || s.Queued != 3 {
		t.Fatalf("stats %+v: want 3 queued, none written yet", s)
	}
	close(gate)
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.GetTraces(context.Background(), []string{spans[0].TraceID}); len(got) != 1 || got[0].SpanCount != 3 {
		t.Fatalf("after Close the store holds %+v", got)
	}
}
