package api

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/querysvc"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// The Jaeger api_v3 HTTP gateway (jaeger's cmd/jaeger/internal/extension/jaegerquery/internal/apiv3), which
// the Jaeger UI 2.15 and later calls:
//
//	GET /api/v3/services                       {"services": [...]}
//	GET /api/v3/operations?service=S[&spanKind=K]  {"operations": [{"name", "spanKind"}]}
//	GET /api/v3/traces?query.serviceName=...   {"result": OTLP/JSON TracesData}
//	GET /api/v3/traces/{trace_id}              {"result": OTLP/JSON TracesData}
//	GET /api/v3/trace-summaries?query...       {"summaries": [TraceSummary]}
//
// Search parameters take the gateway's canonical camelCase names and their deprecated snake_case aliases
// (query.service_name, query.start_time_min, query.num_traces, ...). Traces are OTLP/JSON as the gateway
// writes them: ids in hex, enums as numbers, 64-bit integers as decimal strings, one resourceSpans entry
// per distinct resource. Errors are the gateway's {"error": {"httpCode", "message"}}: 400 for a malformed
// parameter, 404 "No traces found" when a search or a lookup finds nothing.

// v3Error is api_v3.GRPCGatewayError.
type v3Error struct {
	Error v3ErrorDetails `json:"error"`
}

// v3ErrorDetails is api_v3.GRPCGatewayError_GRPCGatewayErrorDetails.
type v3ErrorDetails struct {
	HTTPCode int    `json:"httpCode,omitempty"`
	Message  string `json:"message,omitempty"`
}

// writeV3Error answers an error as the gateway does (http.Error with the JSON error as its text).
func writeV3Error(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(v3Error{Error: v3ErrorDetails{HTTPCode: code, Message: msg}})
	http.Error(w, string(b), code)
}

// v3StoreError answers a failed store call of an api_v3 route (see failure).
func (s *Server) v3StoreError(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := s.failure(w, r, err)
	writeV3Error(w, code, msg)
}

// V3Operation is api_v3.Operation.
type V3Operation struct {
	Name     string `json:"name"`
	SpanKind string `json:"spanKind"`
}

func (s *Server) v3Services(w http.ResponseWriter, r *http.Request) {
	services, err := s.services(r)
	if err != nil {
		s.v3StoreError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]string{"services": services})
}

// v3Operations answers /api/v3/operations?service=S[&spanKind=K]: the service may be left out (every
// service), and a span of unspecified kind is listed as "internal", as the gateway does.
func (s *Server) v3Operations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kind, _ := v3Param(q, "spanKind", "span_kind")
	found, err := s.operations(r, querysvc.OperationQuery{Service: q.Get("service"), SpanKind: kind})
	if err != nil {
		s.v3StoreError(w, r, err)
		return
	}
	ops := make([]V3Operation, 0, len(found))
	for _, op := range found {
		if slices.Contains(jaegerUnspecifiedSpanKinds, op.SpanKind) {
			op.SpanKind = "internal"
		}
		ops = append(ops, V3Operation{Name: op.Name, SpanKind: op.SpanKind})
	}
	slices.SortFunc(ops, func(a, b V3Operation) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.SpanKind, b.SpanKind)
	})
	writeJSON(w, http.StatusOK, map[string][]V3Operation{"operations": slices.Compact(ops)})
}

// v3Param returns the value of the canonical parameter, or else of its deprecated alias, with the name of
// the one read (the gateway's getQueryParam).
func v3Param(q url.Values, canonical, deprecated string) (string, string) {
	if v := q.Get(canonical); v != "" {
		return v, canonical
	}
	return q.Get(deprecated), deprecated
}

// v3DefaultSearchDepth is the gateway's defaultSearchDepth.
const v3DefaultSearchDepth = 100

