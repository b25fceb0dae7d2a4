package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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

// jaegerSearch is a parsed Jaeger search: a query and a limit, or the trace ids to look up (TraceIDs set:
// jaeger-query then ignores every other parameter once they all parse).
type jaegerSearch struct {
	Query    *query.Query
	Limit    int
	TraceIDs []string // normalised (see traceID)
}

// JaegerQuery turns jaeger-query search parameters into a compiled meshtrace query over spans, returning
// traces, and the number of traces to return (DefaultJaegerLimit when none is sent, at most
// store.MaxLimit). service and operation become equality conditions, each tag a condition on what the
// trace view shows under its key (see jaegerTagExpr), all on one span; min/maxDuration bound that span's
// duration, start/end (unix microseconds) or lookback bound span start times. It refuses what
// jaeger-query refuses, with its messages: times, limits and durations that do not parse, malformed tags,
// maxDuration below minDuration, a search without service (unless traceID is given: see jaegerSearch).
func JaegerQuery(params map[string][]string, now time.Time) (*query.Query, int, error) {
	js, err := parseJaegerSearch(params, now)
	return js.Query, js.Limit, err
}

// parseJaegerSearch parses the parameters of GET /api/traces in jaeger-query's order (start, end, tags,
// limit, minDuration, maxDuration, traceID, then the checks across them).
func parseJaegerSearch(params map[string][]string, now time.Time) (jaegerSearch, error) {
	var js jaegerSearch
	get := func(k string) string {
		if v := params[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	var since, until int64
	for _, t := range []struct {
		param string
		to    *int64
	}{{"start", &since}, {"end", &until}} {
		if v := get(t.param); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return js, fmt.Errorf("unable to parse param '%s': %w", t.param, err)
			}
			*t.to = n
		}
	}
	tags, err := parseJaegerTags(params["tag"], params["tags"])
	if err != nil {
		return js, err
	}
	js.Limit = DefaultJaegerLimit
	if v := get("limit"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return js, err // jaeger-query answers the bare strconv error
		}
		if n > 0 { // 0 and below select the default, as in jaeger's stores
			js.Limit = min(int(n), store.MaxLimit)
		}
	}
	var durations [2]time.Duration
	for i, param := range []string{"minDuration", "maxDuration"} {
		if v := get(param); v != "" {
			if durations[i], err = time.ParseDuration(v); err != nil {
				return js, fmt.Errorf("unable to parse param '%s': %w", param, err)
			}
		}
	}
	if len(params["traceID"]) > jaegerTraceIDsMax {
		return js, fmt.Errorf("at most %d traceID params", jaegerTraceIDsMax)
	}
	for _, v := range params["traceID"] {
		id, ok := traceID(v)
		if !ok {
			return js, fmt.Errorf("cannot parse traceID param: %q is not a trace id of up to 32 hexadecimal digits", v)
		}
		js.TraceIDs = append(js.TraceIDs, id)
	}
	if len(js.TraceIDs) == 0 && get("service") == "" {
		return js, errJaegerServiceRequired
	}
	if minD, maxD := durations[0], durations[1]; minD != 0 && maxD != 0 && maxD < minD {
		return js, errJaegerMaxBelowMin
	}

	var terms []string
	if v := get("service"); v != "" {
		terms = append(terms, "service="+quote(v))
	}
	if v := get("operation"); v != "" {
		terms = append(terms, "name="+quote(v))
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		e, err := jaegerTagExpr(k, tags[k])
		if err != nil {
			return js, err
		}
		terms = append(terms, e)
	}
	q, err := query.Compile(strings.Join(terms, " "), now) // the query limits apply (length, terms)
	if err != nil {
		return js, err
	}
	spanTerms := []query.Expr{q.Span}
	for i, op := range []query.Op{query.Ge, query.Le} {
		if durations[i] != 0 {
			spanTerms = append(spanTerms, &query.Compare{Field: "duration", Op: op, Value: query.Int(durations[i].Microseconds())})
		}
	}
	q.Span = query.Conjoin(spanTerms...)
	q.Since, q.Until = since, until
	if v := get("lookback"); q.Since == 0 && v != "" && v != "custom" { // the Jaeger UI's; jaeger-query ignores it
		d, err := time.ParseDuration(v)
		if err != nil {
			return js, fmt.Errorf("unable to parse param 'lookback': %w", err)
		}
		q.Since = now.Add(-d).UnixMicro()
	}
	q.Target = query.TraceScope
	js.Query = q
	return js, nil
}

