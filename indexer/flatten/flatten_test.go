package flatten

import (
	"math"
	"reflect"
	"strings"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/meshtrace/meshtrace/indexer/document"
)

var (
	traceID = []byte{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c}
	spanID  = []byte{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74}
	parent  = []byte{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73}
)

func kv(k string, v *commonpb.AnyValue) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: v}
}

func sv(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

func iv(n int64) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: n}}
}

func resourceSpans(spans ...*tracepb.Span) []*tracepb.ResourceSpans {
	return []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", sv("checkout")), kv("k8s.namespace.name", sv("shop"))}},
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "meshtrace"}, Spans: spans}},
	}}
}

func validSpan() *tracepb.Span {
	return &tracepb.Span{
		TraceId: traceID, SpanId: spanID, ParentSpanId: parent, Name: "GET /cart",
		Kind: tracepb.Span_SPAN_KIND_SERVER, StartTimeUnixNano: 1_700_000_000_123_456_789, EndTimeUnixNano: 1_700_000_000_623_456_789,
		Attributes: []*commonpb.KeyValue{kv("http.request.method", sv("GET")), kv("customer_id", sv("123"))},
		Events:     []*tracepb.Span_Event{{Name: "retry", TimeUnixNano: 1_700_000_000_200_000_000, Attributes: []*commonpb.KeyValue{kv("attempt", iv(2))}}},
		Links:      []*tracepb.Span_Link{{TraceId: traceID, SpanId: parent, Attributes: []*commonpb.KeyValue{kv("kind", sv("follows"))}}},
		Status:     &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "connection reset"},
	}
}

func TestSpansDocument(t *testing.T) {
	got, rej, err := Spans(nil, resourceSpans(validSpan()), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if rej.Count != 0 {
		t.Fatalf("rejected: %s", rej.Summary())
	}
	want := []document.Span{{
		ID:           "5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174",
		TraceID:      "5b8efff798038103d269b633813fc60c",
		SpanID:       "eee19b7ec3c1b174",
		ParentSpanID: "eee19b7ec3c1b173",
		Name:         "GET /cart", Kind: "server", Service: "checkout",
		Start: 1_700_000_000_123_456, End: 1_700_000_000_623_456, Duration: 500_000,
		StatusCode: "error", StatusMessage: "connection reset", Error: true,
		Attr:     map[string]any{"http.request.method": "GET", "customer_id": "123"},
		Resource: map[string]any{"service.name": "checkout", "k8s.namespace.name": "shop"},
		Scope:    "meshtrace",
		Events:   []document.Event{{Name: "retry", Time: 1_700_000_000_200_000, Attr: map[string]any{"attempt": int64(2)}}},
		Links:    []document.Link{{TraceID: "5b8efff798038103d269b633813fc60c", SpanID: "eee19b7ec3c1b173", Attr: map[string]any{"kind": "follows"}}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestSpansDefaults(t *testing.T) {
	sp := validSpan()
	sp.ParentSpanId = make([]byte, 8) // all-zero parent: a root, as some SDKs send it
	sp.Kind = tracepb.Span_SpanKind(42)
	sp.Status = nil
	got, rej, _ := Spans(nil, []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{sp}}}}}, DefaultLimits)
	if rej.Count != 0 || len(got) != 1 {
		t.Fatalf("got %d docs, rejected %s", len(got), rej.Summary())
	}
	d := got[0]
	if d.ParentSpanID != "" || d.Kind != "unspecified" || d.StatusCode != "unset" || d.Error || d.Service != UnknownService || d.Scope != "" {
		t.Fatalf("defaults wrong: %+v", d)
	}
}

func TestSpansRejects(t *testing.T) {
	tests := []struct {
		name   string
		change func(*tracepb.Span)
		want   string
	}{
		{"no trace id", func(s *tracepb.Span) { s.TraceId = nil }, "trace_id must be 16 bytes, got 0"},
		{"short trace id", func(s *tracepb.Span) { s.TraceId = traceID[:8] }, "trace_id must be 16 bytes, got 8"},
		{"zero trace id", func(s *tracepb.Span) { s.TraceId = make([]byte, 16) }, "trace_id is all zeros"},
		{"no span id", func(s *tracepb.Span) { s.SpanId = nil }, "span_id must be 8 bytes, got 0"},
		{"zero span id", func(s *tracepb.Span) { s.SpanId = make([]byte, 8) }, "span_id is all zeros"},
		{"bad parent", func(s *tracepb.Span) { s.ParentSpanId = []byte{0} }, "parent_span_id must be 8 bytes, got 1"},
		{"no start", func(s *tracepb.Span) { s.StartTimeUnixNano = 0 }, "start_time_unix_nano is missing"},
		{"end before start", func(s *tracepb.Span) { s.EndTimeUnixNano = s.StartTimeUnixNano - 1 }, "end_time_unix_nano is before start_time_unix_nano"},
		{"bad link", func(s *tracepb.Span) { s.Links[0].SpanId = nil }, "links[0].span_id must be 8 bytes, got 0"},
		{"bad link trace", func(s *tracepb.Span) { s.Links[0].TraceId = []byte{1} }, "links[0].trace_id must be 16 bytes, got 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := validSpan()
			tt.change(bad)
			got, rej, _ := Spans(nil, resourceSpans(validSpan(), bad, validSpan()), DefaultLimits)
			if len(got) != 2 || rej.Count != 1 {
				t.Fatalf("got %d documents, %d rejected; want 2 and 1", len(got), rej.Count)
			}
			want := "1 span rejected: resourceSpans[0].scopeSpans[0].spans[1]: " + tt.want
			if rej.Summary() != want {
				t.Fatalf("summary %q, want %q", rej.Summary(), want)
			}
		})
	}
}

