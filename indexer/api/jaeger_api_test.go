package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
)

const (
	replicaTrace = "0000000000000000000000000000bb01" // gateway -> checkout (pod-a) -> checkout (pod-b) -> inventory client+server
	plainTrace   = "0000000000000000000000000000bb02" // one gateway span
)

// replicaSpans builds the traces of the Jaeger API tests: replicaTrace has two replicas of checkout, an
// operation that is both server and client, an error span with an event, and attributes named like
// built-in fields (name, event, status); plainTrace is one server span.
func replicaSpans() [][]document.Span {
	start := now.Add(-5 * time.Minute).UnixMicro()
	mk := func(trace string, n, parent int, service string, res map[string]any, name, kind string) document.Span {
		s := document.Span{TraceID: trace, SpanID: fmt.Sprintf("%016x", n), Name: name, Kind: kind, Service: service,
			Start: start + int64(n)*100, End: start + int64(n)*100 + 50, Duration: 50, StatusCode: "unset",
			Resource: map[string]any{"service.name": service}}
		for k, v := range res {
			s.Resource[k] = v
		}
		if parent > 0 {
			s.ParentSpanID = fmt.Sprintf("%016x", parent)
		}
		s.ID = trace + "-" + s.SpanID
		return s
	}
	r := []document.Span{
		mk(replicaTrace, 1, 0, "gateway", map[string]any{"host.name": "h1"}, "GET /checkout", "server"),
		mk(replicaTrace, 2, 1, "checkout", map[string]any{"k8s.pod.name": "pod-a"}, "checkout", "server"),
		mk(replicaTrace, 3, 2, "checkout", map[string]any{"k8s.pod.name": "pod-b"}, "checkout", "server"),
		mk(replicaTrace, 4, 3, "inventory", nil, "GET /stock", "client"),
		mk(replicaTrace, 5, 4, "inventory", nil, "GET /stock", "server"),
		mk(replicaTrace, 6, 5, "inventory", nil, "lookup", "unspecified"),
	}
	r[4].StatusCode, r[4].Error, r[4].StatusMessage = "error", true, "connection reset"
	r[4].Attr = map[string]any{"name": "custom", "event": "attr-event", "status": "s1"}
	r[4].Events = []document.Event{{Name: "retry", Time: r[4].Start + 1, Attr: map[string]any{"attempt": int64(2)}}}
	p := []document.Span{mk(plainTrace, 1, 0, "gateway", map[string]any{"host.name": "h2"}, "GET /checkout", "server")}
	return [][]document.Span{r, p}
}

// rawGet returns the status and body of GET path.
func rawGet(t *testing.T, srv *httptest.Server, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%v in %s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want: %v in %s", err, want)
	}
	return reflect.DeepEqual(g, w)
}

