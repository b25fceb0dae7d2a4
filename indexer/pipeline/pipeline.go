// Package pipeline moves span documents from the receivers to a store.Store, in stages shaped like an
// OpenTelemetry Collector pipeline: admission (a bounded queue measured in spans, which gives back-pressure),
// per-shard batching (by size or time), the trace rollup, and an exporter that writes each batch with retries
// and exponential backoff.
//
// Spans are sharded by trace id, so every span of a trace goes through the same shard, its Rollup, and a
// strictly sequential writer: a trace document is never overwritten by an older version of itself.
//
// By default Consume returns only once the spans are durably written (or with an error): a receiver
// acknowledges nothing that is not stored, so a crash loses no acknowledged span, and a client that retries
// after an error only produces duplicates, which the rollup and the id-keyed upserts absorb. Config.AckQueued
// trades that guarantee for latency, as the Collector's in-memory queue does.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/rollup"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// Consumer takes span documents. Consume returns nil once the spans are durably stored.
type Consumer interface {
	Consume(ctx context.Context, spans []document.Span) error
}

// ErrStopped is returned for spans offered after Close, or still unwritten when Close gave up.
var ErrStopped = errors.New("pipeline stopped")

// OverloadError refuses spans for now; the client should retry after RetryAfter.
type OverloadError struct {
	RetryAfter time.Duration
	// Unavailable is set when the store is failing (OTLP/HTTP 503); otherwise the queue is full (429).
	Unavailable bool
	Reason      string
}

// Error returns the reason.
func (e *OverloadError) Error() string { return e.Reason }

// Config sets up a Pipeline. Zero fields take the defaults shown.
type Config struct {
	Shards       int           // parallel batch writers; default GOMAXPROCS
	BatchSize    int           // spans per write; default 5000
	BatchTimeout time.Duration // longest a span waits for its batch to fill; default 200ms
	QueueSpans   int           // spans admitted and not yet written, over all shards; default 100,000
	RetryInitial time.Duration // first backoff after a failed write; default 100ms
	RetryMax     time.Duration // backoff ceiling; default 10s
	// AckQueued makes Consume return once the spans are queued instead of written: lower latency for clients,
	// at the price of losing queued spans if the process dies (a shutdown that cannot write them logs how
	// many). The default acknowledges only what is stored.
	AckQueued bool
	Rollup    rollup.Config
	Logger    *slog.Logger
}

