package meili

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// errClosed is returned by Write after Close.
var errClosed = errors.New("meili: store closed")

// lines is a run of NDJSON documents: one buffer, the end offset of each line and each document's id.
type lines struct {
	buf  []byte
	ends []int
	ids  []string
}

// line returns the i-th document's NDJSON line (with its newline).
func (l *lines) line(i int) []byte {
	start := 0
	if i > 0 {
		start = l.ends[i-1]
	}
	return l.buf[start:l.ends[i]]
}

// encode checks every document id and renders the documents as NDJSON. Errors wrap store.ErrBadRequest:
// writing the same documents again cannot succeed.
func encode[T any](docs []T, kind string, id func(*T) string) (*lines, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	l := &lines{ends: make([]int, 0, len(docs)), ids: make([]string, 0, len(docs))}
	for i := range docs {
		if err := store.CheckID(id(&docs[i])); err != nil {
			return nil, fmt.Errorf("meili: %s document %d: %w", kind, i, err)
		}
		if err := enc.Encode(&docs[i]); err != nil {
			return nil, fmt.Errorf("meili: %w: %s document %d (id %s): %w", store.ErrBadRequest, kind, i, id(&docs[i]), err)
		}
		l.ends = append(l.ends, buf.Len())
		l.ids = append(l.ids, id(&docs[i]))
	}
	l.buf = buf.Bytes()
	return l, nil
}

func encodeSpans(spans []document.Span) (*lines, error) {
	return encode(spans, "span", func(s *document.Span) string { return s.ID })
}

func encodeTraces(traces []document.Trace) (*lines, error) {
	return encode(traces, "trace", func(t *document.Trace) string { return t.ID })
}

// batch is a group of documents sent as one task. done is closed once err is set.
type batch struct {
	docs  [][]byte       // NDJSON lines, in order
	pos   map[string]int // index in docs by document id, when the batcher coalesces
	bytes int            // total length of docs
	first time.Time
	done  chan struct{}
	err   error
}

// payload joins the batch's lines into one NDJSON body.
func (x *batch) payload() []byte { return bytes.Join(x.docs, nil) }

// batcher groups the documents of one index into batches and sends them one at a time.
//
// A coalescing batcher (the trace index's) keeps one document per id in the batch that is still open: a
// document replaces the one with its id queued earlier in that batch, in place. That is right for trace
// documents, which the rollup recomputes from every span of the trace: the later one covers more. So a trace
// that gets spans in many pipeline batches is rewritten once per task Meilisearch runs, not once per batch.
type batcher struct {
	s        *Store
	uid      string
	coalesce bool

	mu        sync.Mutex
	maxBytes  int      // Config.MaxBatchBytes, lowered when Meilisearch refuses a payload as too large
	open      *batch   // accepting documents
	sealed    []*batch // full, waiting to be sent in order
	closed    bool
	closeErr  error
	coalesced int64 // documents replaced in the open batch (coalescing batchers only)

	wake   chan struct{}
	exited chan struct{}
}

func (s *Store) newBatcher(uid string, coalesce bool) *batcher {
	b := &batcher{s: s, uid: uid, coalesce: coalesce, maxBytes: s.cfg.MaxBatchBytes,
		wake: make(chan struct{}, 1), exited: make(chan struct{})}
	go b.run()
	return b
}

func (b *batcher) newBatch() *batch {
	x := &batch{first: time.Now(), done: make(chan struct{})}
	if b.coalesce {
		x.pos = map[string]int{}
	}
	return x
}

