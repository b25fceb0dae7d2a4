package api

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/store"
)

// TestJaegerQuery checks the query JaegerQuery makes of jaeger-query search parameters, field by field:
// the span condition, the time window and the limit; and that it refuses what jaeger-query refuses, with
// jaeger-query's messages.
func TestJaegerQuery(t *testing.T) {
	at := time.UnixMicro(1_800_000_000_000_000)
	type P = map[string][]string
	tests := []struct {
		name         string
		params       P
		span         string // q.Span.String()
		since, until int64
		limit        int
		err          string // the whole message when set
	}{
		{name: "duration alone", params: P{"service": {"a"}, "minDuration": {"1s"}}, span: "service = a AND duration >= 1000000", limit: 100},
		{name: "durations", params: P{"service": {"a"}, "minDuration": {"1ms"}, "maxDuration": {"2ms"}}, span: "service = a AND duration >= 1000 AND duration <= 2000", limit: 100},
		{name: "max duration", params: P{"service": {"a"}, "maxDuration": {"2ms"}}, span: "service = a AND duration <= 2000", limit: 100},
		{name: "equal durations", params: P{"service": {"a"}, "minDuration": {"2ms"}, "maxDuration": {"2ms"}}, span: "service = a AND duration >= 2000 AND duration <= 2000", limit: 100},
		{name: "operation", params: P{"service": {"a"}, "operation": {"GET /x"}}, span: `service = a AND name = "GET /x"`, limit: 100},
		{name: "window", params: P{"service": {"a"}, "start": {"10"}, "end": {"20"}}, span: "service = a", since: 10, until: 20, limit: 100},
		{name: "lookback", params: P{"service": {"a"}, "lookback": {"1h"}}, span: "service = a", since: at.Add(-time.Hour).UnixMicro(), limit: 100},
		{name: "start wins over lookback", params: P{"service": {"a"}, "start": {"5"}, "lookback": {"1h"}}, span: "service = a", since: 5, limit: 100},
		{name: "lookback custom", params: P{"service": {"a"}, "lookback": {"custom"}}, span: "service = a", limit: 100},
		{name: "limit", params: P{"service": {"a"}, "limit": {"7"}}, span: "service = a", limit: 7},
		{name: "limit 0 is the default", params: P{"service": {"a"}, "limit": {"0"}}, span: "service = a", limit: 100},
		{name: "negative limit is the default", params: P{"service": {"a"}, "limit": {"-3"}}, span: "service = a", limit: 100},
		{name: "limit capped", params: P{"service": {"a"}, "limit": {"5000"}}, span: "service = a", limit: store.MaxLimit},
		{name: "limit int32 max", params: P{"service": {"a"}, "limit": {strconv.Itoa(math.MaxInt32)}}, span: "service = a", limit: store.MaxLimit},
		{name: "plain tag", params: P{"service": {"a"}, "tags": {`{"customer_id":"123"}`}},
			span: "service = a AND (attr.customer_id = 123 OR resource.customer_id = 123)", limit: 100},
		{name: "span.kind", params: P{"service": {"a"}, "tags": {`{"span.kind":"server"}`}},
			span: "service = a AND (kind = server OR attr.span.kind = server OR resource.span.kind = server)", limit: 100},
		{name: "otel.status_code", params: P{"service": {"a"}, "tags": {`{"otel.status_code":"ERROR"}`}},
			span: "service = a AND (status_code = ERROR OR attr.otel.status_code = ERROR OR resource.otel.status_code = ERROR)", limit: 100},
		{name: "otel.status_description", params: P{"service": {"a"}, "tag": {"otel.status_description:connection reset"}},
			span: `service = a AND (status_message = "connection reset" OR attr.otel.status_description = "connection reset" OR resource.otel.status_description = "connection reset")`, limit: 100},
		{name: "error", params: P{"service": {"a"}, "tags": {`{"error":"true"}`}},
			span: "service = a AND (error = true OR attr.error = true OR resource.error = true)", limit: 100},
		{name: "error not a bool", params: P{"service": {"a"}, "tags": {`{"error":"timeout"}`}},
			span: "service = a AND (attr.error = timeout OR resource.error = timeout)", limit: 100},
		{name: "JSON bool value", params: P{"service": {"a"}, "tags": {`{"error":true}`}},
			span: "service = a AND (error = true OR attr.error = true OR resource.error = true)", limit: 100},
		{name: "scope", params: P{"service": {"a"}, "tags": {`{"otel.scope.name":"io.x"}`}},
			span: "service = a AND (scope = io.x OR attr.otel.scope.name = io.x OR resource.otel.scope.name = io.x)", limit: 100},
		{name: "event is the event name or the attribute", params: P{"service": {"a"}, "tags": {`{"event":"retry"}`}},
			span: "service = a AND (events.name = retry OR attr.event = retry OR resource.event = retry)", limit: 100},
		{name: "built-in names reach the attribute", params: P{"service": {"a"}, "tags": {`{"name":"n","status":"s","kind":"k","duration":"d"}`}},
			span: "service = a AND (attr.duration = d OR resource.duration = d) AND (attr.kind = k OR resource.kind = k) AND (attr.name = n OR resource.name = n) AND (attr.status = s OR resource.status = s)", limit: 100},
		{name: "resource tag", params: P{"service": {"a"}, "tags": {`{"k8s.pod.name":"pod-1"}`}},
			span: "service = a AND (attr.k8s.pod.name = pod-1 OR resource.k8s.pod.name = pod-1)", limit: 100},
		{name: "logfmt tags", params: P{"service": {"a"}, "tags": {`http.method=GET note="a \"b\""`}},
			span: `service = a AND (attr.http.method = GET OR resource.http.method = GET) AND (attr.note = "a \"b\"" OR resource.note = "a \"b\"")`, limit: 100},
		{name: "tag value with colons", params: P{"service": {"a"}, "tag": {"url:http://x:1"}},
			span: "service = a AND (attr.url = http://x:1 OR resource.url = http://x:1)", limit: 100},
		{name: "tags win over tag", params: P{"service": {"a"}, "tag": {"k:1"}, "tags": {`{"k":"2"}`}},
			span: "service = a AND (attr.k = 2 OR resource.k = 2)", limit: 100},
		{name: "trace ids without service", params: P{"traceID": {"abc"}}, limit: 100},

		{name: "no service", params: P{"operation": {"x"}}, err: "parameter 'service' is required"},
		{name: "max below min", params: P{"service": {"a"}, "minDuration": {"2ms"}, "maxDuration": {"1ms"}}, err: "'maxDuration' should be greater than 'minDuration'"},
		{name: "bad minDuration", params: P{"service": {"a"}, "minDuration": {"fast"}}, err: `unable to parse param 'minDuration': time: invalid duration "fast"`},
		{name: "bad maxDuration", params: P{"service": {"a"}, "maxDuration": {"10"}}, err: `unable to parse param 'maxDuration': time: missing unit in duration "10"`},
		{name: "bad start", params: P{"service": {"a"}, "start": {"yesterday"}}, err: `unable to parse param 'start': strconv.ParseInt: parsing "yesterday": invalid syntax`},
		{name: "bad end", params: P{"service": {"a"}, "end": {"1.5"}}, err: `unable to parse param 'end': strconv.ParseInt: parsing "1.5": invalid syntax`},
		{name: "bad limit", params: P{"service": {"a"}, "limit": {"ten"}}, err: `strconv.ParseInt: parsing "ten": invalid syntax`},
		{name: "limit past int32", params: P{"service": {"a"}, "limit": {"99999999999"}}, err: `strconv.ParseInt: parsing "99999999999": value out of range`},
		{name: "bad tag", params: P{"service": {"a"}, "tag": {"novalue"}}, err: "malformed 'tag' parameter, expecting key:value, received: novalue"},
		{name: "bad tags", params: P{"service": {"a"}, "tags": {`{"a":`}}, err: "malformed 'tags' parameter, cannot unmarshal JSON: unexpected end of JSON input"},
		{name: "tags not logfmt", params: P{"service": {"a"}, "tags": {"notjson"}}, err: `malformed 'tags' parameter, cannot unmarshal JSON: not a JSON object nor logfmt key=value pairs: "notjson"`},
		{name: "bad traceID", params: P{"traceID": {"xyz"}}, err: `cannot parse traceID param: "xyz" is not a trace id of up to 32 hexadecimal digits`},
		{name: "bad duration with traceID", params: P{"traceID": {"abc"}, "minDuration": {"x"}}, err: `unable to parse param 'minDuration': time: invalid duration "x"`},
		{name: "bad lookback", params: P{"service": {"a"}, "lookback": {"ages"}}, err: `unable to parse param 'lookback': time: invalid duration "ages"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, limit, err := JaegerQuery(tt.params, at)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			span := ""
			if q.Span != nil {
				span = q.Span.String()
			}
			if span != tt.span {
				t.Errorf("span condition\n  %s\nwant\n  %s", span, tt.span)
			}
			if q.Since != tt.since || q.Until != tt.until {
				t.Errorf("window [%d, %d], want [%d, %d]", q.Since, q.Until, tt.since, tt.until)
			}
			if limit != tt.limit {
				t.Errorf("limit %d, want %d", limit, tt.limit)
			}
		})
	}
}
