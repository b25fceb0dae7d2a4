// Package pipeline moves spans from the write-ahead log into a store.Store, in stages shaped like an
// OpenTelemetry Collector pipeline: a reader takes records from the log in order and decodes them into span
// documents, batches them (by size, or by time when the log is caught up), and sends each batch's spans to
// shards by trace id; each shard rolls its spans up into trace documents and writes both, retrying with
// exponential backoff for as long as the store fails; a committer commits the log position of each batch once
// all its shards have written it, which lets the log delete what the store holds.
//
// Spans are sharded by trace id, so every span of a trace goes through the same shard, its Rollup, and a
// strictly sequential writer: a trace document is never overwritten by an older version of itself.
//
// Records of the log are OTLP ExportTraceServiceRequest protobuf messages, already validated by a receiver.
// After a crash the log hands out again what was not committed; the rollup and the id-keyed upserts absorb
// the duplicates. A batch the store refuses as invalid (store.ErrBadRequest: a poison document) is split until
// the offending spans are isolated; those go to the dead-letter file with the store's reason, the rest is
// written, so one bad span never stalls ingest.
package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/fieldcap"
	"github.com/meshtrace/meshtrace/indexer/flatten"
	"github.com/meshtrace/meshtrace/indexer/internal/defaults"
	"github.com/meshtrace/meshtrace/indexer/record"
	"github.com/meshtrace/meshtrace/indexer/rollup"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/wal"
)

