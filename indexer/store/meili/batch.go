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

// lines is a run of NDJSON documents: one buffer and the end offset of each line.
type lines struct {
	buf  []byte
	ends []int
}

// encode checks every document id and renders the documents as NDJSON. Errors wrap store.ErrBadRequest:
// writing the same documents again cannot succeed.
func encode[T any](docs []T, kind string, id func(*T) string) (*lines, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	l := &lines{ends: make([]int, 0, len(docs))}
	for i := range docs {
		if err := store.CheckID(id(&docs[i])); err != nil {
			return nil, fmt.Errorf("meili: %s document %d: %w", kind, i, err)
		}
		if err := enc.Encode(&docs[i]); err != nil {
			return nil, fmt.Errorf("meili: %w: %s document %d (id %s): %w", store.ErrBadRequest, kind, i, id(&docs[i]), err)
		}
		l.ends = append(l.ends, buf.Len())
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
	buf   []byte
	n     int
	first time.Time
	done  chan struct{}
	err   error
}

// batcher groups the documents of one index into batches and sends them one at a time.
type batcher struct {
	s   *Store
	uid string

	mu       sync.Mutex
	maxBytes int      // Config.MaxBatchBytes, lowered when Meilisearch refuses a payload as too large
	open     *batch   // accepting documents
	sealed   []*batch // full, waiting to be sent in order
	closed   bool
	closeErr error

	wake   chan struct{}
	exited chan struct{}
}

func (s *Store) newBatcher(uid string) *batcher {
	b := &batcher{s: s, uid: uid, maxBytes: s.cfg.MaxBatchBytes, wake: make(chan struct{}, 1), exited: make(chan struct{})}
	go b.run()
	return b
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
	for i, start := 0, 0; i < len(l.ends); {
		if b.open == nil {
			b.open = &batch{first: time.Now(), done: make(chan struct{}),
				buf: make([]byte, 0, min(len(l.buf)-start, maxBytes))}
		}
		o := b.open
		// Take the longest run of lines that fits; an empty batch takes one line whatever its size.
		j := i
		for j < len(l.ends) && o.n+(j-i) < maxDocs && len(o.buf)+l.ends[j]-start <= maxBytes {
			j++
		}
		if j == i && o.n == 0 {
			j = i + 1
		}
		if j > i {
			o.buf = append(o.buf, l.buf[start:l.ends[j-1]]...)
			o.n += j - i
			start, i = l.ends[j-1], j
			if len(out) == 0 || out[len(out)-1] != o {
				out = append(out, o)
			}
		}
		if i < len(l.ends) || o.n >= maxDocs || len(o.buf) >= maxBytes { // the open batch is full
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

// run sends batches until the batcher is closed and drained.
func (b *batcher) run() {
	defer close(b.exited)
	for {
		x, ok := b.next()
		if !ok {
			return
		}
		x.err = b.send(context.Background(), x.buf)
		b.mu.Lock()
		if b.closed && x.err != nil {
			b.closeErr = errors.Join(b.closeErr, x.err)
		}
		b.mu.Unlock()
		close(x.done)
	}
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

// send uploads NDJSON lines as one task and waits for it. If Meilisearch refuses the payload as too large
// (its --http-payload-size-limit is lower than MaxBatchBytes), the lines are sent in two halves, in order,
// and later batches are kept under the size that failed.
func (b *batcher) send(ctx context.Context, buf []byte) error {
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
			return err // a single document over the limit
		}
		b.mu.Lock()
		b.maxBytes = min(b.maxBytes, max(mid, len(buf)-mid))
		b.mu.Unlock()
		b.s.log.Warn("meilisearch refused a batch as too large; splitting it", "index", b.uid, "bytes", len(buf))
		if err := b.send(ctx, buf[:mid]); err != nil {
			return err
		}
		return b.send(ctx, buf[mid:])
	}
	if err != nil {
		return err
	}
	return b.s.wait(ctx, task.TaskUID)
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