// parseJaegerTags parses the tag parameters as jaeger-query does: each tag=key:value (the value may hold
// colons), then each tags=JSON object (later keys win). As an extension, a tags value that is not a JSON
// object may be logfmt (key=value key2="quoted value"), the syntax Grafana's Jaeger data source takes in
// its tags box; Grafana itself sends JSON. JSON numbers and booleans are taken as their text.
func parseJaegerTags(simple, jsonTags []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range simple {
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			return nil, fmt.Errorf("malformed 'tag' parameter, expecting key:value, received: %s", kv)
		}
		out[k] = v
	}
	for _, t := range jsonTags {
		if trimmed := strings.TrimSpace(t); trimmed != "" && trimmed[0] != '{' {
			m, err := parseLogfmt(trimmed)
			if err != nil {
				return nil, fmt.Errorf("malformed 'tags' parameter, cannot unmarshal JSON: %w", err)
			}
			maps.Copy(out, m)
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(t), &m); err != nil {
			return nil, fmt.Errorf("malformed 'tags' parameter, cannot unmarshal JSON: %w", err)
		}
		for k, v := range m {
			switch x := v.(type) {
			case string:
				out[k] = x
			case bool, float64:
				out[k] = fmt.Sprint(x)
			default:
				return nil, fmt.Errorf("malformed 'tags' parameter, cannot unmarshal JSON: the value of %q is not a string", k)
			}
		}
	}
	return out, nil
}

// parseLogfmt parses key=value pairs separated by spaces; a value may be double-quoted (with \" and \\
// escapes). Every pair needs its '='.
func parseLogfmt(s string) (map[string]string, error) {
	out := map[string]string{}
	for s = strings.TrimLeft(s, " \t"); s != ""; s = strings.TrimLeft(s, " \t") {
		eq := strings.IndexByte(s, '=')
		if sp := strings.IndexAny(s, " \t"); eq <= 0 || (sp >= 0 && sp < eq) {
			return nil, fmt.Errorf("not a JSON object nor logfmt key=value pairs: %q", s)
		}
		k := s[:eq]
		s = s[eq+1:]
		var v string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated quoted value of %q", k)
			}
			v, s = b.String(), s[i+1:]
		} else if end := strings.IndexAny(s, " \t"); end >= 0 {
			v, s = s[:end], s[end:]
		} else {
			v, s = s, ""
		}
		out[k] = v
	}
	return out, nil
}

// jaegerTagFields maps the tags ToJaeger makes of fixed span fields to those fields. A tag key is searched
// in every place the trace view may show it, so it matches a span when any of them holds the value:
//   - the fixed field ToJaeger shows under that key (span.kind, otel.status_code, ...; "event" is the field
//     every log carries, an event name);
//   - the span attribute attr.<key> (so keys such as name, status or event reach the attribute, not the
//     built-in field the query language would resolve them to);
//   - the resource attribute resource.<key> (shown as a process tag).
//
// Event attributes (log fields other than event) and overflowed attributes are not searchable: the query
// language has no field for the former, Meilisearch does not index them for filtering, and overflowed
// attributes are not indexed at all (see package fieldcap and the README).
var jaegerTagFields = map[string]string{
	"span.kind":               "kind",
	"otel.status_code":        "status_code",
	"otel.status_description": "status_message",
	"error":                   "error",
	"otel.scope.name":         "scope",
	"event":                   "events.name",
}

// jaegerTagExpr is the condition of one Jaeger tag, in the query language: an OR over the fields that show
// under key (see jaegerTagFields). Attribute fields are written in full (attr.k, resource.k), so no key is
// taken for a built-in field.
func jaegerTagExpr(key, value string) (string, error) {
	if !plainField(key) {
		return "", fmt.Errorf("tag key %q: only letters, digits, '.', '_' and '-' are supported", key)
	}
	var or []string
	if f, ok := jaegerTagFields[key]; ok {
		v := value
		if f == "kind" && slices.Contains(jaegerUnspecifiedSpanKinds, strings.ToLower(v)) {
			v = "unspecified"
		}
		if f != "error" || strings.EqualFold(v, "true") || strings.EqualFold(v, "false") {
			or = append(or, f+"="+quote(v))
		}
	}
	or = append(or, query.AttrPrefix+key+"="+quote(value), query.ResourcePrefix+key+"="+quote(value))
	return "(" + strings.Join(or, " OR ") + ")", nil
}

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
