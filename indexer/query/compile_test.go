package query

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func us(d time.Duration) string { return strconv.FormatInt(now.Add(-d).UnixMicro(), 10) }

func TestCompile(t *testing.T) {
	tests := []struct {
		src          string
		span, trace  string // String() of the filters ("" for none)
		text         []string
		since, until int64
		sort         string
		target       Scope
	}{
		{src: "service=inventory-service", span: "service = inventory-service"},
		{src: "customer_id=123", span: "attr.customer_id = 123"},
		{src: `customer_id="123"`, span: "attr.customer_id = 123"},
		{src: "http.route=/orders", span: "attr.http.route = /orders"},
		{src: "attr.http.route EXISTS resource.k8s.pod.name=x", span: "attr.http.route EXISTS AND resource.k8s.pod.name = x"},
		{src: "duration>500ms", span: "duration > 500000"},
		{src: "duration>=1m30s", span: "duration >= 90000000"},
		{src: "start>2026-11-22T11:00:00Z", span: "start > " + us(time.Hour)},
		{src: "error=TRUE", span: "error = true"},
		{src: "status=error", span: "status_code = error"},
		{src: "a!=1", span: "NOT attr.a = 1"},
		{src: "kind IN [server, client]", span: "kind IN [server, client]"},
		{src: "trace.duration>2s", trace: "duration > 2000000", target: TraceScope},
		{src: "trace.service=checkout trace.customer_id=123 trace.keys.tenant=a", trace: "services = checkout AND keys.customer_id = 123 AND keys.tenant = a", target: TraceScope},
		{src: "trace.span_count>=5 service=x", span: "service = x", trace: "span_count >= 5", target: TraceScope},
		{src: `"connection reset" timeout error=true`, span: "error = true", text: []string{"connection reset", "timeout"}},
		{src: "since=1h", since: now.Add(-time.Hour).UnixMicro()},
		{src: "since=2026-11-22T10:00:00Z until=30m", since: now.Add(-2 * time.Hour).UnixMicro(), until: now.Add(-30 * time.Minute).UnixMicro()},
		{src: "between=2h..1h", since: now.Add(-2 * time.Hour).UnixMicro(), until: now.Add(-time.Hour).UnixMicro()},
		{src: "sort=-duration sort=trace.span_count", sort: "-duration,trace:span_count"},
		{src: "(service=a OR service=b) NOT (kind=client)", span: "(service = a OR service = b) AND NOT kind = client"},
		{src: "customer_id=123 service=inventory-service duration>500ms since=1h error=true \"connection reset\"",
			span: "attr.customer_id = 123 AND service = inventory-service AND duration > 500000 AND error = true",
			text: []string{"connection reset"}, since: now.Add(-time.Hour).UnixMicro()},
	}
	for _, tt := range tests {
		q, err := Compile(tt.src, now)
		if err != nil {
			t.Errorf("Compile(%q): %v", tt.src, err)
			continue
		}
		if got := str(q.Span); got != tt.span {
			t.Errorf("Compile(%q).Span = %q, want %q", tt.src, got, tt.span)
		}
		if got := str(q.Trace); got != tt.trace {
			t.Errorf("Compile(%q).Trace = %q, want %q", tt.src, got, tt.trace)
		}
		if strings.Join(q.Text, "|") != strings.Join(tt.text, "|") {
			t.Errorf("Compile(%q).Text = %q, want %q", tt.src, q.Text, tt.text)
		}
		if q.Since != tt.since || q.Until != tt.until {
			t.Errorf("Compile(%q) window = %d..%d, want %d..%d", tt.src, q.Since, q.Until, tt.since, tt.until)
		}
		var sorts []string
		for _, s := range q.Sort {
			k := s.Field.Path
			if s.Field.Scope == TraceScope {
				k = "trace:" + k
			}
			if s.Desc {
				k = "-" + k
			}
			sorts = append(sorts, k)
		}
		if got := strings.Join(sorts, ","); got != tt.sort {
			t.Errorf("Compile(%q).Sort = %q, want %q", tt.src, got, tt.sort)
		}
		if q.Target != tt.target {
			t.Errorf("Compile(%q).Target = %v, want %v", tt.src, q.Target, tt.target)
		}
	}
}

func str(e Expr) string {
	if e == nil {
		return ""
	}
	return e.String()
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		src  string
		pos  int
		want string
	}{
		{"duration>500", 10, "duration is a duration: expected a number with a unit"},
		{"duration>fast", 10, "expected a number with a unit"},
		{"service>a", 9, "service is text"},
		{"error=maybe", 7, "expected true or false"},
		{"error<true", 7, "expected = or !="},
		{"customer_id>abc", 13, `expected a number after customer_id >, found "abc"`},
		{"trace.span_count=many", 18, "expected a number"},
		{"start>yesterday", 7, "start is a time"},
		{"since>1h", 1, `expected "=" after since`},
		{"since=soon", 7, "expected a duration ago"},
		{"between=1h", 9, "expected between=FROM..TO"},
		{"between=1h..x", 13, "expected a duration ago"},
		{"since=1h until=2h", 10, "time window is empty"},
		{"sort=name", 6, "expected a numeric field to sort by"},
		{"a=1 OR timeout", 8, "free text must be a top-level term"},
		{"NOT timeout", 5, "free text must be a top-level term"},
		{"service=a OR trace.duration>1s", 14, "cannot mix span and trace conditions"},
		{"NOT (since=1h)", 6, "since must be a top-level condition"},
	}
	for _, tt := range tests {
		_, err := Compile(tt.src, now)
		var qe *Error
		if !errors.As(err, &qe) {
			t.Errorf("Compile(%q) error = %v, want *Error", tt.src, err)
			continue
		}
		if qe.Pos != tt.pos || !strings.Contains(qe.Msg, tt.want) {
			t.Errorf("Compile(%q) = %v; want position %d and %q", tt.src, err, tt.pos, tt.want)
		}
	}
}
