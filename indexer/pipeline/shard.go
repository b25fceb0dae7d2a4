package pipeline

import (
	"errors"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/rollup"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// part is one batch's spans for one shard.
type part struct {
	b     *batch
	spans []document.Span
}

// shard rolls up and writes the spans of its part of the trace id space, one part at a time.
type shard struct {
	p      *Pipeline
	in     chan part
	rollup *rollup.Rollup
}

func (s *shard) run() {
	defer s.p.wg.Done()
	for pt := range s.in {
		// One large record can hold far more than a batch: write it in batches to bound the store's encoding.
		ok := true
		for i := 0; i < len(pt.spans) && ok; i += s.p.cfg.BatchSize {
			ok = s.write(pt.spans[i:min(i+s.p.cfg.BatchSize, len(pt.spans))])
		}
		pt.b.partDone(ok)
	}
}

// write stores spans, retrying failures with exponential backoff until they are stored or Close gives up
// (false). Spans the store refuses as invalid are isolated by halving the batch and dead-lettered one by one.
func (s *shard) write(spans []document.Span) bool {
	p := s.p
	backoff := p.cfg.RetryInitial
	for {
		start := time.Now()
		err := s.attempt(spans)
		p.m.writeSeconds.Observe(time.Since(start).Seconds())
		if err == nil {
			p.written.Add(int64(len(spans)))
			p.m.spansWritten.Add(float64(len(spans)))
			if backoff > p.cfg.RetryInitial {
				p.cfg.Logger.Info("store writes recovered", "spans", len(spans))
			}
			return true
		}
		p.writeErrors.Add(1)
		if errors.Is(err, store.ErrBadRequest) {
			p.m.writeErrors.WithLabelValues("refused").Inc()
			return s.isolate(spans, err)
		}
		p.m.writeErrors.WithLabelValues("failed").Inc()
		if p.runCtx.Err() != nil {
			return false
		}
		p.cfg.Logger.Warn("store write failed; retrying", "spans", len(spans), "retry_in", backoff, "err", err)
		select {
		case <-time.After(backoff):
		case <-p.runCtx.Done():
			return false
		}
		backoff = min(2*backoff, p.cfg.RetryMax)
	}
}

// isolate writes the halves of a refused batch separately; a single refused span is dead-lettered.
func (s *shard) isolate(spans []document.Span, err error) bool {
	if len(spans) == 1 {
		s.p.cfg.Logger.Error("store refused a span; kept in the dead-letter file", "trace_id", spans[0].TraceID,
			"span_id", spans[0].SpanID, "err", err)
		s.p.dead.span(&spans[0], err)
		s.p.deadLettered.Add(1)
		s.p.m.deadLettered.Inc()
		return true
	}
	half := len(spans) / 2
	return s.write(spans[:half]) && s.write(spans[half:])
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