func (c *Config) defaults() {
	if c.Shards <= 0 {
		c.Shards = runtime.GOMAXPROCS(0)
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 5000
	}
	if c.BatchTimeout <= 0 {
		c.BatchTimeout = 200 * time.Millisecond
	}
	if c.QueueSpans <= 0 {
		c.QueueSpans = 100_000
	}
	if c.RetryInitial <= 0 {
		c.RetryInitial = 100 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Stats are the pipeline's counters.
type Stats struct {
	Queued      int64 `json:"queued"`       // spans admitted, not yet written
	Written     int64 `json:"written"`      // spans written
	Batches     int64 `json:"batches"`      // batches written
	WriteErrors int64 `json:"write_errors"` // failed write attempts (each retried)
	Refused     int64 `json:"refused"`      // spans refused with an OverloadError
}

// Pipeline is a Consumer writing to a store. Create it with New; stop it with Close.
type Pipeline struct {
	cfg    Config
	store  store.Store
	shards []*shard

	mu     sync.RWMutex // held for reading while enqueueing, for writing by Close
	closed bool

	queued  atomic.Int64
	failing atomic.Int32 // shards whose last write failed
	backoff atomic.Int64 // current backoff of a failing shard, nanoseconds
	stats   struct{ written, batches, writeErrors, refused atomic.Int64 }

	runCtx context.Context // cancelled when Close gives up
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New starts a pipeline writing to st.
func New(st store.Store, cfg Config) *Pipeline {
	cfg.defaults()
	p := &Pipeline{cfg: cfg, store: st}
	p.runCtx, p.cancel = context.WithCancel(context.Background())
	loader := storeLoader{st}
	for range cfg.Shards {
		s := &shard{p: p, in: make(chan *item, 1024), rollup: rollup.New(cfg.Rollup, loader)}
		p.shards = append(p.shards, s)
		p.wg.Add(1)
		go s.run()
	}
	return p
}

// Stats returns a snapshot of the counters.
func (p *Pipeline) Stats() Stats {
	return Stats{
		Queued: p.queued.Load(), Written: p.stats.written.Load(), Batches: p.stats.batches.Load(),
		WriteErrors: p.stats.writeErrors.Load(), Refused: p.stats.refused.Load(),
	}
}

// item is one request's spans for one shard; done receives the outcome once.
type item struct {
	spans []document.Span
	done  chan error
}

// Consume admits spans, waits until they are written and returns nil, or returns an *OverloadError without
// taking them, or the error that prevented storing them. If ctx ends first, Consume returns ctx.Err() and
// the spans are still written.
func (p *Pipeline) Consume(ctx context.Context, spans []document.Span) error {
	if len(spans) == 0 {
		return nil
	}
	if err := p.admit(len(spans)); err != nil {
		p.stats.refused.Add(int64(len(spans)))
		return err
	}
	items, err := p.enqueue(spans)
	if err != nil {
		p.queued.Add(-int64(len(spans)))
		return err
	}
	if p.cfg.AckQueued {
		return nil
	}
	var first error
	for _, it := range items {
		select {
		case err := <-it.done:
			if first == nil {
				first = err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return first
}

// admit reserves room for n spans, all or nothing. A request larger than the whole queue is admitted only
// when the queue is empty, so that it can never starve.
func (p *Pipeline) admit(n int) error {
	if p.failing.Load() > 0 {
		return &OverloadError{RetryAfter: p.retryAfter(), Unavailable: true, Reason: "store unavailable: writes are failing and being retried"}
	}
	for {
		q := p.queued.Load()
		if q > 0 && q+int64(n) > int64(p.cfg.QueueSpans) {
			return &OverloadError{RetryAfter: p.retryAfter(), Reason: fmt.Sprintf("ingest queue full (%d spans waiting)", q)}
		}
		if p.queued.CompareAndSwap(q, q+int64(n)) {
			return nil
		}
	}
}

// retryAfter is the delay suggested to refused clients: the current write backoff, at least one batch timeout,
// rounded up to whole seconds by the receivers.
func (p *Pipeline) retryAfter() time.Duration {
	return max(time.Duration(p.backoff.Load()), p.cfg.BatchTimeout, time.Second)
}

func (p *Pipeline) enqueue(spans []document.Span) ([]*item, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return nil, ErrStopped
	}
	parts := make([][]document.Span, len(p.shards))
	if len(p.shards) == 1 {
		parts[0] = spans
	} else {
		for i := range spans {
			k := shardOf(spans[i].TraceID, len(p.shards))
			parts[k] = append(parts[k], spans[i])
		}
	}
	var items []*item
	for k, part := range parts {
		if len(part) == 0 {
			continue
		}
		it := &item{spans: part, done: make(chan error, 1)}
		p.shards[k].in <- it
		items = append(items, it)
	}
	return items, nil
}

func shardOf(traceID string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(traceID))
	return int(h.Sum32() % uint32(n))
}

// Close stops admitting spans, writes what is queued and returns. If ctx ends first, retries are abandoned,
// the waiting Consume calls get ErrStopped, and Close reports how many spans were not stored.
func (p *Pipeline) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		for _, s := range p.shards {
			close(s.in)
		}
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		p.cancel()
		return nil
	case <-ctx.Done():
		lost := p.queued.Load()
		p.cancel()
		<-done
		if p.cfg.AckQueued {
			return fmt.Errorf("pipeline closed before writing %d acknowledged spans; they are lost: %w", lost, ctx.Err())
		}
		return fmt.Errorf("pipeline closed before writing %d queued spans (their senders were told to retry): %w", lost, ctx.Err())
	}
}

// shard batches, rolls up and writes the spans of its part of the trace id space, one batch at a time.
type shard struct {
	p      *Pipeline
	in     chan *item
	rollup *rollup.Rollup
}

func (s *shard) run() {
	defer s.p.wg.Done()
	for {
		batch, open := s.collect()
		if len(batch) > 0 {
			s.flush(batch)
		}
		if !open {
			return
		}
	}
}

// collect waits for a first item, then gathers items until the batch is full, the batch timeout passes, or the
// input closes (open is then false).
func (s *shard) collect() (batch []*item, open bool) {
	first, ok := <-s.in
	if !ok {
		return nil, false
	}
	batch = []*item{first}
	n := len(first.spans)
	timer := time.NewTimer(s.p.cfg.BatchTimeout)
	defer timer.Stop()
	for n < s.p.cfg.BatchSize {
		select {
		case it, ok := <-s.in:
			if !ok {
				return batch, false
			}
			batch = append(batch, it)
			n += len(it.spans)
		case <-timer.C:
			return batch, true
		}
	}
	return batch, true
}

// flush writes one batch, retrying with exponential backoff until it is stored, a permanent error occurs, or
// the pipeline gives up at Close.
func (s *shard) flush(batch []*item) {
	p := s.p
	var spans []document.Span
	if len(batch) == 1 {
		spans = batch[0].spans
	} else {
		for _, it := range batch {
			spans = append(spans, it.spans...)
		}
	}
	err := s.write(spans)
	for _, it := range batch {
		it.done <- err
	}
	p.queued.Add(-int64(len(spans)))
}

func (s *shard) write(spans []document.Span) error {
	p := s.p
	backoff := p.cfg.RetryInitial
	failing := false
	defer func() {
		if failing && p.failing.Add(-1) == 0 {
			p.backoff.Store(0)
		}
	}()
	for {
		err := s.attempt(spans)
		if err == nil {
			p.stats.written.Add(int64(len(spans)))
			p.stats.batches.Add(1)
			if failing {
				p.cfg.Logger.Info("store writes recovered", "spans", len(spans))
			}
			return nil
		}
		p.stats.writeErrors.Add(1)
		if errors.Is(err, store.ErrBadRequest) {
			p.cfg.Logger.Error("store refused a batch; not retrying", "spans", len(spans), "err", err)
			return err
		}
		if !failing {
			failing = true
			p.failing.Add(1)
		}
		p.backoff.Store(int64(backoff))
		p.cfg.Logger.Warn("store write failed; retrying", "spans", len(spans), "retry_in", backoff, "err", err)
		select {
		case <-time.After(backoff):
		case <-p.runCtx.Done():
			return fmt.Errorf("%w: %w", ErrStopped, err)
		}
		backoff = min(2*backoff, p.cfg.RetryMax)
	}
}

// attempt rolls the spans up and writes spans and trace documents together. Rolling up again on a retry is
// harmless: the rollup keys spans by id.
func (s *shard) attempt(spans []document.Span) error {
	ctx := s.p.runCtx
	traces, err := s.rollup.Apply(ctx, spans, time.Now())
	if err != nil {
		return err
	}
	return s.p.store.Write(ctx, spans, traces)
}
