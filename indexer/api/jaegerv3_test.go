package api

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"

	"google.golang.org/protobuf/encoding/protojson"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// v3Window is the search window the Jaeger UI sends around the test spans: query.startTimeMin and
// query.startTimeMax as Date.toISOString writes them (milliseconds, Z).
func v3Window() url.Values {
	return url.Values{
		"query.startTimeMin": {now.Add(-time.Hour).UTC().Format("2006-01-02T15:04:05.000Z")},
		"query.startTimeMax": {now.Add(time.Hour).UTC().Format("2006-01-02T15:04:05.000Z")},
	}
}

// v3Search is the query string of a search as jaeger-ui's client.ts sends it, with extra parameters.
func v3Search(extra map[string]string) string {
	v := v3Window()
	for k, x := range extra {
		v.Set(k, x)
	}
	return v.Encode()
}

// v3Error builds the gateway's error body.
func v3ErrorBody(code int, msg string) string {
	b, _ := json.Marshal(v3Error{Error: v3ErrorDetails{HTTPCode: code, Message: msg}})
	return string(b)
}

// TestJaegerV3ListsAndErrors checks whole answers of the api_v3 routes that list services and operations,
// and the errors of every route, as the gateway answers them.
func TestJaegerV3ListsAndErrors(t *testing.T) {
	for _, st := range listStores { // the lists are facet counts
		srv, empty := st.serve(t, replicaSpans()), st.serve(t, nil)
		bad := func(msg string) string { return v3ErrorBody(400, msg) }
		tests := []struct {
			srv  *httptest.Server
			path string
			code int
			want string
		}{
			{srv, "/api/v3/services", 200, `{"services":["checkout","gateway","inventory"]}`},
			{empty, "/api/v3/services", 200, `{"services":[]}`},
			{srv, "/api/v3/operations?service=inventory", 200, `{"operations":[{"name":"GET /stock","spanKind":"client"},{"name":"GET /stock","spanKind":"server"},{"name":"lookup","spanKind":"internal"}]}`},
			{srv, "/api/v3/operations?service=inventory&spanKind=server", 200, `{"operations":[{"name":"GET /stock","spanKind":"server"}]}`},
			{srv, "/api/v3/operations?service=inventory&span_kind=client", 200, `{"operations":[{"name":"GET /stock","spanKind":"client"}]}`},
			{srv, "/api/v3/operations?service=" + url.QueryEscape("checkout"), 200, `{"operations":[{"name":"checkout","spanKind":"server"}]}`},
			{srv, "/api/v3/operations?service=nobody", 200, `{"operations":[]}`},
			{srv, "/api/v3/operations", 200, `{"operations":[{"name":"GET /checkout","spanKind":"server"},{"name":"GET /stock","spanKind":"client"},{"name":"GET /stock","spanKind":"server"},{"name":"checkout","spanKind":"server"},{"name":"lookup","spanKind":"internal"}]}`},

			{srv, "/api/v3/traces?query.serviceName=gateway", 400, bad("query.startTimeMin and query.startTimeMax are required")},
			{srv, "/api/v3/trace-summaries?query.serviceName=gateway", 400, bad("query.startTimeMin and query.startTimeMax are required")},
			{srv, "/api/v3/traces?" + v3Search(map[string]string{"query.startTimeMin": "yesterday"}), 400,
				bad(`malformed parameter query.startTimeMin: parsing time "yesterday" as "2006-01-02T15:04:05.999999999Z07:00": cannot parse "yesterday" as "2006"`)},
			{srv, "/api/v3/traces?query.start_time_min=2026-01-01T00:00:00Z&query.start_time_max=x", 400,
				bad(`malformed parameter query.start_time_max: parsing time "x" as "2006-01-02T15:04:05.999999999Z07:00": cannot parse "x" as "2006"`)},
			{srv, "/api/v3/traces?query.startTimeMin=2026-01-02T00:00:00Z&query.startTimeMax=2026-01-01T00:00:00Z", 400,
				bad("query.startTimeMin must be before query.startTimeMax")},
			{srv, "/api/v3/trace-summaries?" + v3Search(map[string]string{"query.searchDepth": "many"}), 400,
				bad(`malformed parameter query.searchDepth: strconv.Atoi: parsing "many": invalid syntax`)},
			{srv, "/api/v3/traces?" + v3Search(map[string]string{"query.num_traces": "x"}), 400,
				bad(`malformed parameter query.num_traces: strconv.Atoi: parsing "x": invalid syntax`)},
			{srv, "/api/v3/traces?" + v3Search(map[string]string{"query.durationMin": "fast"}), 400,
				bad(`malformed parameter query.durationMin: time: invalid duration "fast"`)},
			{srv, "/api/v3/traces?" + v3Search(map[string]string{"query.duration_max": "10"}), 400,
				bad(`malformed parameter query.duration_max: time: missing unit in duration "10"`)},
			{srv, "/api/v3/traces?" + v3Search(map[string]string{"query.attributes": `{"a":`}), 400,
				bad("malformed parameter query.attributes: unexpected end of JSON input")},
			{srv, "/api/v3/traces?" + v3Search(map[string]string{"query.rawTraces": "maybe"}), 400,
				bad(`malformed parameter query.rawTraces: strconv.ParseBool: parsing "maybe": invalid syntax`)},
			{srv, "/api/v3/traces/zz", 400, bad(`malformed parameter trace_id: "zz" is not a trace id (hex, or base64 of 8 or 16 bytes)`)},
			{srv, "/api/v3/traces/" + replicaTrace + "?startTime=soon", 400,
				bad(`malformed parameter startTime: parsing time "soon" as "2006-01-02T15:04:05.999999999Z07:00": cannot parse "soon" as "2006"`)},
			{srv, "/api/v3/traces/0000000000000000000000000000dead", 404, v3ErrorBody(404, "No traces found")},
			{srv, "/api/v3/traces?" + v3Search(map[string]string{"query.serviceName": "nobody"}), 404, v3ErrorBody(404, "No traces found")},
			{srv, "/api/v3/trace-summaries?" + v3Search(map[string]string{"query.serviceName": "nobody"}), 200, `{"summaries":[]}`},
		}
		for _, tt := range tests {
			code, body := rawGet(t, tt.srv, tt.path)
			if code != tt.code || !sameJSON(t, body, tt.want) {
				t.Errorf("%s: GET %s: %d %s\nwant %d %s", st.name, tt.path, code, body, tt.code, tt.want)
			}
		}
	}
}

