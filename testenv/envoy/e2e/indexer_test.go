package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/api"
	"github.com/meshtrace/meshtrace/indexer/pipeline"
	"github.com/meshtrace/meshtrace/indexer/receiver"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
	"github.com/meshtrace/meshtrace/indexer/wal"
	"github.com/meshtrace/meshtrace/testenv/indexerproc"
)

// indexer is the meshtrace indexer with its default embedded store, run in the test process: the OTLP/HTTP
// receiver (Receiver) and the OTLP/gRPC one (on GRPCAddr) writing to a write-ahead log read by the pipeline,
// and the search API on a loopback server.
type indexer struct {
	Receiver http.Handler
	GRPCAddr string // host:port of the OTLP/gRPC receiver (what Envoy's OpenTelemetry tracer exports to)
	// HTTPAddr is host:port of the receiver's HTTP server: OTLP/HTTP, and Zipkin v2 JSON on /api/v2/spans.
	HTTPAddr string
	api      *httptest.Server
}

func startIndexer(t *testing.T) *indexer {
	t.Helper()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	w, err := wal.Open(wal.Config{Dir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	pipe, err := pipeline.New(st, w, pipeline.Config{BatchTimeout: 50 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	recv, err := receiver.New(w, receiver.Config{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pipe.Close(ctx)
		if err := errors.Join(w.Close(), st.Close()); err != nil {
			t.Error(err)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcSrv := recv.GRPCServer()
	go func() { _ = grpcSrv.Serve(ln) }()
	t.Cleanup(grpcSrv.Stop) // before the pipeline closes (cleanups run last first)
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpSrv := recv.HTTPServer()
	go func() { _ = httpSrv.Serve(httpLn) }()
	t.Cleanup(func() { _ = httpSrv.Close() })
	ix := &indexer{
		Receiver: recv,
		GRPCAddr: ln.Addr().String(),
		HTTPAddr: httpLn.Addr().String(),
		api:      httptest.NewServer(api.New(st, api.Config{Logger: log})),
	}
	t.Cleanup(ix.api.Close)
	return ix
}

// get decodes the JSON answer of an API path into v, failing the test on any other status than 200.
func (ix *indexer) get(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get(ix.api.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e api.ErrorResponse
		_ = json.NewDecoder(resp.Body).Decode(&e)
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, e.Error)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// search runs a query of the meshtrace query language over target ("spans" or "traces").
func (ix *indexer) search(t *testing.T, q, target string) api.SearchResponse {
	t.Helper()
	var r api.SearchResponse
	ix.get(t, "/api/v1/search?"+url.Values{"q": {q}, "target": {target}, "limit": {"1000"}}.Encode(), &r)
	return r
}

// trace fetches one trace document and its spans.
func (ix *indexer) trace(t *testing.T, id string) api.TraceResponse {
	t.Helper()
	var r api.TraceResponse
	ix.get(t, "/api/v1/traces/"+id, &r)
	return r
}

// startIndexerProcess runs a real `indexer serve` with an embedded store under dir and the given flags, stops it
// when the test ends (printing its log's tail if the test failed), and returns it with its OTLP/HTTP URL.
func startIndexerProcess(t *testing.T, dir string, flags ...string) (*indexerproc.Process, *url.URL) {
	t.Helper()
	ix, err := indexerproc.Start(context.Background(), indexerproc.Build(t), dir,
		append([]string{"--data-dir", filepath.Join(dir, "data"), "--batch-timeout", "20ms"}, flags...), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- indexer.log (tail) ---\n%s", indexerproc.Tail(ix.LogPath, 20))
		}
		if err := ix.Stop(10 * time.Second); err != nil {
			t.Error(err)
		}
	})
	otlp, err := url.Parse(ix.OTLPURL)
	if err != nil {
		t.Fatal(err)
	}
	return ix, otlp
}