// V3Query turns the search parameters of /api/v3/traces and /api/v3/trace-summaries into a compiled query
// for traces and the number of traces to return, checking them as the gateway's parseFindTracesQuery does
// (with its messages): query.startTimeMin and query.startTimeMax are required (RFC 3339) and in order,
// query.attributes is a JSON object of strings, durations are Go durations, query.searchDepth an integer
// (100 when absent; at most store.MaxLimit here). The service is optional. Conditions are on one span, as
// in JaegerQuery; attributes match as Jaeger tags do (see jaegerTagExpr).
func V3Query(q url.Values, now time.Time) (*query.Query, int, error) {
	service, _ := v3Param(q, "query.serviceName", "query.service_name")
	operation, _ := v3Param(q, "query.operationName", "query.operation_name")
	var attrs map[string]string
	if v := q.Get("query.attributes"); v != "" {
		if err := json.Unmarshal([]byte(v), &attrs); err != nil {
			return nil, 0, fmt.Errorf("malformed parameter query.attributes: %w", err)
		}
	}
	if q.Get("query.filter") != "" {
		return nil, 0, errors.New("malformed parameter query.filter: filter expressions are not supported")
	}
	minS, minP := v3Param(q, "query.startTimeMin", "query.start_time_min")
	maxS, maxP := v3Param(q, "query.startTimeMax", "query.start_time_max")
	if minS == "" || maxS == "" {
		return nil, 0, errors.New("query.startTimeMin and query.startTimeMax are required")
	}
	tmin, err := time.Parse(time.RFC3339Nano, minS)
	if err != nil {
		return nil, 0, fmt.Errorf("malformed parameter %s: %w", minP, err)
	}
	tmax, err := time.Parse(time.RFC3339Nano, maxS)
	if err != nil {
		return nil, 0, fmt.Errorf("malformed parameter %s: %w", maxP, err)
	}
	if !tmin.Before(tmax) {
		return nil, 0, errors.New("query.startTimeMin must be before query.startTimeMax")
	}
	limit := v3DefaultSearchDepth
	n, nP := v3Param(q, "query.searchDepth", "query.search_depth")
	if n == "" {
		n, nP = q.Get("query.num_traces"), "query.num_traces"
	}
	if n != "" {
		if limit, err = strconv.Atoi(n); err != nil {
			return nil, 0, fmt.Errorf("malformed parameter %s: %w", nP, err)
		}
		if limit <= 0 {
			limit = v3DefaultSearchDepth
		}
		limit = min(limit, store.MaxLimit)
	}
	var durations [2]time.Duration
	for i, names := range [][2]string{{"query.durationMin", "query.duration_min"}, {"query.durationMax", "query.duration_max"}} {
		if d, p := v3Param(q, names[0], names[1]); d != "" {
			if durations[i], err = time.ParseDuration(d); err != nil {
				return nil, 0, fmt.Errorf("malformed parameter %s: %w", p, err)
			}
		}
	}
	if r, p := v3Param(q, "query.rawTraces", "query.raw_traces"); r != "" {
		if _, err := strconv.ParseBool(r); err != nil {
			return nil, 0, fmt.Errorf("malformed parameter %s: %w", p, err)
		}
	}

	var terms []string
	if service != "" {
		terms = append(terms, "service="+quote(service))
	}
	if operation != "" {
		terms = append(terms, "name="+quote(operation))
	}
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		e, err := jaegerTagExpr(k, attrs[k])
		if err != nil {
			return nil, 0, fmt.Errorf("malformed parameter query.attributes: %w", err)
		}
		terms = append(terms, e)
	}
	cq, err := query.Compile(strings.Join(terms, " "), now)
	if err != nil {
		return nil, 0, err
	}
	spanTerms := []query.Expr{cq.Span}
	for i, op := range []query.Op{query.Ge, query.Le} {
		if durations[i] != 0 {
			spanTerms = append(spanTerms, &query.Compare{Field: "duration", Op: op, Value: query.Int(durations[i].Microseconds())})
		}
	}
	cq.Span = query.Conjoin(spanTerms...)
	cq.Since, cq.Until = tmin.UnixMicro(), tmax.UnixMicro()
	cq.Target = query.TraceScope
	return cq, limit, nil
}

