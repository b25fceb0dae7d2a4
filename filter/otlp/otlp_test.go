package otlp

import (
	"testing"

	"github.com/meshtrace/meshtrace/filter/span"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	common "go.opentelemetry.io/proto/otlp/common/v1"
	resource "go.opentelemetry.io/proto/otlp/resource/v1"
	trace "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

func str(k, v string) *common.KeyValue {
	return &common.KeyValue{Key: k, Value: &common.AnyValue{Value: &common.AnyValue_StringValue{StringValue: v}}}
}

func TestAppendRequestDecodes(t *testing.T) {
	tid := span.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	spans := []span.Span{
		{
			TraceID: tid, SpanID: span.SpanID{1, 1, 1, 1, 1, 1, 1, 1}, ParentSpanID: span.SpanID{2, 2, 2, 2, 2, 2, 2, 2},
			TraceState: "rojo=1", Flags: 1, Name: "GET", Kind: span.KindServer,
			StartUnixNano: 1_700_000_000_000_000_000, EndUnixNano: 1_700_000_000_250_000_000,
			Attrs: []span.Attr{
				span.String("http.request.method", "GET"),
				span.Int("http.response.status_code", 503),
				span.Int("negative", -7),
				span.Bool("yes", true),
				span.Bool("no", false),
				span.String("empty", ""),
			},
			Status: span.StatusError, StatusMessage: "upstream reset",
		},
		{
			TraceID: tid, SpanID: span.SpanID{3}, Name: "process orders", Kind: span.KindConsumer,
			StartUnixNano: 5, EndUnixNano: 6,
			Links: []span.Link{{TraceID: span.TraceID{9}, SpanID: span.SpanID{8}, TraceState: "a=b",
				Attrs: []span.Attr{span.String("k", "v")}}},
		},
	}
	var b Batch
	for i := range spans {
		b.Add(&spans[i])
	}
	if b.Len() != 2 {
		t.Fatalf("Len = %d", b.Len())
	}
	r := &Resource{Attrs: []span.Attr{span.String("service.name", "checkout")}, ScopeName: "meshtrace-filter", ScopeVersion: "0.1.0"}
	data := AppendRequest([]byte("prefix"), r, &b)[len("prefix"):]

	var got coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &got); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	want := &coltrace.ExportTraceServiceRequest{ResourceSpans: []*trace.ResourceSpans{{
		Resource: &resource.Resource{Attributes: []*common.KeyValue{str("service.name", "checkout")}},
		ScopeSpans: []*trace.ScopeSpans{{
			Scope: &common.InstrumentationScope{Name: "meshtrace-filter", Version: "0.1.0"},
			Spans: []*trace.Span{
				{
					TraceId: tid[:], SpanId: []byte{1, 1, 1, 1, 1, 1, 1, 1}, ParentSpanId: []byte{2, 2, 2, 2, 2, 2, 2, 2},
					TraceState: "rojo=1", Flags: 1, Name: "GET", Kind: trace.Span_SPAN_KIND_SERVER,
					StartTimeUnixNano: 1_700_000_000_000_000_000, EndTimeUnixNano: 1_700_000_000_250_000_000,
					Attributes: []*common.KeyValue{
						str("http.request.method", "GET"),
						{Key: "http.response.status_code", Value: &common.AnyValue{Value: &common.AnyValue_IntValue{IntValue: 503}}},
						{Key: "negative", Value: &common.AnyValue{Value: &common.AnyValue_IntValue{IntValue: -7}}},
						{Key: "yes", Value: &common.AnyValue{Value: &common.AnyValue_BoolValue{BoolValue: true}}},
						{Key: "no", Value: &common.AnyValue{Value: &common.AnyValue_BoolValue{BoolValue: false}}},
						str("empty", ""),
					},
					Status: &trace.Status{Code: trace.Status_STATUS_CODE_ERROR, Message: "upstream reset"},
				},
				{
					TraceId: tid[:], SpanId: []byte{3, 0, 0, 0, 0, 0, 0, 0}, Name: "process orders",
					Kind: trace.Span_SPAN_KIND_CONSUMER, StartTimeUnixNano: 5, EndTimeUnixNano: 6,
					Links: []*trace.Span_Link{{
						TraceId: []byte{9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, SpanId: []byte{8, 0, 0, 0, 0, 0, 0, 0},
						TraceState: "a=b", Attributes: []*common.KeyValue{str("k", "v")},
					}},
				},
			},
		}},
	}}}
	if !proto.Equal(want, &got) {
		t.Fatalf("decoded request differs\nwant: %s\ngot:  %s", prototext.Format(want), prototext.Format(&got))
	}
}

// TestLongMessages covers length prefixes of more than one varint byte at every nesting level.
func TestLongMessages(t *testing.T) {
	long := make([]byte, 20000)
	for i := range long {
		long[i] = 'x'
	}
	s := span.Span{TraceID: span.TraceID{1}, SpanID: span.SpanID{1}, Name: "n", Attrs: []span.Attr{span.String("big", string(long))}}
	var b Batch
	for i := 0; i < 3; i++ {
		b.Add(&s)
	}
	var got coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(AppendRequest(nil, &Resource{}, &b), &got); err != nil {
		t.Fatal(err)
	}
	spans := got.ResourceSpans[0].ScopeSpans[0].Spans
	if len(spans) != 3 || spans[2].Attributes[0].Value.GetStringValue() != string(long) {
		t.Fatalf("decoded %d spans", len(spans))
	}
	b.Reset()
	if b.Len() != 0 || len(AppendRequest(nil, &Resource{}, &b)) == 0 {
		t.Fatal("Reset did not empty the batch")
	}
}