// TestJaegerListsAndErrors checks whole answers of the Jaeger routes that list services and operations
// and the 400s of the search, as jaeger-query answers them.
func TestJaegerListsAndErrors(t *testing.T) {
	for _, st := range listStores { // the lists are facet counts
		srv, empty := st.serve(t, replicaSpans()), st.serve(t, nil)
		bad := func(msg string) string {
			b, _ := json.Marshal(msg)
			return `{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":400,"msg":` + string(b) + `}]}`
		}
		tests := []struct {
			srv  *httptest.Server
			path string
			code int
			want string
		}{
			{srv, "/api/services", 200, `{"data":["checkout","gateway","inventory"],"total":3,"limit":0,"offset":0,"errors":null}`},
			{empty, "/api/services", 200, `{"data":[],"total":0,"limit":0,"offset":0,"errors":null}`},
			{srv, "/api/services/inventory/operations", 200, `{"data":["GET /stock","lookup"],"total":2,"limit":0,"offset":0,"errors":null}`},
			{srv, "/api/services/nobody/operations", 200, `{"data":[],"total":0,"limit":0,"offset":0,"errors":null}`},
			{srv, "/api/operations?service=inventory", 200, `{"data":[{"name":"GET /stock","spanKind":"client"},{"name":"GET /stock","spanKind":"server"},{"name":"lookup","spanKind":""}],"total":3,"limit":0,"offset":0,"errors":null}`},
			{srv, "/api/operations?service=inventory&spanKind=server", 200, `{"data":[{"name":"GET /stock","spanKind":"server"}],"total":1,"limit":0,"offset":0,"errors":null}`},
			{srv, "/api/operations?service=checkout", 200, `{"data":[{"name":"checkout","spanKind":"server"}],"total":1,"limit":0,"offset":0,"errors":null}`},
			{srv, "/api/operations?service=nobody", 200, `{"data":[],"total":0,"limit":0,"offset":0,"errors":null}`},
			{srv, "/api/operations", 400, bad("parameter 'service' is required")},
			{srv, "/api/traces?operation=checkout", 400, bad("parameter 'service' is required")},
			{srv, "/api/traces?service=gateway&minDuration=2s&maxDuration=1s", 400, bad("'maxDuration' should be greater than 'minDuration'")},
			{srv, "/api/traces?service=gateway&minDuration=fast", 400, bad(`unable to parse param 'minDuration': time: invalid duration "fast"`)},
			{srv, "/api/traces?service=gateway&start=now", 400, bad(`unable to parse param 'start': strconv.ParseInt: parsing "now": invalid syntax`)},
			{srv, "/api/traces?service=gateway&limit=many", 400, bad(`strconv.ParseInt: parsing "many": invalid syntax`)},
			{srv, "/api/traces?service=gateway&tag=k", 400, bad("malformed 'tag' parameter, expecting key:value, received: k")},
			{srv, "/api/traces?traceID=zz", 400, bad(`cannot parse traceID param: "zz" is not a trace id of up to 32 hexadecimal digits`)},
			{srv, "/api/traces/" + "0000000000000000000000000000dead", 404, `{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":404,"msg":"trace not found"}]}`},
		}
		for _, tt := range tests {
			code, body := rawGet(t, tt.srv, tt.path)
			if code != tt.code || !sameJSON(t, body, tt.want) {
				t.Errorf("%s: GET %s: %d %s\nwant %d %s", st.name, tt.path, code, body, tt.code, tt.want)
			}
		}
	}
}

// TestJaegerTraceIDLookup checks /api/traces?traceID=...: the traces asked for in the order asked, the
// other parameters ignored, an error entry for an id not found.
func TestJaegerTraceIDLookup(t *testing.T) {
	srv := serveTraces(t, replicaSpans())
	var res struct {
		Data   []JaegerTrace
		Total  int
		Errors []jaegerError
	}
	get(t, srv, "/api/traces?traceID="+plainTrace+"&traceID=BB01&traceID=dead&traceID=bb02&service=nobody&tags="+url.QueryEscape(`{"x":"y"}`), http.StatusOK, &res)
	var ids []string
	var spans []int
	for _, tr := range res.Data {
		ids = append(ids, tr.TraceID)
		spans = append(spans, len(tr.Spans))
	}
	if want := []string{plainTrace, replicaTrace}; !slices.Equal(ids, want) || res.Total != 2 {
		t.Errorf("traces %v (total %d), want %v", ids, res.Total, want)
	}
	if want := []int{1, 6}; !slices.Equal(spans, want) {
		t.Errorf("span counts %v, want %v", spans, want)
	}
	if want := []jaegerError{{Message: "trace not found", TraceID: "0000000000000000000000000000dead"}}; !reflect.DeepEqual(res.Errors, want) {
		t.Errorf("errors %+v, want %+v", res.Errors, want)
	}
}