func TestRejectedSummaryCountsAll(t *testing.T) {
	bad := validSpan()
	bad.SpanId = nil
	_, rej, _ := Spans(nil, resourceSpans(bad, validSpan(), bad), DefaultLimits)
	if !strings.HasPrefix(rej.Summary(), "2 spans rejected; first: resourceSpans[0].scopeSpans[0].spans[0]: span_id") {
		t.Fatalf("summary %q", rej.Summary())
	}
	if Count(resourceSpans(bad, validSpan(), bad)) != 3 {
		t.Fatal("Count must count every span")
	}
}

func TestValue(t *testing.T) {
	tests := []struct {
		name string
		in   *commonpb.AnyValue
		want any
	}{
		{"string", sv("x"), "x"},
		{"bool", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}, true},
		{"safe int", iv(1 << 53), int64(1 << 53)},
		{"big int", iv(1<<53 + 1), "9007199254740993"},
		{"big negative int", iv(-(1<<53 + 1)), "-9007199254740993"},
		{"double", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.25}}, 0.25},
		{"NaN", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: math.NaN()}}, "NaN"},
		{"infinity", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: math.Inf(-1)}}, "-Inf"},
		{"bytes", &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{1, 2}}}, "AQI="},
		{"array", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{sv("a"), iv(1), {}}}}}, []any{"a", int64(1)}},
		{"kvlist in array", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{
			{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{kv("k", sv("v"))}}}}}}}}, []any{map[string]any{"k": "v"}}},
		{"empty", &commonpb.AnyValue{}, nil},
		{"nil", nil, nil},
	}
	for _, tt := range tests {
		if got := Value(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Value = %#v, want %#v", tt.name, got, tt.want)
		}
	}
}

func TestAttributesFlattensKeyValueLists(t *testing.T) {
	nested := &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{
		kv("a", sv("1")),
		kv("b", &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{kv("c", iv(2))}}}}),
	}}}}
	got := Attributes([]*commonpb.KeyValue{kv("http.request.header", nested), kv("", sv("no key")), nil, kv("plain", sv("p"))})
	want := map[string]any{"http.request.header.a": "1", "http.request.header.b.c": int64(2), "plain": "p"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if Attributes(nil) != nil {
		t.Fatal("no attributes must give a nil map")
	}
}
