package api

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// The parameters of a Jaeger search (GET /api/traces: service, operation, tags, times, durations, limit,
// traceID) turned into a meshtrace query.

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