// Config sets up a Pipeline. DefaultConfig gives the defaults; New takes them for zero fields.
type Config struct {
	Shards       int           // parallel batch writers, spans routed by trace id; 0: GOMAXPROCS
	BatchSize    int           // spans per store write (the store packages say what suits them)
	BatchTimeout time.Duration // longest a caught-up reader waits for a batch to fill
	RetryInitial time.Duration // first backoff after a failed write
	RetryMax     time.Duration // backoff ceiling; writes are retried for as long as the store fails
	// DeadLetter is the file spans the store refuses are appended to (NDJSON), up to DeadLetterMaxBytes; past
	// that they are only counted and logged. Empty: nothing is kept.
	DeadLetter         string
	DeadLetterMaxBytes int64
	// Rollup configures the shards' rollups; its MaxSpans is the total over all shards (each gets its share).
	Rollup rollup.Config
	// Fields caps the distinct attribute keys of the span index (see package fieldcap); nil: no cap.
	Fields *fieldcap.Limiter
	Logger *slog.Logger
	// Registerer receives the pipeline's metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the pipeline's defaults.
func DefaultConfig() Config {
	return Config{
		BatchSize:          5000,
		BatchTimeout:       200 * time.Millisecond,
		RetryInitial:       100 * time.Millisecond,
		RetryMax:           10 * time.Second,
		DeadLetterMaxBytes: 256 << 20,
		Rollup:             rollup.DefaultConfig(),
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Shards <= 0 {
		c.Shards = runtime.GOMAXPROCS(0)
	}
	defaults.Set(&c.BatchSize, d.BatchSize)
	defaults.Set(&c.BatchTimeout, d.BatchTimeout)
	defaults.Set(&c.RetryInitial, d.RetryInitial)
	defaults.Set(&c.RetryMax, d.RetryMax)
	defaults.Set(&c.DeadLetterMaxBytes, d.DeadLetterMaxBytes)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Stats are the pipeline's counters.
type Stats struct {
	Written      int64         `json:"written"`       // spans written
	Batches      int64         `json:"batches"`       // batches committed
	WriteErrors  int64         `json:"write_errors"`  // failed write attempts (each retried or split)
	DeadLettered int64         `json:"dead_lettered"` // spans the store refused, kept aside
	Lag          time.Duration `json:"lag_ns"`        // age of the oldest acknowledged span not yet searchable
}

// Pipeline reads a WAL into a store. Create it with New; stop it with Close.
type Pipeline struct {
	cfg     Config
	store   store.Store
	wal     *wal.WAL
	shards  []*shard
	batches chan *batch // dispatched, in log order, to the committer
	dead    *deadLetter
	m       *metrics

	readCtx    context.Context // cancelled by Close: stop reading new records
	stopRead   context.CancelFunc
	runCtx     context.Context // cancelled when Close gives up: stop retrying
	cancelRun  context.CancelFunc
	readerDone chan struct{}
	wg         sync.WaitGroup // shards and committer
	closeOnce  sync.Once

	keys []int // reader-owned scratch of partition

	written, batchesDone, writeErrors, deadLettered atomic.Int64
}

// batch is the spans of consecutive log records, up to BatchSize.
type batch struct {
	end     wal.Position // after its last record
	times   []time.Time  // append time of each record
	spans   int
	pending atomic.Int32 // shard parts not yet written
	failed  atomic.Bool  // a part was abandoned at Close: do not commit
	done    chan struct{}
}

func (b *batch) partDone(ok bool) {
	if !ok {
		b.failed.Store(true)
	}
	if b.pending.Add(-1) == 0 {
		close(b.done)
	}
}

// New starts a pipeline that reads w from its committed position and writes to st.
func New(st store.Store, w *wal.WAL, cfg Config) (*Pipeline, error) {
	cfg.fill()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	dead, err := openDeadLetter(cfg.DeadLetter, cfg.DeadLetterMaxBytes)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{cfg: cfg, store: st, wal: w, batches: make(chan *batch, 2*cfg.Shards), dead: dead, m: m,
		readerDone: make(chan struct{})}
	if cfg.Registerer != nil {
		lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshtrace_index_oldest_unindexed_seconds",
			Help: "Age of the oldest acknowledged span not yet searchable (0 when the store has everything)."},
			func() float64 { return p.Lag().Seconds() })
		if err := cfg.Registerer.Register(lag); err != nil {
			return nil, err
		}
	}
	p.readCtx, p.stopRead = context.WithCancel(context.Background())
	p.runCtx, p.cancelRun = context.WithCancel(context.Background())
	shardRollup := cfg.Rollup
	shardRollup.MaxSpans = max(1, cfg.Rollup.MaxSpans/cfg.Shards) // the flag is a total
	loader := storeLoader{st}
	for range cfg.Shards {
		s := &shard{p: p, in: make(chan part, 1), rollup: rollup.New(shardRollup, loader)}
		p.shards = append(p.shards, s)
		p.wg.Add(1)
		go s.run()
	}
	p.wg.Add(1)
	go p.commit()
	go p.read()
	return p, nil
}

// Stats returns a snapshot of the counters.
func (p *Pipeline) Stats() Stats {
	return Stats{Written: p.written.Load(), Batches: p.batchesDone.Load(), WriteErrors: p.writeErrors.Load(),
		DeadLettered: p.deadLettered.Load(), Lag: p.Lag()}
}

// Lag is how long ago the oldest span that was acknowledged and is not yet searchable was acknowledged; zero
// when everything acknowledged is in the store. It is the age of the log's oldest uncommitted record, read or
// not: a batch is committed only once the store holds it. If the log cannot say (an I/O error, logged), it is
// the age of the log's oldest segment, an upper bound.
func (p *Pipeline) Lag() time.Duration {
	t, ok, err := p.wal.Oldest()
	if err != nil {
		p.cfg.Logger.Warn("index lag: the write-ahead log's oldest record is unreadable; reporting its oldest segment's age", "err", err)
		if t = p.wal.Stats().OldestStart; t.IsZero() {
			return 0
		}
		ok = true
	}
	if !ok {
		return 0
	}
	return time.Since(t)
}

// read turns log records into batches until Close or the end of the log.
func (p *Pipeline) read() {
	defer close(p.readerDone)
	defer close(p.batches)
	rd := p.wal.NewReader()
	defer rd.Close()
	for {
		b, docs, err := p.collect(rd)
		if b != nil {
			p.dispatch(b, docs)
		}
		if err != nil {
			if !errors.Is(err, wal.ErrClosed) && !errors.Is(err, context.Canceled) {
				p.cfg.Logger.Error("reading the write-ahead log stopped", "err", err)
			}
			return
		}
	}
}

// collect waits for a record, then reads more until the batch holds BatchSize spans, BatchTimeout passes
// with nothing more to read, or reading ends (err is then set, and b holds what was read).
func (p *Pipeline) collect(rd *wal.Reader) (*batch, []document.Span, error) {
	var b *batch
	var docs []document.Span
	ctx := p.readCtx
	for b == nil || b.spans < p.cfg.BatchSize {
		rec, err := rd.Next(ctx)
		if b != nil && errors.Is(err, context.DeadlineExceeded) && p.readCtx.Err() == nil {
			return b, docs, nil
		}
		if err != nil {
			return b, docs, err
		}
		if b == nil {
			b = &batch{done: make(chan struct{})}
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(p.readCtx, p.cfg.BatchTimeout)
			defer cancel()
		}
		if len(b.times) == 1 {
			// A second record: the batch is filling up. Make room for all of it at once rather than growing
			// the documents record by record (a batch of one record gets exactly its size from flatten).
			docs = slices.Grow(docs, max(0, p.cfg.BatchSize-len(docs)))
		}
		n := len(docs)
		docs = p.decode(docs, rec)
		rd.Recycle(rec.Data) // the documents hold copies of what they need
		b.spans += len(docs) - n
		b.end = rec.Next
		b.times = append(b.times, rec.Time)
	}
	return b, docs, nil
}

// decode appends the span documents of one record, each of the record's tenant (package record). A record
// that does not decode (it was validated when it was accepted, so only damage or a changed limit can cause
// this) goes to the dead-letter file.
func (p *Pipeline) decode(docs []document.Span, rec wal.Record) []document.Span {
	tn, otlp, err := record.Decode(rec.Data)
	n := len(docs)
	var out []document.Span
	var rej flatten.Rejected
	if err == nil {
		out, rej, err = flatten.FromProtobuf(docs, otlp, accepted)
	}
	if err != nil {
		p.cfg.Logger.Error("undecodable record in the write-ahead log; kept in the dead-letter file",
			"segment", rec.Pos.Segment, "offset", rec.Pos.Offset, "err", err)
		p.dead.record(rec.Data, err)
		return docs
	}
	_ = rej // counted and answered when the record was accepted
	if tn != "" {
		for i := n; i < len(out); i++ {
			out[i].Tenant = tn
			out[i].ID = document.SpanDocID(tn, out[i].TraceID, out[i].SpanID)
		}
	}
	return out
}

// accepted are the limits records are decoded with: none, since each was checked against the receiver's limits
// when it was acknowledged, and a limit lowered since must not refuse it now.
var accepted = flatten.Limits{MaxSpans: -1, MaxAttributes: -1, MaxResourceAttributes: -1, MaxEvents: -1, MaxLinks: -1,
	MaxKeyBytes: -1, MaxValueBytes: -1, MaxArrayElements: -1, MaxDepth: -1}

// dispatch caps the batch's attribute keys, then hands it to the committer and its spans to the shards.
func (p *Pipeline) dispatch(b *batch, docs []document.Span) {
	if p.cfg.Fields != nil {
		p.cfg.Fields.Apply(docs)
	}
	parts := make([][]document.Span, len(p.shards))
	if len(p.shards) == 1 {
		parts[0] = docs
	} else {
		p.partition(parts, docs)
	}
	n := int32(1) // held by dispatch until every part is sent
	for _, part := range parts {
		if len(part) > 0 {
			n++
		}
	}
	b.pending.Store(n)
	p.batches <- b
	for k, spans := range parts {
		if len(spans) > 0 {
			p.shards[k].in <- part{b: b, spans: spans}
		}
	}
	b.partDone(true)
}

// partition sets parts[k] to the documents of shard k, in their order, all in one new slice.
func (p *Pipeline) partition(parts [][]document.Span, docs []document.Span) {
	keys := p.keys[:0]
	count := make([]int, len(parts)+1)
	for i := range docs {
		k := shardOf(docs[i].TraceID, len(parts))
		keys = append(keys, k)
		count[k+1]++
	}
	p.keys = keys
	for k := range parts {
		count[k+1] += count[k] // count[k] is now where shard k starts
	}
	all := make([]document.Span, len(docs))
	for k := range parts {
		parts[k] = all[count[k]:count[k+1]:count[k+1]]
	}
	for i, k := range keys {
		all[count[k]] = docs[i]
		count[k]++
	}
}

// shardOf is the shard of a trace id: FNV-1a (32 bits) of the id, modulo n.
func shardOf(traceID string, n int) int {
	const offset, prime = 2166136261, 16777619
	h := uint32(offset)
	for i := 0; i < len(traceID); i++ {
		h ^= uint32(traceID[i])
		h *= prime
	}
	return int(h % uint32(n))
}

// commit commits the log position of each batch, in order, once its spans are written. After a batch was
// abandoned (Close gave up) nothing later is committed: the log keeps it all for the next start.
func (p *Pipeline) commit() {
	defer p.wg.Done()
	abandoned := false
	for b := range p.batches {
		<-b.done
		if abandoned || b.failed.Load() {
			abandoned = true
			continue
		}
		if err := p.wal.Commit(b.end); err != nil {
			// The records stay in the log and are written again after a restart: duplicates, not loss.
			p.cfg.Logger.Error("commit to the write-ahead log failed", "err", err)
		}
		now := time.Now()
		for _, t := range b.times {
			p.m.lag.Observe(now.Sub(t).Seconds())
		}
		p.batchesDone.Add(1)
	}
}

// Close stops reading the log and waits for the batches in flight to be written and committed. If ctx ends
// first, retries are abandoned; what was not committed stays in the log and is written after the next start.
// Calls after the first return at once.
func (p *Pipeline) Close(ctx context.Context) {
	p.closeOnce.Do(func() {
		p.stopRead()
		done := make(chan struct{})
		go func() {
			<-p.readerDone
			for _, s := range p.shards {
				close(s.in)
			}
			p.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			p.cancelRun()
			<-done
			p.cfg.Logger.Warn("pipeline stopped before the store took everything; the write-ahead log keeps the rest for the next start",
				"lag", p.Lag())
		}
		p.cancelRun()
		p.dead.close()
	})
}