// getOTLP fetches an api_v3 trace answer and decodes its result with protojson, after turning the hex ids
// of OTLP/JSON into the base64 protojson reads bytes as (failing on an id that is not hex).
func getOTLP(t *testing.T, srv *httptest.Server, path string) *tracepb.TracesData {
	t.Helper()
	code, body := rawGet(t, srv, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	var env map[string]any
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	if len(env) != 1 || env["result"] == nil {
		t.Fatalf("GET %s: want only result, got %s", path, body)
	}
	var fix func(v any)
	fix = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && (k == "traceId" || k == "spanId" || k == "parentSpanId") {
					b, err := hex.DecodeString(s)
					if err != nil || s != strings.ToLower(s) {
						t.Fatalf("%s %q is not lower-case hex", k, s)
					}
					x[k] = base64.StdEncoding.EncodeToString(b)
					continue
				}
				fix(e)
			}
		case []any:
			for _, e := range x {
				fix(e)
			}
		}
	}
	fix(env["result"])
	b, _ := json.Marshal(env["result"])
	var td tracepb.TracesData
	if err := protojson.Unmarshal(b, &td); err != nil {
		t.Fatalf("protojson: %v in %s", err, b)
	}
	return &td
}

// attrMap renders typed OTLP attributes as key=type:value, for comparing field by field.
func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			out[kv.Key] = "string:" + v.GetStringValue()
		case *commonpb.AnyValue_IntValue:
			out[kv.Key] = "int:" + strconvI(v.GetIntValue())
		case *commonpb.AnyValue_BoolValue:
			out[kv.Key] = "bool:" + map[bool]string{true: "true", false: "false"}[v.GetBoolValue()]
		case *commonpb.AnyValue_DoubleValue:
			out[kv.Key] = "double"
		default:
			out[kv.Key] = "other"
		}
	}
	return out
}