// v3Search runs the api_v3 search of r and returns the traces found; on a bad query or a store error it
// has answered w and ok is false.
func (s *Server) v3Search(w http.ResponseWriter, r *http.Request) (found []querysvc.Trace, ok bool) {
	q, limit, err := V3Query(r.URL.Query(), s.now())
	if err != nil {
		writeV3Error(w, http.StatusBadRequest, err.Error())
		return nil, false
	}
	found, err = s.svc.FindTraces(r.Context(), q, limit)
	if err != nil {
		s.v3StoreError(w, r, err)
		return nil, false
	}
	return found, true
}

func (s *Server) v3FindTraces(w http.ResponseWriter, r *http.Request) {
	found, ok := s.v3Search(w, r)
	if !ok {
		return
	}
	var spans []document.Span
	for _, t := range found {
		spans = append(spans, t.Spans...)
	}
	s.v3Traces(w, spans)
}

// v3Traces answers the spans of the traces found, or 404 "No traces found" as the gateway does.
func (s *Server) v3Traces(w http.ResponseWriter, spans []document.Span) {
	if len(spans) == 0 {
		writeV3Error(w, http.StatusNotFound, "No traces found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]OTLPTracesData{"result": ToOTLP(spans)})
}

func (s *Server) v3Trace(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("trace_id")
	id, ok := v3TraceID(raw)
	if !ok {
		writeV3Error(w, http.StatusBadRequest, "malformed parameter trace_id: "+strconv.Quote(raw)+" is not a trace id (hex, or base64 of 8 or 16 bytes)")
		return
	}
	q := r.URL.Query()
	for _, names := range [][2]string{{"startTime", "start_time"}, {"endTime", "end_time"}} {
		if v, p := v3Param(q, names[0], names[1]); v != "" {
			if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
				writeV3Error(w, http.StatusBadRequest, fmt.Sprintf("malformed parameter %s: %v", p, err))
				return
			}
		}
	}
	if v, p := v3Param(q, "rawTraces", "raw_traces"); v != "" {
		if _, err := strconv.ParseBool(v); err != nil {
			writeV3Error(w, http.StatusBadRequest, fmt.Sprintf("malformed parameter %s: %v", p, err))
			return
		}
	}
	spans, err := s.svc.TraceSpans(r.Context(), id)
	if err != nil {
		s.v3StoreError(w, r, err)
		return
	}
	s.v3Traces(w, spans)
}

// v3TraceID parses a trace id as the gateway's TraceIDFromString: hex of up to 32 digits, or else base64
// (standard or URL-safe, padded or not) of 8 or 16 bytes (model.TraceIDFromBytes).
func v3TraceID(s string) (string, bool) {
	if id, ok := traceID(s); ok {
		return id, true
	}
	if len(s) > 24 {
		return "", false
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && (len(b) == 8 || len(b) == 16) {
			return traceID(hex.EncodeToString(b))
		}
	}
	return "", false
}

// V3TraceSummary is api_v3.TraceSummary as the gateway writes it (zero values left out, nanosecond times as
// decimal strings).
type V3TraceSummary struct {
	TraceID              string             `json:"traceId"`
	RootServiceName      string             `json:"rootServiceName,omitempty"`
	RootOperationName    string             `json:"rootOperationName,omitempty"`
	MinStartTimeUnixNano uint64             `json:"minStartTimeUnixNano,omitempty,string"`
	MaxEndTimeUnixNano   uint64             `json:"maxEndTimeUnixNano,omitempty,string"`
	SpanCount            int                `json:"spanCount,omitempty"`
	ErrorSpanCount       int                `json:"errorSpanCount,omitempty"`
	OrphanSpanCount      int                `json:"orphanSpanCount,omitempty"`
	Services             []V3ServiceSummary `json:"services,omitempty"`
}

// V3ServiceSummary is api_v3.ServiceSummary.
type V3ServiceSummary struct {
	Name           string `json:"name"`
	SpanCount      int    `json:"spanCount,omitempty"`
	ErrorSpanCount int    `json:"errorSpanCount,omitempty"`
}

func (s *Server) v3TraceSummaries(w http.ResponseWriter, r *http.Request) {
	found, ok := s.v3Search(w, r)
	if !ok {
		return
	}
	out := make([]V3TraceSummary, 0, len(found))
	for _, t := range found {
		if len(t.Spans) > 0 {
			out = append(out, Summarize(t.Spans))
		}
	}
	writeJSON(w, http.StatusOK, map[string][]V3TraceSummary{"summaries": out})
}

// Summarize computes the summary of one trace from its spans, as Jaeger's tracestore.TraceSummary defines
// it: the root is the span without a parent (the earliest when several), the times span the earliest start
// to the latest end, an orphan is a span whose parent is not in the trace, and services are sorted by name.
func Summarize(spans []document.Span) V3TraceSummary {
	sum := V3TraceSummary{TraceID: spans[0].TraceID, SpanCount: len(spans)}
	ids := make(map[string]bool, len(spans))
	for _, sp := range spans {
		ids[sp.SpanID] = true
	}
	var root *document.Span
	var minStart, maxEnd int64
	bySvc := map[string]*V3ServiceSummary{}
	for i := range spans {
		sp := &spans[i]
		if sp.ParentSpanID == "" && (root == nil || sp.Start < root.Start) {
			root = sp
		}
		if sp.ParentSpanID != "" && !ids[sp.ParentSpanID] {
			sum.OrphanSpanCount++
		}
		if i == 0 || sp.Start < minStart {
			minStart = sp.Start
		}
		if end := max(sp.End, sp.Start+sp.Duration); i == 0 || end > maxEnd {
			maxEnd = end
		}
		ss := bySvc[sp.Service]
		if ss == nil {
			ss = &V3ServiceSummary{Name: sp.Service}
			bySvc[sp.Service] = ss
		}
		ss.SpanCount++
		if sp.Error {
			sum.ErrorSpanCount++
			ss.ErrorSpanCount++
		}
	}
	if root != nil {
		sum.RootServiceName, sum.RootOperationName = root.Service, root.Name
	}
	sum.MinStartTimeUnixNano, sum.MaxEndTimeUnixNano = uint64(minStart)*1000, uint64(maxEnd)*1000
	for _, name := range slices.Sorted(maps.Keys(bySvc)) {
		sum.Services = append(sum.Services, *bySvc[name])
	}
	return sum
}

// OTLPTracesData is OTLP/JSON's TracesData, as the gateway writes it (ids in lower-case hex, enums as
// numbers, 64-bit integers as decimal strings).
type OTLPTracesData struct {
	ResourceSpans []OTLPResourceSpans `json:"resourceSpans"`
}

// OTLPResourceSpans is the spans of one resource.
type OTLPResourceSpans struct {
	Resource   OTLPResource     `json:"resource"`
	ScopeSpans []OTLPScopeSpans `json:"scopeSpans"`
}

// OTLPResource is a resource: its attributes, service.name among them.
type OTLPResource struct {
	Attributes []OTLPKeyValue `json:"attributes,omitempty"`
}

// OTLPScopeSpans is the spans of one instrumentation scope.
type OTLPScopeSpans struct {
	Scope OTLPScope  `json:"scope"`
	Spans []OTLPSpan `json:"spans"`
}

// OTLPScope is an instrumentation scope.
type OTLPScope struct {
	Name string `json:"name,omitempty"`
}

// OTLPSpan is a span.
type OTLPSpan struct {
	TraceID           string         `json:"traceId"`
	SpanID            string         `json:"spanId"`
	ParentSpanID      string         `json:"parentSpanId,omitempty"`
	Name              string         `json:"name"`
	Kind              int            `json:"kind,omitempty"`
	StartTimeUnixNano uint64         `json:"startTimeUnixNano,omitempty,string"`
	EndTimeUnixNano   uint64         `json:"endTimeUnixNano,omitempty,string"`
	Attributes        []OTLPKeyValue `json:"attributes,omitempty"`
	Events            []OTLPEvent    `json:"events,omitempty"`
	Links             []OTLPLink     `json:"links,omitempty"`
	Status            OTLPStatus     `json:"status"`
}

// OTLPEvent is a span event.
type OTLPEvent struct {
	TimeUnixNano uint64         `json:"timeUnixNano,omitempty,string"`
	Name         string         `json:"name"`
	Attributes   []OTLPKeyValue `json:"attributes,omitempty"`
}

// OTLPLink is a span link.
type OTLPLink struct {
	TraceID    string         `json:"traceId"`
	SpanID     string         `json:"spanId"`
	Attributes []OTLPKeyValue `json:"attributes,omitempty"`
}

// OTLPStatus is a span status: code 0 unset, 1 ok, 2 error.
type OTLPStatus struct {
	Code    int    `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// OTLPKeyValue is a typed attribute.
type OTLPKeyValue struct {
	Key   string       `json:"key"`
	Value OTLPAnyValue `json:"value"`
}

// OTLPAnyValue is an attribute value: exactly one field is set.
type OTLPAnyValue struct {
	StringValue *string         `json:"stringValue,omitempty"`
	BoolValue   *bool           `json:"boolValue,omitempty"`
	IntValue    *string         `json:"intValue,omitempty"` // an int64 as a decimal string
	DoubleValue *float64        `json:"doubleValue,omitempty"`
	ArrayValue  *OTLPArrayValue `json:"arrayValue,omitempty"`
	KvlistValue *OTLPKvList     `json:"kvlistValue,omitempty"`
}

// OTLPArrayValue is a list value.
type OTLPArrayValue struct {
	Values []OTLPAnyValue `json:"values"`
}

// OTLPKvList is a map value.
type OTLPKvList struct {
	Values []OTLPKeyValue `json:"values"`
}

// otlpKinds are the OTLP SpanKind numbers of the documents' kinds.
var otlpKinds = map[string]int{"unspecified": 0, "internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}

// otlpStatusCodes are the OTLP StatusCode numbers of the documents' status codes.
var otlpStatusCodes = map[string]int{"unset": 0, "ok": 1, "error": 2}

// ToOTLP converts spans (of one or more traces) to OTLP/JSON: one resourceSpans entry per distinct resource
// (service and resource attributes, as ToJaeger's processes), in order of first appearance, with service.name
// among its attributes; within it one scopeSpans entry per scope name. Attributes kept out of the index
// (document.Span.Overflow) are span attributes, under their own key for span attributes and under their
// overflow key ("resource.k", "events[0].attr.k") for the others.
func ToOTLP(spans []document.Span) OTLPTracesData {
	out := OTLPTracesData{ResourceSpans: []OTLPResourceSpans{}}
	resources := map[string]int{}
	scopes := map[string]map[string]int{}
	for i := range spans {
		sp := &spans[i]
		key := processKey(sp)
		ri, ok := resources[key]
		if !ok {
			res := sp.Resource
			if _, has := res["service.name"]; !has && sp.Service != "" {
				res = maps.Clone(res)
				if res == nil {
					res = map[string]any{}
				}
				res["service.name"] = sp.Service
			}
			ri = len(out.ResourceSpans)
			resources[key] = ri
			scopes[key] = map[string]int{}
			out.ResourceSpans = append(out.ResourceSpans, OTLPResourceSpans{Resource: OTLPResource{Attributes: otlpAttributes(res)}})
		}
		rs := &out.ResourceSpans[ri]
		si, ok := scopes[key][sp.Scope]
		if !ok {
			si = len(rs.ScopeSpans)
			scopes[key][sp.Scope] = si
			rs.ScopeSpans = append(rs.ScopeSpans, OTLPScopeSpans{Scope: OTLPScope{Name: sp.Scope}})
		}
		rs.ScopeSpans[si].Spans = append(rs.ScopeSpans[si].Spans, otlpSpan(sp))
	}
	return out
}

func otlpSpan(sp *document.Span) OTLPSpan {
	o := OTLPSpan{TraceID: sp.TraceID, SpanID: sp.SpanID, ParentSpanID: sp.ParentSpanID, Name: sp.Name,
		Kind: otlpKinds[sp.Kind], StartTimeUnixNano: uint64(sp.Start) * 1000, EndTimeUnixNano: uint64(sp.End) * 1000,
		Status: OTLPStatus{Code: otlpStatusCodes[sp.StatusCode], Message: sp.StatusMessage}}
	attrs := sp.Attr
	if over, err := sp.OverflowAttributes(); err != nil {
		attrs = maps.Clone(attrs)
		if attrs == nil {
			attrs = map[string]any{}
		}
		attrs["meshtrace.overflow"] = sp.Overflow
	} else if len(over) > 0 {
		attrs = maps.Clone(attrs)
		if attrs == nil {
			attrs = map[string]any{}
		}
		for k, v := range over {
			attrs[strings.TrimPrefix(k, document.AttrPath+".")] = v
		}
	}
	o.Attributes = otlpAttributes(attrs)
	for _, e := range sp.Events {
		o.Events = append(o.Events, OTLPEvent{TimeUnixNano: uint64(e.Time) * 1000, Name: e.Name, Attributes: otlpAttributes(e.Attr)})
	}
	for _, l := range sp.Links {
		o.Links = append(o.Links, OTLPLink{TraceID: l.TraceID, SpanID: l.SpanID, Attributes: otlpAttributes(l.Attr)})
	}
	return o
}

// otlpAttributes converts an attribute map to typed OTLP attributes, sorted by key (nil when empty).
func otlpAttributes(attrs map[string]any) []OTLPKeyValue {
	if len(attrs) == 0 {
		return nil
	}
	out := make([]OTLPKeyValue, 0, len(attrs))
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		out = append(out, OTLPKeyValue{Key: k, Value: otlpValue(attrs[k])})
	}
	return out
}

// otlpValue types an attribute value; documents read back from JSON hold integers as float64, which are
// given back as intValue when integral.
func otlpValue(v any) OTLPAnyValue {
	switch x := v.(type) {
	case string:
		return OTLPAnyValue{StringValue: &x}
	case bool:
		return OTLPAnyValue{BoolValue: &x}
	case int:
		s := strconv.Itoa(x)
		return OTLPAnyValue{IntValue: &s}
	case int64:
		s := strconv.FormatInt(x, 10)
		return OTLPAnyValue{IntValue: &s}
	case float64:
		if x == float64(int64(x)) {
			s := strconv.FormatInt(int64(x), 10)
			return OTLPAnyValue{IntValue: &s}
		}
		return OTLPAnyValue{DoubleValue: &x}
	case []any:
		a := &OTLPArrayValue{Values: make([]OTLPAnyValue, 0, len(x))}
		for _, e := range x {
			a.Values = append(a.Values, otlpValue(e))
		}
		return OTLPAnyValue{ArrayValue: a}
	case map[string]any:
		kv := otlpAttributes(x)
		if kv == nil {
			kv = []OTLPKeyValue{}
		}
		return OTLPAnyValue{KvlistValue: &OTLPKvList{Values: kv}}
	case nil:
		return OTLPAnyValue{}
	}
	b, _ := json.Marshal(v)
	s := string(b)
	return OTLPAnyValue{StringValue: &s}
}
