package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/querysvc"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// The Jaeger query API (the JSON routes of jaeger-query that the Jaeger UI and Grafana's Jaeger data source
// call), answered from meshtrace documents. This file parses the requests and renders the Jaeger JSON model;
// the store is read through querysvc.Service (Services, Operations, FindTraces, TraceSpans).

// jaegerResponse is jaeger-query's envelope.
type jaegerResponse struct {
	Data   any           `json:"data"`
	Total  int           `json:"total"`
	Limit  int           `json:"limit"`
	Offset int           `json:"offset"`
	Errors []jaegerError `json:"errors"`
}

type jaegerError struct {
	Code    int    `json:"code"`
	Message string `json:"msg"`
}

// JaegerTrace is a trace in the Jaeger UI model.
type JaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []JaegerSpan             `json:"spans"`
	Processes map[string]JaegerProcess `json:"processes"`
	Warnings  []string                 `json:"warnings"`
}

// JaegerSpan is a span in the Jaeger UI model (times in microseconds).
type JaegerSpan struct {
	TraceID       string            `json:"traceID"`
	SpanID        string            `json:"spanID"`
	OperationName string            `json:"operationName"`
	References    []JaegerReference `json:"references"`
	StartTime     int64             `json:"startTime"`
	Duration      int64             `json:"duration"`
	Tags          []JaegerKeyValue  `json:"tags"`
	Logs          []JaegerLog       `json:"logs"`
	ProcessID     string            `json:"processID"`
	Warnings      []string          `json:"warnings"`
}

// JaegerReference links a span to its parent (CHILD_OF) or to a linked span (FOLLOWS_FROM).
type JaegerReference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// JaegerKeyValue is a typed tag.
type JaegerKeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"` // string, bool, int64, float64
	Value any    `json:"value"`
}

// JaegerLog is a span event.
type JaegerLog struct {
	Timestamp int64            `json:"timestamp"`
	Fields    []JaegerKeyValue `json:"fields"`
}

// JaegerProcess is the service a span ran in.
type JaegerProcess struct {
	ServiceName string           `json:"serviceName"`
	Tags        []JaegerKeyValue `json:"tags"`
}

type jaegerOperation struct {
	Name     string `json:"name"`
	SpanKind string `json:"spanKind"`
}

func writeJaeger(w http.ResponseWriter, code int, data any, total int) {
	resp := jaegerResponse{Data: data, Total: total}
	if code != http.StatusOK {
		resp.Data = nil
		resp.Errors = []jaegerError{{Code: code, Message: fmt.Sprint(data)}}
	}
	writeJSON(w, code, resp)
}

// jaegerStoreError answers a failed store call of a Jaeger route (see failure) in jaeger-query's envelope.
func (s *Server) jaegerStoreError(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := s.failure(w, r, err)
	writeJaeger(w, code, msg, 0)
}

func (s *Server) jaegerServices(w http.ResponseWriter, r *http.Request) {
	services, err := s.svc.Services(r.Context())
	if err != nil {
		s.jaegerStoreError(w, r, err)
		return
	}
	writeJaeger(w, http.StatusOK, services, len(services))
}

// jaegerOperations serves both /api/services/{service}/operations (a list of names) and
// /api/operations?service=S&spanKind=K (a list of {name, spanKind}).
func (s *Server) jaegerOperations(w http.ResponseWriter, r *http.Request) {
	service := r.PathValue("service")
	legacy := service != ""
	if !legacy {
		service = r.URL.Query().Get("service")
	}
	found, err := s.svc.Operations(r.Context(), querysvc.OperationQuery{Service: service, SpanKind: r.URL.Query().Get("spanKind")})
	if err != nil {
		s.jaegerStoreError(w, r, err)
		return
	}
	if legacy {
		names := make([]string, 0, len(found))
		for _, op := range found {
			names = append(names, op.Name)
		}
		names = slices.Compact(names) // sorted by name
		writeJaeger(w, http.StatusOK, names, len(names))
		return
	}
	ops := make([]jaegerOperation, 0, len(found))
	for _, op := range found {
		ops = append(ops, jaegerOperation{Name: op.Name, SpanKind: op.SpanKind})
	}
	writeJaeger(w, http.StatusOK, ops, len(ops))
}