// TestJaegerV3Trace checks GET /api/v3/traces/{trace_id} field by field: one resource per distinct resource
// (the two checkout replicas apart), typed attributes, ids, parents, kinds, status, events and times; the
// id in hex (short or upper-case too) or base64, as the gateway takes it.
func TestJaegerV3Trace(t *testing.T) {
	srv := serveTraces(t, replicaSpans())
	want := replicaSpans()[0]
	raw, _ := hex.DecodeString(replicaTrace)
	for _, id := range []string{replicaTrace, "BB01", base64.StdEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw)} {
		td := getOTLP(t, srv, "/api/v3/traces/"+url.PathEscape(id))
		type res struct {
			attrs map[string]string
			spans []string
		}
		var got []res
		var spans []*tracepb.Span
		for _, rs := range td.ResourceSpans {
			r := res{attrs: attrMap(rs.GetResource().GetAttributes())}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					r.spans = append(r.spans, hex.EncodeToString(sp.SpanId))
					spans = append(spans, sp)
				}
			}
			got = append(got, r)
		}
		wantRes := []res{
			{map[string]string{"service.name": "string:gateway", "host.name": "string:h1"}, []string{want[0].SpanID}},
			{map[string]string{"service.name": "string:checkout", "k8s.pod.name": "string:pod-a"}, []string{want[1].SpanID}},
			{map[string]string{"service.name": "string:checkout", "k8s.pod.name": "string:pod-b"}, []string{want[2].SpanID}},
			{map[string]string{"service.name": "string:inventory"}, []string{want[3].SpanID, want[4].SpanID, want[5].SpanID}},
		}
		if len(got) != len(wantRes) {
			t.Fatalf("%s: %d resources, want %d: %+v", id, len(got), len(wantRes), got)
		}
		for i := range got {
			if !maps.Equal(got[i].attrs, wantRes[i].attrs) || !slices.Equal(got[i].spans, wantRes[i].spans) {
				t.Errorf("%s: resource %d = %+v, want %+v", id, i, got[i], wantRes[i])
			}
		}
		kinds := []tracepb.Span_SpanKind{tracepb.Span_SPAN_KIND_SERVER, tracepb.Span_SPAN_KIND_SERVER, tracepb.Span_SPAN_KIND_SERVER,
			tracepb.Span_SPAN_KIND_CLIENT, tracepb.Span_SPAN_KIND_SERVER, tracepb.Span_SPAN_KIND_UNSPECIFIED}
		for i, sp := range spans {
			w := want[i]
			if hex.EncodeToString(sp.TraceId) != replicaTrace || hex.EncodeToString(sp.ParentSpanId) != w.ParentSpanID || sp.Name != w.Name ||
				sp.Kind != kinds[i] || sp.StartTimeUnixNano != uint64(w.Start)*1000 || sp.EndTimeUnixNano != uint64(w.End)*1000 {
				t.Errorf("%s: span %d = %v, want %+v", id, i, sp, w)
			}
		}
		errSpan := spans[4]
		if errSpan.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || errSpan.Status.GetMessage() != "connection reset" {
			t.Errorf("status = %v", errSpan.Status)
		}
		if a := attrMap(errSpan.Attributes); !maps.Equal(a, map[string]string{"name": "string:custom", "event": "string:attr-event", "status": "string:s1"}) {
			t.Errorf("attributes = %v", a)
		}
		if len(errSpan.Events) != 1 || errSpan.Events[0].Name != "retry" || errSpan.Events[0].TimeUnixNano != uint64(want[4].Start+1)*1000 ||
			!maps.Equal(attrMap(errSpan.Events[0].Attributes), map[string]string{"attempt": "int:2"}) {
			t.Errorf("events = %v", errSpan.Events)
		}
		if spans[0].Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
			t.Errorf("unset status = %v", spans[0].Status)
		}
	}
}

