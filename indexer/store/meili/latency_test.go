package meili

import (
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
	meiliproc "github.com/meshtrace/meshtrace/testenv/meilisearch"
)

// The tests below check the property newHTTPClient establishes (see transport.go): requests do not ask for
// gzip, so Meilisearch answers with a Content-Length body that it writes in the same send as the headers.
// A gzip answer is chunked and sent in two writes, and on a kept-alive connection the second one waits about
// 40ms for a delayed ACK. That delay is only measured by BenchmarkSearchKeptAlive; the tests check the
// framing, which does not depend on timing.

// latencySearchBody is a Meilisearch search response, as the stand-in server below answers it.
const latencySearchBody = `{"hits":[],"query":"","processingTimeMs":0,"hitsPerPage":20,"page":1,"totalPages":0,"totalHits":0}`

// latencyGzipServer answers every request with latencySearchBody and records the Accept-Encoding header of
// each one. Like Meilisearch, it compresses the answer when the request asks for gzip.
func latencyGzipServer(t *testing.T) (url string, acceptEncodings func() []string) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ae := r.Header.Get("Accept-Encoding")
		mu.Lock()
		seen = append(seen, ae)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(ae, "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = zw.Write([]byte(latencySearchBody))
			_ = zw.Close()
			return
		}
		_, _ = w.Write([]byte(latencySearchBody))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// latencySearchRaw runs one search through meilisearch-go on hc, the way Store.Search sends it.
func latencySearchRaw(t *testing.T, url string, hc *http.Client) {
	t.Helper()
	per := int64(20)
	c := newClient(Config{URL: url, HTTPClient: hc}, "key")
	if _, err := c.Index("spans").SearchRawWithContext(context.Background(), "",
		&meilisearch.SearchRequest{Page: 1, HitsPerPage: &per}); err != nil {
		t.Fatal(err)
	}
}

// TestLatencyClientDoesNotAskForGzip checks that a search sent on newHTTPClient carries no
// "Accept-Encoding: gzip". The control subtest shows the same check catches net/http's default client, which
// adds that header itself.
func TestLatencyClientDoesNotAskForGzip(t *testing.T) {
	t.Run("control: default client asks for gzip", func(t *testing.T) {
		url, seen := latencyGzipServer(t)
		latencySearchRaw(t, url, &http.Client{Timeout: 60 * time.Second})
		if got := seen(); len(got) != 1 || !strings.Contains(got[0], "gzip") {
			t.Fatalf("Accept-Encoding of the default client: %q, want gzip; the check below would prove nothing", got)
		}
	})
	url, seen := latencyGzipServer(t)
	for range 3 {
		latencySearchRaw(t, url, newHTTPClient())
	}
	for _, ae := range seen() {
		if strings.Contains(ae, "gzip") {
			t.Fatalf("newHTTPClient sent Accept-Encoding %q: Meilisearch would answer gzip, in two writes", ae)
		}
	}
}

// TestLatencyClientPool checks the settings of newHTTPClient that are not about compression: a timeout per
// request, as the previous default had, and a pool that keeps enough idle connections for the batchers and
// concurrent searches.
func TestLatencyClientPool(t *testing.T) {
	hc := newHTTPClient()
	tr, ok := hc.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport is %T, want *http.Transport", hc.Transport)
	}
	if hc.Timeout != 60*time.Second {
		t.Errorf("Timeout = %v, want 60s", hc.Timeout)
	}
	if !tr.DisableCompression {
		t.Error("DisableCompression is false")
	}
	if tr.MaxIdleConnsPerHost < 16 || tr.MaxIdleConns < tr.MaxIdleConnsPerHost {
		t.Errorf("MaxIdleConnsPerHost = %d, MaxIdleConns = %d: want at least 16, and MaxIdleConns >= it",
			tr.MaxIdleConnsPerHost, tr.MaxIdleConns)
	}
}

// latencyRecorder is a RoundTripper that records how each response was framed.
type latencyRecorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	log  []latencyResponse
}

type latencyResponse struct {
	what         string // method and path
	uncompressed bool   // the transport decompressed a gzip body
	length       int64  // Content-Length, -1 if unknown (chunked)
	chunked      bool
}

func (r *latencyRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err == nil {
		r.mu.Lock()
		r.log = append(r.log, latencyResponse{what: req.Method + " " + req.URL.Path, uncompressed: resp.Uncompressed,
			length: resp.ContentLength, chunked: len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"})
		r.mu.Unlock()
	}
	return resp, err
}

func (r *latencyRecorder) responses() []latencyResponse {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]latencyResponse(nil), r.log...)
}