// JaegerQuery turns jaeger-query search parameters into a compiled meshtrace query over spans, returning
// traces: service, operation and tags become equality conditions, min/maxDuration bound span durations,
// start/end (unix microseconds) or lookback bound span start times.
func JaegerQuery(params map[string][]string, now time.Time) (*query.Query, int, error) {
	get := func(k string) string {
		if v := params[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	var terms []string
	if v := get("service"); v != "" {
		terms = append(terms, "service="+quote(v))
	}
	if v := get("operation"); v != "" {
		terms = append(terms, "name="+quote(v))
	}
	tags := map[string]string{}
	if v := get("tags"); v != "" {
		if err := json.Unmarshal([]byte(v), &tags); err != nil {
			return nil, 0, fmt.Errorf("tags must be a JSON object of strings: %v", err)
		}
	}
	for _, kv := range params["tag"] { // older form: tag=key:value
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			return nil, 0, fmt.Errorf("tag %q must be key:value", kv)
		}
		tags[k] = v
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !plainField(k) {
			return nil, 0, fmt.Errorf("tag key %q: only letters, digits, '.', '_' and '-' are supported", k)
		}
		terms = append(terms, k+"="+quote(tags[k]))
	}
	q, err := query.Compile(strings.Join(terms, " "), now)
	if err != nil {
		return nil, 0, err
	}
	spanTerms := []query.Expr{q.Span}
	for _, d := range []struct {
		param string
		op    query.Op
	}{{"minDuration", query.Ge}, {"maxDuration", query.Le}} {
		if v := get(d.param); v != "" {
			dur, err := time.ParseDuration(v)
			if err != nil {
				return nil, 0, fmt.Errorf("%s: %v", d.param, err)
			}
			spanTerms = append(spanTerms, &query.Compare{Field: "duration", Op: d.op, Value: query.Int(dur.Microseconds())})
		}
	}
	q.Span = query.Conjoin(spanTerms...)
	if v := get("start"); v != "" {
		if q.Since, err = strconv.ParseInt(v, 10, 64); err != nil {
			return nil, 0, fmt.Errorf("start must be unix microseconds: %v", err)
		}
	}
	if v := get("end"); v != "" {
		if q.Until, err = strconv.ParseInt(v, 10, 64); err != nil {
			return nil, 0, fmt.Errorf("end must be unix microseconds: %v", err)
		}
	}
	if v := get("lookback"); q.Since == 0 && v != "" && v != "custom" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, 0, fmt.Errorf("lookback: %v", err)
		}
		q.Since = now.Add(-d).UnixMicro()
	}
	q.Target = query.TraceScope
	limit := 20
	if v := get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit <= 0 {
			return nil, 0, fmt.Errorf("limit must be a positive integer")
		}
		limit = min(limit, store.MaxLimit)
	}
	return q, limit, nil
}

func (s *Server) jaegerSearch(w http.ResponseWriter, r *http.Request) {
	q, limit, err := JaegerQuery(r.URL.Query(), s.now())
	if err != nil {
		writeJaeger(w, http.StatusBadRequest, err.Error(), 0)
		return
	}
	found, err := s.svc.FindTraces(r.Context(), q, limit)
	if err != nil {
		s.jaegerStoreError(w, r, err)
		return
	}
	traces := make([]JaegerTrace, 0, len(found))
	for _, t := range found {
		traces = append(traces, ToJaeger(t.Trace.TraceID, t.Spans))
	}
	writeJaeger(w, http.StatusOK, traces, len(traces))
}

func (s *Server) jaegerTrace(w http.ResponseWriter, r *http.Request) {
	id, ok := traceID(r.PathValue("id"))
	if !ok {
		writeJaeger(w, http.StatusBadRequest, "trace id must be up to 32 hexadecimal digits", 0)
		return
	}
	spans, err := s.svc.TraceSpans(r.Context(), id)
	if err != nil {
		s.jaegerStoreError(w, r, err)
		return
	}
	if len(spans) == 0 {
		writeJaeger(w, http.StatusNotFound, "trace not found", 0)
		return
	}
	writeJaeger(w, http.StatusOK, []JaegerTrace{ToJaeger(id, spans)}, 1)
}