// TestJaegerV3Search checks GET /api/v3/traces with the parameters of the api_v3 search: every trace found in
// one TracesData, each resource of each trace apart.
func TestJaegerV3Search(t *testing.T) {
	srv := serveTraces(t, replicaSpans())
	tests := []struct {
		name   string
		params map[string]string
		traces []string // the trace ids, in order of first appearance
		spans  int
	}{
		{"service", map[string]string{"query.serviceName": "checkout"}, []string{replicaTrace}, 6},
		{"deprecated names", map[string]string{"query.service_name": "inventory", "query.operation_name": "lookup"}, []string{replicaTrace}, 6},
		{"both traces", map[string]string{"query.serviceName": "gateway"}, []string{replicaTrace, plainTrace}, 7},
		{"no service", nil, []string{replicaTrace, plainTrace}, 7},
		{"search depth", map[string]string{"query.serviceName": "gateway", "query.searchDepth": "1"}, nil, 0}, // one of the two
		{"attributes", map[string]string{"query.attributes": `{"host.name":"h2"}`}, []string{plainTrace}, 1},
		{"duration", map[string]string{"query.serviceName": "gateway", "query.durationMin": "1ms"}, nil, -1},
	}
	for _, tt := range tests {
		path := "/api/v3/traces?" + v3Search(tt.params)
		if tt.spans < 0 {
			if code, body := rawGet(t, srv, path); code != http.StatusNotFound {
				t.Errorf("%s: %d %s, want 404", tt.name, code, body)
			}
			continue
		}
		td := getOTLP(t, srv, path)
		var traces []string
		spans := 0
		for _, rs := range td.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					spans++
					if id := hex.EncodeToString(sp.TraceId); !slices.Contains(traces, id) {
						traces = append(traces, id)
					}
				}
			}
		}
		if tt.traces == nil {
			if len(traces) != 1 {
				t.Errorf("%s: traces %v, want one", tt.name, traces)
			}
			continue
		}
		slices.Sort(traces)
		if !slices.Equal(traces, tt.traces) || spans != tt.spans {
			t.Errorf("%s: traces %v with %d spans, want %v with %d", tt.name, traces, spans, tt.traces, tt.spans)
		}
	}
}

