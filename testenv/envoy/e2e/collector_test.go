package e2e

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/flatten"
)

// collector sits where the filter's export cluster points: it decodes and keeps every OTLP/HTTP protobuf
// export, hands it on to the indexer's receiver when it has one, and can delay its answers or replace them
// with an error status, to play a slow or failing indexer.
type collector struct {
	srv        *httptest.Server
	next       http.Handler // the indexer's OTLP/HTTP receiver; nil: answer 200 itself
	delay      atomic.Int64 // nanoseconds to wait before answering
	status     atomic.Int32 // HTTP status to answer (0: 200)
	retryAfter atomic.Int32 // seconds sent in Retry-After with an error status (0: none)
	requests   atomic.Int64

	mu    sync.Mutex
	spans []document.Span // as the indexer would store them
}

func newCollector(t testing.TB, next http.Handler) *collector {
	t.Helper()
	c := &collector{next: next}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.srv.Close)
	return c
}

// Addr is the collector's host:port.
func (c *collector) Addr() string { return c.srv.Listener.Addr().String() }

func (c *collector) serve(w http.ResponseWriter, r *http.Request) {
	c.requests.Add(1)
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if d := time.Duration(c.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	if s := c.status.Load(); s != 0 {
		if ra := c.retryAfter.Load(); ra > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(ra)))
		}
		w.WriteHeader(int(s))
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || err != nil {
		http.Error(w, "bad export request", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.spans, _, _ = flatten.Spans(c.spans, req.ResourceSpans, flatten.DefaultLimits)
	c.mu.Unlock()
	if c.next != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		c.next.ServeHTTP(w, r)
		return
	}
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// Spans returns the spans received so far, flattened into search documents.
func (c *collector) Spans() []document.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]document.Span(nil), c.spans...)
}