// TestLatencyRealServerAnswersWithContentLength runs the store on newHTTPClient against a real Meilisearch:
// opening the indexes, writing (with its task polling) and searching. Every answer must come uncompressed,
// with a Content-Length, which Meilisearch writes in one send. With net/http's default client the answers
// are gzip, chunked, and the store's searches wait for a delayed ACK.
func TestLatencyRealServerAnswersWithContentLength(t *testing.T) {
	srv := meiliproc.StartTest(t, meiliproc.Config{})
	hc := newHTTPClient()
	rec := &latencyRecorder{base: hc.Transport}
	hc.Transport = rec
	s, err := Open(context.Background(), latencyConfig(t, srv, hc))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Write(context.Background(), latencySpans(200), nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		res, err := s.Search(context.Background(), latencyRequest())
		if err != nil {
			t.Fatal(err)
		}
		if res.Total == 0 {
			t.Fatal("search matched nothing")
		}
	}
	searches, bad := 0, 0
	all := rec.responses()
	for _, r := range all {
		if strings.HasSuffix(r.what, "/search") {
			searches++
		}
		if r.uncompressed || r.chunked || r.length < 0 {
			if bad++; bad <= 3 {
				t.Errorf("%s: answer gzip=%v chunked=%v Content-Length=%d: want uncompressed with a Content-Length",
					r.what, r.uncompressed, r.chunked, r.length)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d answers were not framed by Content-Length", bad, len(all))
	}
	if searches != 3 {
		t.Errorf("recorded %d searches, want 3", searches)
	}
}

// BenchmarkSearchKeptAlive measures Store.Search of one page (20 spans of one service, newest first) among
// 5,000 spans in a real Meilisearch, on a kept-alive connection: "default" on the store's previous default
// client (&http.Client{Timeout: 60s}), "fixed" on newHTTPClient. "alternating" runs one search on each per
// iteration, so both see the same machine load, and reports each one's mean and their ratio
// (default/fixed). That ratio is the conservative one: there each fixed search follows the default's ~40ms
// wait, and after that long idle Meilisearch and the client take about 1ms more to wake up than in a tight
// loop (no delayed ACK is involved then: TcpExtDelayedACKs stays at zero).
func BenchmarkSearchKeptAlive(b *testing.B) {
	srv := meiliproc.StartTest(b, meiliproc.Config{})
	clients := []struct {
		name string
		hc   *http.Client
	}{
		{"default", &http.Client{Timeout: 60 * time.Second}},
		{"fixed", newHTTPClient()},
	}
	prefix := latencyPrefix()
	stores := make([]*Store, len(clients))
	for i, c := range clients {
		cfg := latencyConfig(b, srv, c.hc)
		cfg.IndexPrefix = prefix // both stores search the same indexes
		s, err := Open(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		stores[i] = s
	}
	if err := stores[1].Write(context.Background(), latencySpans(5000), nil); err != nil {
		b.Fatal(err)
	}
	req := latencyRequest()
	search := func(b *testing.B, s *Store) {
		res, err := s.Search(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Spans) != 20 {
			b.Fatalf("%d hits, want 20", len(res.Spans))
		}
	}
	for i, c := range clients {
		search(b, stores[i]) // warm up: the connection is in the pool from here on
		b.Run(c.name, func(b *testing.B) {
			reused := latencyCountReused(stores[i], func() {
				for b.Loop() {
					search(b, stores[i])
				}
			})
			if reused == 0 {
				b.Fatal("no search reused a kept-alive connection")
			}
		})
	}
	b.Run("alternating", func(b *testing.B) {
		var spent [2]time.Duration
		n := 0
		for b.Loop() {
			for i := range stores {
				t0 := time.Now()
				search(b, stores[i])
				spent[i] += time.Since(t0)
			}
			n++
		}
		b.ReportMetric(float64(spent[0].Nanoseconds())/float64(n), "default-ns/search")
		b.ReportMetric(float64(spent[1].Nanoseconds())/float64(n), "fixed-ns/search")
		b.ReportMetric(float64(spent[0])/float64(spent[1]), "default/fixed")
	})
}

// latencyCountReused runs f and returns how many connections the store's search client took from its pool
// meanwhile, observed through an httptrace hook on the client's transport.
func latencyCountReused(s *Store, f func()) int {
	hc := s.cfg.HTTPClient
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	var mu sync.Mutex
	reused := 0
	hc.Transport = latencyTraceTransport{base: base, trace: &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if i.Reused {
			mu.Lock()
			reused++
			mu.Unlock()
		}
	}}}
	defer func() { hc.Transport = hc.Transport.(latencyTraceTransport).base }()
	f()
	mu.Lock()
	defer mu.Unlock()
	return reused
}

type latencyTraceTransport struct {
	base  http.RoundTripper
	trace *httptrace.ClientTrace
}

func (t latencyTraceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.base.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), t.trace)))
}

// latencyRequest is the search the test and the benchmark run: a page of one service's spans, newest first.
func latencyRequest() store.Request {
	return store.Request{Index: store.Spans, Limit: 20,
		Filter: &query.Compare{Field: "service", Op: query.Eq, Value: query.Value{Str: "svc3"}}}
}

func latencyPrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "meshtrace-latency-" + hex.EncodeToString(b[:]) + "-"
}

// latencyConfig configures a store on srv with hc and a fresh index prefix (the server, and its indexes, go
// away when the test ends).
func latencyConfig(tb testing.TB, srv *meiliproc.Server, hc *http.Client) Config {
	tb.Helper()
	return Config{URL: srv.URL, APIKey: srv.Key, IndexPrefix: latencyPrefix(), HTTPClient: hc,
		Linger: 2 * time.Millisecond, RetryInitial: 5 * time.Millisecond, RetryFor: 30 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// latencySpans makes n spans of 10 services, 4 spans per trace.
func latencySpans(n int) []document.Span {
	out := make([]document.Span, n)
	for i := range out {
		trace := fmt.Sprintf("%032x", i/4+1)
		span := fmt.Sprintf("%016x", i+1)
		start := int64(1_700_000_000_000_000 + i*1000)
		out[i] = document.Span{ID: trace + "-" + span, TraceID: trace, SpanID: span, Kind: "server",
			Name: fmt.Sprintf("GET /api/v1/items/%d", i%37), Service: fmt.Sprintf("svc%d", i%10),
			Start: start, End: start + int64(i%5000), Duration: int64(i % 5000), StatusCode: "ok",
			Attr: map[string]any{"http.method": "GET", "http.status_code": 200 + i%3}}
	}
	return out
}
