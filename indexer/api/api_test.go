package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/rollup"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
)

var now = time.Now()

const (
	slowTrace = "0000000000000000000000000000abc1"
	fastTrace = "0000000000000000000000000000abc2"
)

// shopSpans builds a gateway -> checkout -> inventory trace; the slow one has an error and a customer id.
func shopSpans(traceID string, ago, inventory time.Duration, customer string) []document.Span {
	start := now.Add(-ago).UnixMicro()
	mk := func(n int, parent int, service, name, kind string, offset, dur int64) document.Span {
		s := document.Span{TraceID: traceID, SpanID: fmt.Sprintf("%016x", n), Name: name, Kind: kind, Service: service,
			Start: start + offset, End: start + offset + dur, Duration: dur, StatusCode: "unset",
			Attr: map[string]any{"customer_id": customer, "http.response.status_code": int64(200)}, Resource: map[string]any{"service.name": service}}
		if parent > 0 {
			s.ParentSpanID = fmt.Sprintf("%016x", parent)
		}
		s.ID = traceID + "-" + s.SpanID
		return s
	}
	inv := inventory.Microseconds()
	spans := []document.Span{
		mk(1, 0, "gateway", "GET /checkout", "server", 0, inv+2000),
		mk(2, 1, "checkout", "POST /reserve", "client", 500, inv+1000),
		mk(3, 2, "inventory-service", "reserve", "server", 1000, inv),
	}
	if inventory > 500*time.Millisecond {
		spans[2].StatusCode, spans[2].Error, spans[2].StatusMessage = "error", true, "connection reset"
		spans[2].Events = []document.Event{{Name: "retry", Time: spans[2].Start + 10, Attr: map[string]any{"attempt": int64(2)}}}
	}
	return spans
}

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	return serveTraces(t, shopTraces())
}

// shopTraces are the slow trace (customer 123, failing in inventory-service) and the fast one (456).
func shopTraces() [][]document.Span {
	return [][]document.Span{
		shopSpans(slowTrace, 10*time.Minute, 900*time.Millisecond, "123"),
		shopSpans(fastTrace, 20*time.Minute, 20*time.Millisecond, "456"),
	}
}

// serveTraces serves an API over an embedded store holding traces, rolled up as the pipeline does.
func serveTraces(t *testing.T, traces [][]document.Span) *httptest.Server {
	t.Helper()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return serveTracesOn(t, st, traces)
}