// TestJaegerV3TraceSummaries checks /api/v3/trace-summaries as jaeger-ui's fetchTraceSummaries calls it
// and reads it: a summary per trace, field by field, times as decimal nanosecond strings.
func TestJaegerV3TraceSummaries(t *testing.T) {
	srv := serveTraces(t, replicaSpans())
	spans := replicaSpans()[0]
	// client.ts: query.serviceName, query.operationName, ISO start/end, query.searchDepth, durations, query.attributes.
	v := v3Window()
	v.Set("query.serviceName", "inventory")
	v.Set("query.operationName", "GET /stock")
	v.Set("query.searchDepth", "20")
	v.Set("query.durationMin", "10us")
	v.Set("query.durationMax", "1s")
	v.Set("query.attributes", `{"status":"s1"}`)
	code, body := rawGet(t, srv, "/api/v3/trace-summaries?"+v.Encode())
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	var got struct {
		Summaries []map[string]any `json:"summaries"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := `{"summaries":[{"traceId":"` + replicaTrace + `","rootServiceName":"gateway","rootOperationName":"GET /checkout",` +
		`"minStartTimeUnixNano":"` + strconvI(spans[0].Start*1000) + `","maxEndTimeUnixNano":"` + strconvI(spans[5].End*1000) + `",` +
		`"spanCount":6,"errorSpanCount":1,"services":[{"name":"checkout","spanCount":2},{"name":"gateway","spanCount":1},` +
		`{"name":"inventory","spanCount":3,"errorSpanCount":1}]}]}`
	if !sameJSON(t, body, want) {
		t.Errorf("got  %s\nwant %s", body, want)
	}

	// An orphan: a span whose parent is not in the trace; the earliest parentless span is the root.
	orphan := append([]document.Span(nil), spans[1:]...)
	s := Summarize(orphan)
	if s.OrphanSpanCount != 1 || s.RootServiceName != "" || s.SpanCount != 5 {
		t.Errorf("orphan summary = %+v", s)
	}
}

// TestV3Query checks the query V3Query makes of api_v3 search parameters: the span condition, the window
// and the search depth.
func TestV3Query(t *testing.T) {
	tmin, tmax := "2026-01-01T00:00:00Z", "2026-01-01T01:00:00.5Z"
	since, until := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro(), time.Date(2026, 1, 1, 1, 0, 0, 5e8, time.UTC).UnixMicro()
	tests := []struct {
		params map[string]string
		span   string
		limit  int
	}{
		{map[string]string{"query.serviceName": "a"}, "service = a", 100},
		{map[string]string{"query.serviceName": "a", "query.service_name": "b"}, "service = a", 100},
		{map[string]string{"query.service_name": "b", "query.operation_name": "GET /x"}, `service = b AND name = "GET /x"`, 100},
		{map[string]string{"query.serviceName": "a", "query.durationMin": "1ms", "query.durationMax": "2ms"}, "service = a AND duration >= 1000 AND duration <= 2000", 100},
		{map[string]string{"query.serviceName": "a", "query.duration_min": "1s"}, "service = a AND duration >= 1000000", 100},
		{map[string]string{"query.serviceName": "a", "query.searchDepth": "7"}, "service = a", 7},
		{map[string]string{"query.serviceName": "a", "query.search_depth": "8"}, "service = a", 8},
		{map[string]string{"query.serviceName": "a", "query.num_traces": "9"}, "service = a", 9},
		{map[string]string{"query.serviceName": "a", "query.searchDepth": "0"}, "service = a", 100},
		{map[string]string{"query.serviceName": "a", "query.searchDepth": "99999"}, "service = a", 1000},
		{map[string]string{"query.serviceName": "a", "query.attributes": `{"k8s.pod.name":"p","error":"true"}`},
			"service = a AND (error = true OR attr.error = true OR resource.error = true) AND (attr.k8s.pod.name = p OR resource.k8s.pod.name = p)", 100},
	}
	for _, tt := range tests {
		v := url.Values{"query.startTimeMin": {tmin}, "query.startTimeMax": {tmax}}
		for k, x := range tt.params {
			v.Set(k, x)
		}
		q, limit, err := V3Query(v, now)
		if err != nil {
			t.Errorf("%v: %v", tt.params, err)
			continue
		}
		if q.Span.String() != tt.span || q.Since != since || q.Until != until || limit != tt.limit {
			t.Errorf("%v: span %q since %d until %d limit %d, want %q %d %d %d", tt.params, q.Span, q.Since, q.Until, limit, tt.span, since, until, tt.limit)
		}
	}
}

// strconvI formats an integer in decimal.
func strconvI(n int64) string { return strconv.FormatInt(n, 10) }

// TestToOTLPValues checks the typing of attribute values (integers read back as float64 given back as
// intValue, lists, maps), the scope, links, and overflowed attributes shown on the span.
func TestToOTLPValues(t *testing.T) {
	sp := document.Span{TraceID: replicaTrace, SpanID: "0000000000000001", Name: "n", Kind: "consumer", Service: "svc",
		Start: 10, End: 20, StatusCode: "ok", Scope: "io.lib",
		Attr:     map[string]any{"i": float64(3), "f": 1.5, "b": true, "l": []any{"x", float64(2)}, "m": map[string]any{"k": "v"}},
		Links:    []document.Link{{TraceID: plainTrace, SpanID: "0000000000000002", Attr: map[string]any{"w": "z"}}},
		Overflow: `{"attr.big":"v1","resource.r":2}`}
	b, err := json.Marshal(map[string]OTLPTracesData{"result": ToOTLP([]document.Span{sp})})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"result":{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
		"scopeSpans":[{"scope":{"name":"io.lib"},"spans":[{"traceId":"` + replicaTrace + `","spanId":"0000000000000001","name":"n","kind":5,
		"startTimeUnixNano":"10000","endTimeUnixNano":"20000","status":{"code":1},
		"attributes":[{"key":"b","value":{"boolValue":true}},{"key":"big","value":{"stringValue":"v1"}},{"key":"f","value":{"doubleValue":1.5}},
			{"key":"i","value":{"intValue":"3"}},{"key":"l","value":{"arrayValue":{"values":[{"stringValue":"x"},{"intValue":"2"}]}}},
			{"key":"m","value":{"kvlistValue":{"values":[{"key":"k","value":{"stringValue":"v"}}]}}},{"key":"resource.r","value":{"intValue":"2"}}],
		"links":[{"traceId":"` + plainTrace + `","spanId":"0000000000000002","attributes":[{"key":"w","value":{"stringValue":"z"}}]}]}]}]}]}}`
	if !sameJSON(t, b, want) {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var td tracepb.TracesData // the same text is valid OTLP/JSON for protojson (the ids aside)
	res := strings.TrimSuffix(strings.TrimPrefix(string(b), `{"result":`), "}")
	for _, id := range []string{replicaTrace, plainTrace, "0000000000000001", "0000000000000002"} {
		raw, _ := hex.DecodeString(id)
		res = strings.ReplaceAll(res, `"`+id+`"`, `"`+base64.StdEncoding.EncodeToString(raw)+`"`)
	}
	if err := protojson.Unmarshal([]byte(res), &td); err != nil {
		t.Fatal(err)
	}
	if sp := td.ResourceSpans[0].ScopeSpans[0].Spans[0]; sp.Kind != tracepb.Span_SPAN_KIND_CONSUMER || len(sp.Attributes) != 7 || sp.Links[0].Attributes[0].Value.GetStringValue() != "z" {
		t.Errorf("protojson: %v", sp)
	}
}

// TestJaegerV3QueryTimeout checks that the api_v3 routes run under the time budget: 503, Retry-After, the
// gateway's error shape, and the store's context ended.
func TestJaegerV3QueryTimeout(t *testing.T) {
	const budget = 200 * time.Millisecond
	st := &blockingStore{calls: make(chan error, 16)}
	srv := httptest.NewServer(New(st, Config{QueryTimeout: budget, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	t.Cleanup(srv.Close)
	for _, path := range []string{
		"/api/v3/services",
		"/api/v3/operations?service=checkout",
		"/api/v3/traces?" + v3Search(map[string]string{"query.serviceName": "checkout"}),
		"/api/v3/traces/" + slowTrace,
		"/api/v3/trace-summaries?" + v3Search(nil),
	} {
		resp, body := fetch(t, srv.URL+path)
		var e v3Error
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || json.Unmarshal(body, &e) != nil ||
			e.Error.HTTPCode != http.StatusServiceUnavailable || !strings.Contains(e.Error.Message, "exceeded its time budget of 200ms") {
			t.Errorf("GET %s: %d Retry-After %q %s", path, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		select {
		case err := <-st.calls:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("GET %s: store saw %v", path, err)
			}
		default:
			t.Errorf("GET %s: the store call did not return", path)
		}
		for len(st.calls) > 0 {
			<-st.calls
		}
	}
}
