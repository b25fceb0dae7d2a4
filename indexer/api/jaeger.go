package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/querysvc"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// The Jaeger query API (the JSON routes of jaeger-query that the Jaeger UI and Grafana's Jaeger data source
// call), answered from meshtrace documents. This file serves the routes and renders the Jaeger JSON model
// (jaeger_query.go turns a search's parameters into a query);
// the store is read through querysvc.Service (Services, Operations, FindTraces, TraceSpans). The services and
// operations lists are facet counts (store.Store.Facet), one search each however many spans there are.

// jaegerResponse is jaeger-query's envelope.
type jaegerResponse struct {
	Data   any           `json:"data"`
	Total  int           `json:"total"`
	Limit  int           `json:"limit"`
	Offset int           `json:"offset"`
	Errors []jaegerError `json:"errors"`
}

// jaegerError is jaeger-query's structuredError: a request error (with its HTTP status as code) or, in a
// successful answer of a lookup by trace ids, a trace not found (with its id).
type jaegerError struct {
	Code    int    `json:"code,omitempty"`
	Message string `json:"msg"`
	TraceID string `json:"traceID,omitempty"`
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
	services, err := s.services(r)
	if err != nil {
		s.jaegerStoreError(w, r, err)
		return
	}
	writeJaeger(w, http.StatusOK, services, len(services)) // [], not null, as jaeger-query
}

// services lists every service (querysvc.Service.Services over all spans: one facet search, not a scan) for
// the Jaeger routes, which have no way to say a list is incomplete: past store.MaxFacetValues services the
// list holds the busiest ones and the truncation is logged as a warning.
func (s *Server) services(r *http.Request) ([]string, error) {
	services, truncated, err := s.svc.Services(r.Context(), querysvc.Window{})
	if truncated {
		s.log.Warn("services list truncated: the store holds at least as many services as one list can hold; the ones with the most spans are listed",
			"path", r.URL.Path, "listed", len(services), "max", store.MaxFacetValues)
	}
	return services, err
}

// operations lists the operations oq selects (querysvc.Service.Operations) for the Jaeger routes, logging a
// truncated list as services does.
func (s *Server) operations(r *http.Request, oq querysvc.OperationQuery) ([]querysvc.Operation, error) {
	ops, truncated, err := s.svc.Operations(r.Context(), oq)
	if truncated {
		s.log.Warn("operations list truncated: a span kind has at least as many operations as one list can hold; the most frequent are listed",
			"path", r.URL.Path, "service", oq.Service, "listed", len(ops), "max per kind", store.MaxFacetValues)
	}
	return ops, err
}

// jaegerOperations serves both /api/services/{service}/operations (the distinct operation names, sorted)
// and /api/operations?service=S[&spanKind=K] (one {name, spanKind} per distinct name and kind, spanKind ""
// for spans of unspecified kind, as Jaeger shows them; service is required, as in jaeger-query).
func (s *Server) jaegerOperations(w http.ResponseWriter, r *http.Request) {
	service := r.PathValue("service")
	legacy := service != ""
	if !legacy {
		if service = r.URL.Query().Get("service"); service == "" {
			writeJaeger(w, http.StatusBadRequest, errJaegerServiceRequired.Error(), 0)
			return
		}
	}
	kind := r.URL.Query().Get("spanKind")
	if legacy {
		kind = "" // every kind, as jaeger-query's legacy route
	}
	found, err := s.operations(r, querysvc.OperationQuery{Service: service, SpanKind: kind})
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
		if slices.Contains(jaegerUnspecifiedSpanKinds, op.SpanKind) {
			op.SpanKind = ""
		}
		ops = append(ops, jaegerOperation{Name: op.Name, SpanKind: op.SpanKind})
	}
	writeJaeger(w, http.StatusOK, ops, len(ops))
}

// DefaultJaegerLimit is the number of traces a Jaeger search returns when it sends no limit (jaeger-query's
// defaultQueryLimit).
const DefaultJaegerLimit = 100

// Errors of the Jaeger routes, worded as jaeger-query words them.
var (
	errJaegerServiceRequired = errors.New("parameter 'service' is required")
	errJaegerMaxBelowMin     = errors.New("'maxDuration' should be greater than 'minDuration'")
)

// errJaegerTraceNotFound is jaeger's spanstore.ErrTraceNotFound message.
const errJaegerTraceNotFound = "trace not found"

// jaegerTraceIDsMax bounds the traceID parameters of one search (each is a trace read back whole).
const jaegerTraceIDsMax = store.MaxLimit

// jaegerUnspecifiedSpanKinds are the kinds of a span of unspecified kind: Jaeger's "" and the documents'.
var jaegerUnspecifiedSpanKinds = []string{"", "unspecified"}

func (s *Server) jaegerSearch(w http.ResponseWriter, r *http.Request) {
	js, err := parseJaegerSearch(r.URL.Query(), s.now())
	if err != nil {
		writeJaeger(w, http.StatusBadRequest, err.Error(), 0)
		return
	}
	if js.TraceIDs != nil {
		s.jaegerLookup(w, r, js.TraceIDs)
		return
	}
	found, err := s.svc.FindTraces(r.Context(), js.Query, js.Limit)
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

// jaegerLookup answers a search by trace ids (the Jaeger UI's Trace Compare and id lookup): the traces found,
// in the order asked, and an error entry {msg: "trace not found", traceID} for each id not found, as
// jaeger-query does.
func (s *Server) jaegerLookup(w http.ResponseWriter, r *http.Request, ids []string) {
	found, err := s.svc.TracesByID(r.Context(), ids)
	if err != nil {
		s.jaegerStoreError(w, r, err)
		return
	}
	traces := make([]JaegerTrace, 0, len(found))
	seen := map[string]bool{}
	for _, t := range found {
		id := t.Spans[0].TraceID // TracesByID returns only traces with spans
		traces = append(traces, ToJaeger(id, t.Spans))
		seen[id] = true
	}
	var missing []jaegerError
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			missing = append(missing, jaegerError{Message: errJaegerTraceNotFound, TraceID: id})
		}
	}
	writeJSON(w, http.StatusOK, jaegerResponse{Data: traces, Total: len(traces), Errors: missing})
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
		writeJaeger(w, http.StatusNotFound, errJaegerTraceNotFound, 0)
		return
	}
	writeJaeger(w, http.StatusOK, []JaegerTrace{ToJaeger(id, spans)}, 1)
}

// ToJaeger converts the spans of one trace to the Jaeger model. Each distinct resource (service name and
// resource attributes) is one process, numbered p1, p2, ... in order of first appearance: two replicas of a
// service (different host.name or k8s.pod.name) are two processes, so every span shows its own pod.
func ToJaeger(traceID string, spans []document.Span) JaegerTrace {
	t := JaegerTrace{TraceID: traceID, Spans: make([]JaegerSpan, 0, len(spans)), Processes: map[string]JaegerProcess{}}
	pids := map[string]string{}
	for _, sp := range spans {
		key := processKey(&sp)
		pid, ok := pids[key]
		if !ok {
			pid = "p" + strconv.Itoa(len(pids)+1)
			pids[key] = pid
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

// processKey identifies the resource of a span: its service and its resource attributes (encoding/json
// writes map keys sorted, so equal maps give equal keys).
func processKey(sp *document.Span) string {
	b, err := json.Marshal(sp.Resource)
	if err != nil {
		b = []byte(fmt.Sprint(sp.Resource))
	}
	return sp.Service + "\x00" + string(b)
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