// TestJaegerTagSearch checks that every tag the trace view shows finds its trace through the tags
// parameter (JSON and logfmt), and that built-in field names used as tag keys reach the attribute.
func TestJaegerTagSearch(t *testing.T) {
	srv := serveTraces(t, replicaSpans())
	both := []string{replicaTrace, plainTrace}
	tests := []struct {
		service, tags string
		want          []string
	}{
		{"inventory", `{"span.kind":"client"}`, []string{replicaTrace}},
		{"gateway", `{"span.kind":"client"}`, nil},
		{"gateway", `{"span.kind":"server"}`, both},
		{"inventory", `{"span.kind":""}`, []string{replicaTrace}}, // unspecified
		{"inventory", `{"otel.status_code":"ERROR"}`, []string{replicaTrace}},
		{"inventory", `{"otel.status_description":"connection reset"}`, []string{replicaTrace}},
		{"inventory", `{"error":"true"}`, []string{replicaTrace}},
		{"inventory", `{"error":"true","span.kind":"server"}`, []string{replicaTrace}},
		{"inventory", `{"error":"true","span.kind":"client"}`, nil}, // one span must match every tag
		{"gateway", `{"error":"true"}`, nil},
		{"gateway", `{"host.name":"h2"}`, []string{plainTrace}},
		{"checkout", `{"k8s.pod.name":"pod-b"}`, []string{replicaTrace}},
		{"checkout", `{"k8s.pod.name":"pod-c"}`, nil},
		{"gateway", `{"service.name":"gateway"}`, both},
		{"inventory", `{"event":"retry"}`, []string{replicaTrace}},      // the event name every log shows
		{"inventory", `{"event":"attr-event"}`, []string{replicaTrace}}, // the attribute named event
		{"inventory", `{"name":"custom"}`, []string{replicaTrace}},      // the attribute, not the span name
		{"gateway", `{"name":"GET /checkout"}`, nil},                    // the span name is no tag
		{"inventory", `{"status":"s1"}`, []string{replicaTrace}},
		{"inventory", `{"status":"error"}`, nil}, // the attribute, not status_code
		{"inventory", `error=true span.kind=server`, []string{replicaTrace}},
		{"checkout", `k8s.pod.name="pod-a"`, []string{replicaTrace}},
	}
	for _, tt := range tests {
		var res struct{ Data []JaegerTrace }
		get(t, srv, "/api/traces?service="+tt.service+"&tags="+url.QueryEscape(tt.tags), http.StatusOK, &res)
		var ids []string
		for _, tr := range res.Data {
			ids = append(ids, tr.TraceID)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, tt.want) {
			t.Errorf("service=%s tags=%s: traces %v, want %v", tt.service, tt.tags, ids, tt.want)
		}
	}
}

// TestToJaegerProcessPerResource checks that each distinct resource is a process of its own: the two
// replicas of checkout are p2 and p3, and each span points at its own.
func TestToJaegerProcessPerResource(t *testing.T) {
	tr := ToJaeger(replicaTrace, replicaSpans()[0])
	kv := func(k, v string) JaegerKeyValue { return JaegerKeyValue{Key: k, Type: "string", Value: v} }
	wantProcesses := map[string]JaegerProcess{
		"p1": {ServiceName: "gateway", Tags: []JaegerKeyValue{kv("host.name", "h1"), kv("service.name", "gateway")}},
		"p2": {ServiceName: "checkout", Tags: []JaegerKeyValue{kv("k8s.pod.name", "pod-a"), kv("service.name", "checkout")}},
		"p3": {ServiceName: "checkout", Tags: []JaegerKeyValue{kv("k8s.pod.name", "pod-b"), kv("service.name", "checkout")}},
		"p4": {ServiceName: "inventory", Tags: []JaegerKeyValue{kv("service.name", "inventory")}},
	}
	if !reflect.DeepEqual(tr.Processes, wantProcesses) {
		t.Errorf("processes %+v\nwant %+v", tr.Processes, wantProcesses)
	}
	var pids []string
	for _, sp := range tr.Spans {
		pids = append(pids, sp.ProcessID)
	}
	if want := []string{"p1", "p2", "p3", "p4", "p4", "p4"}; !slices.Equal(pids, want) {
		t.Errorf("process ids %v, want %v", pids, want)
	}
}