// serveTracesOn serves an API over st, which it closes at the end of the test, holding traces, rolled up as
// the pipeline does.
func serveTracesOn(t *testing.T, st store.Store, traces [][]document.Span) *httptest.Server {
	t.Helper()
	t.Cleanup(func() { st.Close() })
	r := rollup.New(rollup.Config{}, nil)
	for _, spans := range traces {
		docs, err := r.Apply(context.Background(), spans, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Write(context.Background(), spans, docs); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(New(st, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path string, wantCode int, out any) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantCode {
		t.Fatalf("GET %s: status %d, want %d; body %s", path, resp.StatusCode, wantCode, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
}

func TestSearch(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		q, target  string
		wantTarget string
		wantIDs    []string
	}{
		{"customer_id=123 service=inventory-service trace.duration>500ms since=1h", "", "traces", []string{slowTrace}},
		{"customer_id=123 service=inventory-service trace.duration>500ms since=1h", "spans", "spans", []string{slowTrace + "-0000000000000003"}},
		{`"connection reset"`, "", "spans", []string{slowTrace + "-0000000000000003"}},
		{"trace_id=" + fastTrace + " sort=start", "", "spans", []string{fastTrace + "-0000000000000001", fastTrace + "-0000000000000002", fastTrace + "-0000000000000003"}},
		{"service=nobody", "", "spans", nil},
	}
	for _, tt := range tests {
		var res SearchResponse
		get(t, srv, "/api/v1/search?q="+url.QueryEscape(tt.q)+"&target="+tt.target, http.StatusOK, &res)
		var ids []string
		for _, s := range res.Spans {
			ids = append(ids, s.ID)
		}
		for _, tr := range res.Traces {
			ids = append(ids, tr.ID)
		}
		if res.Target != tt.wantTarget || !slices.Equal(ids, tt.wantIDs) || res.Total != len(tt.wantIDs) {
			t.Errorf("%q: target %s, total %d, ids %v; want %s, %v", tt.q, res.Target, res.Total, ids, tt.wantTarget, tt.wantIDs)
		}
	}
}

func TestSearchErrors(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		path, want string
		pos        int
	}{
		{"/api/v1/search?q=" + url.QueryEscape("duration>>5"), "query: at position", 10},
		{"/api/v1/search?q=a=1&target=logs", `target must be "spans" or "traces"`, 0},
		{"/api/v1/search?q=a=1&limit=5000", "limit must be an integer from 0 to 1000", 0},
		{"/api/v1/search?q=a=1&offset=-1", "offset must be a non-negative integer", 0},
	}
	for _, tt := range tests {
		var res ErrorResponse
		get(t, srv, tt.path, http.StatusBadRequest, &res)
		if !strings.Contains(res.Error, tt.want) || (tt.pos != 0 && res.Position == 0) {
			t.Errorf("%s: error %+v, want %q with a position", tt.path, res, tt.want)
		}
	}
}

func TestTrace(t *testing.T) {
	srv := newServer(t)
	var res TraceResponse
	get(t, srv, "/api/v1/traces/"+strings.ToUpper(slowTrace), http.StatusOK, &res)
	if res.Trace.SpanCount != 3 || res.Trace.ErrorCount != 1 || res.Trace.RootService != "gateway" || len(res.Spans) != 3 ||
		res.Spans[0].ParentSpanID != "" || !slices.Equal(res.Trace.Keys["customer_id"], []string{"123"}) {
		t.Fatalf("trace response %+v", res)
	}
	get(t, srv, "/api/v1/traces/abc3", http.StatusNotFound, nil)
	get(t, srv, "/api/v1/traces/not-hex", http.StatusBadRequest, nil)
}

func TestJaegerServicesAndOperations(t *testing.T) {
	srv := serveCounted(t, shopTraces())
	var services struct{ Data []string }
	get(t, srv, "/api/services", http.StatusOK, &services)
	if want := []string{"checkout", "gateway", "inventory-service"}; !slices.Equal(services.Data, want) {
		t.Fatalf("services %v, want %v", services.Data, want)
	}
	var ops struct{ Data []string }
	get(t, srv, "/api/services/gateway/operations", http.StatusOK, &ops)
	if !slices.Equal(ops.Data, []string{"GET /checkout"}) {
		t.Fatalf("operations %v", ops.Data)
	}
	var typed struct{ Data []jaegerOperation }
	get(t, srv, "/api/operations?service=checkout&spanKind=client", http.StatusOK, &typed)
	if len(typed.Data) != 1 || typed.Data[0] != (jaegerOperation{Name: "POST /reserve", SpanKind: "client"}) {
		t.Fatalf("typed operations %+v", typed.Data)
	}
}

func TestJaegerSearchAndTrace(t *testing.T) {
	srv := newServer(t)
	var res struct{ Data []JaegerTrace }
	tags := url.QueryEscape(`{"customer_id":"123"}`)
	get(t, srv, "/api/traces?service=inventory-service&tags="+tags+"&minDuration=500ms&lookback=1h&limit=20", http.StatusOK, &res)
	if len(res.Data) != 1 || res.Data[0].TraceID != slowTrace || len(res.Data[0].Spans) != 3 {
		t.Fatalf("search returned %+v", res.Data)
	}
	tr := res.Data[0]
	inv := tr.Spans[2]
	if inv.OperationName != "reserve" || len(inv.References) != 1 || inv.References[0].RefType != "CHILD_OF" ||
		inv.References[0].SpanID != "0000000000000002" || tr.Processes[inv.ProcessID].ServiceName != "inventory-service" {
		t.Fatalf("span %+v, processes %+v", inv, tr.Processes)
	}
	tagsOf := map[string]any{}
	for _, kv := range inv.Tags {
		tagsOf[kv.Key] = kv.Value
	}
	if tagsOf["error"] != true || tagsOf["span.kind"] != "server" || tagsOf["otel.status_code"] != "ERROR" || tagsOf["http.response.status_code"] != float64(200) {
		t.Fatalf("tags %v", tagsOf)
	}
	if len(inv.Logs) != 1 || inv.Logs[0].Fields[0].Value != "retry" {
		t.Fatalf("logs %+v", inv.Logs)
	}
	for _, q := range []string{"service=gateway&maxDuration=100ms&lookback=1h", "service=gateway&tag=customer_id:456"} {
		get(t, srv, "/api/traces?"+q, http.StatusOK, &res)
		if len(res.Data) != 1 || res.Data[0].TraceID != fastTrace {
			t.Fatalf("%s: got %d traces", q, len(res.Data))
		}
	}
	get(t, srv, "/api/traces?service=gateway&start="+fmt.Sprint(now.Add(-15*time.Minute).UnixMicro())+"&end="+fmt.Sprint(now.UnixMicro()), http.StatusOK, &res)
	if len(res.Data) != 1 || res.Data[0].TraceID != slowTrace {
		t.Fatalf("time window: got %d traces", len(res.Data))
	}
	get(t, srv, "/api/traces/"+strings.TrimLeft(fastTrace, "0"), http.StatusOK, &res)
	if len(res.Data) != 1 || res.Data[0].TraceID != fastTrace {
		t.Fatalf("trace by short id: %+v", res.Data)
	}
	for _, bad := range []string{"tags=notjson", "minDuration=fast", "tags=" + url.QueryEscape(`{"a b":"c"}`), "limit=ten", "lookback=ages"} {
		get(t, srv, "/api/traces?service=gateway&"+bad, http.StatusBadRequest, nil)
	}
	get(t, srv, "/api/traces/0000000000000000000000000000dead", http.StatusNotFound, nil)
}

func TestWebPage(t *testing.T) {
	srv := newServer(t)
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `src="app.js"`) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("web page: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