// add queues documents and returns the batches that hold them.
func (b *batcher) add(l *lines) ([]*batch, error) {
	if len(l.ends) == 0 {
		return nil, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	var out []*batch
	maxDocs, maxBytes := b.s.cfg.MaxBatchDocs, b.maxBytes
	for i := range l.ends {
		doc := l.line(i)
		if b.open == nil {
			b.open = b.newBatch()
		}
		o := b.open
		j, replace := o.pos[l.ids[i]]
		if !replace && len(o.docs) > 0 && o.bytes+len(doc) > maxBytes { // an empty batch takes any line
			b.sealed = append(b.sealed, o)
			o = b.newBatch()
			b.open = o
		}
		if replace {
			o.bytes += len(doc) - len(o.docs[j])
			o.docs[j] = doc
			b.coalesced++
		} else {
			if o.pos != nil {
				o.pos[l.ids[i]] = len(o.docs)
			}
			o.docs = append(o.docs, doc)
			o.bytes += len(doc)
		}
		if len(out) == 0 || out[len(out)-1] != o {
			out = append(out, o)
		}
		if len(o.docs) >= maxDocs || o.bytes >= maxBytes {
			b.sealed = append(b.sealed, o)
			b.open = nil
		}
	}
	b.signal()
	return out, nil
}

func (b *batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// uploaded is a batch whose documents Meilisearch has enqueued as tasks (several when the payload was
// split), or the error that prevented it.
type uploaded struct {
	x     *batch
	tasks []int64
	err   error
}

// run sends batches until the batcher is closed and drained. Uploading and waiting overlap: while one
// batch's task is being waited for, the next batch is uploaded, so Meilisearch finds the next task already
// enqueued when it finishes one (and may index both in one of its own batches) instead of idling through a
// poll interval and an upload. The channel is unbuffered, so at most two batches are in flight: the one
// being waited for and the one uploaded and handed over.
func (b *batcher) run() {
	defer close(b.exited)
	sent := make(chan uploaded)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for u := range sent {
			b.finish(u)
		}
	}()
	for {
		x, ok := b.next()
		if !ok {
			break
		}
		tasks, err := b.upload(context.Background(), x.payload())
		sent <- uploaded{x: x, tasks: tasks, err: err}
	}
	close(sent)
	<-done
}

// finish waits for an uploaded batch's tasks and completes the batch with their outcome.
func (b *batcher) finish(u uploaded) {
	err := u.err
	for _, t := range u.tasks {
		if err == nil {
			err = b.s.wait(context.Background(), t)
		}
	}
	u.x.err = err
	b.mu.Lock()
	if b.closed && err != nil {
		b.closeErr = errors.Join(b.closeErr, err)
	}
	b.mu.Unlock()
	close(u.x.done)
}

// next waits for the next batch to send: a sealed one, or the open one once it has lingered (at once when
// closing). While a batch is being sent, documents accumulate in the open batch, which then goes out
// immediately: the batch size follows Meilisearch's indexing speed.
func (b *batcher) next() (*batch, bool) {
	for {
		b.mu.Lock()
		if len(b.sealed) > 0 {
			x := b.sealed[0]
			b.sealed = b.sealed[1:]
			b.mu.Unlock()
			return x, true
		}
		var wait time.Duration
		if o := b.open; o != nil {
			wait = time.Until(o.first.Add(b.s.cfg.Linger))
			if wait <= 0 || b.closed {
				b.open = nil
				b.mu.Unlock()
				return o, true
			}
		} else if b.closed {
			b.mu.Unlock()
			return nil, false
		}
		b.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-b.wake:
			case <-t.C:
			}
			t.Stop()
		} else {
			<-b.wake
		}
	}
}

// upload sends NDJSON lines as one task and returns its uid. If Meilisearch refuses the payload as too
// large (its --http-payload-size-limit is lower than MaxBatchBytes), the lines are sent in two halves, in
// order, as two tasks, and later batches are kept under the size that failed.
func (b *batcher) upload(ctx context.Context, buf []byte) ([]int64, error) {
	idx := b.s.client.Index(b.uid)
	task, err := retry(ctx, b.s, "add documents to "+b.uid, func() (*meilisearch.TaskInfo, error) {
		return idx.AddDocumentsNdjsonWithContext(ctx, buf, nil)
	})
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusRequestEntityTooLarge {
		mid := bytes.IndexByte(buf[len(buf)/2:], '\n') + len(buf)/2 + 1
		if mid >= len(buf) {
			mid = bytes.LastIndexByte(buf[:len(buf)-1], '\n') + 1
		}
		if mid <= 0 {
			return nil, err // a single document over the limit
		}
		b.mu.Lock()
		b.maxBytes = min(b.maxBytes, max(mid, len(buf)-mid))
		b.mu.Unlock()
		b.s.log.Warn("meilisearch refused a batch as too large; splitting it", "index", b.uid, "bytes", len(buf))
		first, err := b.upload(ctx, buf[:mid])
		if err != nil {
			return nil, err
		}
		rest, err := b.upload(ctx, buf[mid:])
		return append(first, rest...), err
	}
	if err != nil {
		return nil, err
	}
	return []int64{task.TaskUID}, nil
}

// close sends what is queued, waits for it and stops the sender. It returns the errors of those last batches.
func (b *batcher) close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.signal()
	<-b.exited
	return b.closeErr
}