// ToJaeger converts the spans of one trace to the Jaeger model; each service is one process, carrying the
// resource attributes of its first span.
func ToJaeger(traceID string, spans []document.Span) JaegerTrace {
	t := JaegerTrace{TraceID: traceID, Spans: make([]JaegerSpan, 0, len(spans)), Processes: map[string]JaegerProcess{}}
	pids := map[string]string{}
	for _, sp := range spans {
		pid, ok := pids[sp.Service]
		if !ok {
			pid = "p" + strconv.Itoa(len(pids)+1)
			pids[sp.Service] = pid
			t.Processes[pid] = JaegerProcess{ServiceName: sp.Service, Tags: jaegerTags(sp.Resource)}
		}
		js := JaegerSpan{TraceID: sp.TraceID, SpanID: sp.SpanID, OperationName: sp.Name, StartTime: sp.Start, Duration: sp.Duration,
			ProcessID: pid, References: []JaegerReference{}, Logs: []JaegerLog{}, Tags: jaegerTags(sp.Attr)}
		if sp.ParentSpanID != "" {
			js.References = append(js.References, JaegerReference{RefType: "CHILD_OF", TraceID: sp.TraceID, SpanID: sp.ParentSpanID})
		}
		for _, l := range sp.Links {
			js.References = append(js.References, JaegerReference{RefType: "FOLLOWS_FROM", TraceID: l.TraceID, SpanID: l.SpanID})
		}
		if sp.Kind != "" && sp.Kind != "unspecified" {
			js.Tags = append(js.Tags, JaegerKeyValue{Key: "span.kind", Type: "string", Value: sp.Kind})
		}
		if sp.StatusCode != "unset" && sp.StatusCode != "" {
			js.Tags = append(js.Tags, JaegerKeyValue{Key: "otel.status_code", Type: "string", Value: strings.ToUpper(sp.StatusCode)})
		}
		if sp.StatusMessage != "" {
			js.Tags = append(js.Tags, JaegerKeyValue{Key: "otel.status_description", Type: "string", Value: sp.StatusMessage})
		}
		if sp.Error {
			js.Tags = append(js.Tags, JaegerKeyValue{Key: "error", Type: "bool", Value: true})
		}
		if sp.Scope != "" {
			js.Tags = append(js.Tags, JaegerKeyValue{Key: "otel.scope.name", Type: "string", Value: sp.Scope})
		}
		js.Tags = append(js.Tags, overflowTags(&sp)...)
		for _, e := range sp.Events {
			fields := append([]JaegerKeyValue{{Key: "event", Type: "string", Value: e.Name}}, jaegerTags(e.Attr)...)
			js.Logs = append(js.Logs, JaegerLog{Timestamp: e.Time, Fields: fields})
		}
		t.Spans = append(t.Spans, js)
	}
	return t
}

// jaegerTags converts an attribute map to typed tags, sorted by key; lists and maps become JSON strings.
func jaegerTags(attrs map[string]any) []JaegerKeyValue {
	out := make([]JaegerKeyValue, 0, len(attrs))
	for k, v := range attrs {
		kv := JaegerKeyValue{Key: k, Value: v}
		switch x := v.(type) {
		case string:
			kv.Type = "string"
		case bool:
			kv.Type = "bool"
		case int64, int:
			kv.Type = "int64"
		case float64:
			kv.Type = "float64"
			if x == float64(int64(x)) {
				kv.Type, kv.Value = "int64", int64(x) // documents read back from JSON hold integers as float64
			}
		default:
			b, _ := json.Marshal(x)
			kv.Type, kv.Value = "string", string(b)
		}
		out = append(out, kv)
	}
	slices.SortFunc(out, func(a, b JaegerKeyValue) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// overflowTags shows the attributes kept out of the index (document.Span.Overflow, see package fieldcap) as
// span tags: span attributes under their own key, the others under their overflow key ("resource.k",
// "events[0].attr.k"); an overflow that does not decode is shown as is, as "meshtrace.overflow".
func overflowTags(sp *document.Span) []JaegerKeyValue {
	over, err := sp.OverflowAttributes()
	if err != nil {
		return []JaegerKeyValue{{Key: "meshtrace.overflow", Type: "string", Value: sp.Overflow}}
	}
	tags := make(map[string]any, len(over))
	for k, v := range over {
		tags[strings.TrimPrefix(k, document.AttrPath+".")] = v
	}
	return jaegerTags(tags)
}

// quote writes a value as a query-language string literal.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func plainField(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
