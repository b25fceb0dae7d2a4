package otlpjson

import (
	"errors"
	"math"
	"os"
	"strings"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func strValue(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

// TestDecodeSpecExample decodes the trace example of the opentelemetry-proto repository (examples/trace.json).
func TestDecodeSpecExample(t *testing.T) {
	data, err := os.ReadFile("testdata/trace.json")
	if err != nil {
		t.Fatal(err)
	}
	var d Decoder
	got, err := d.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: strValue("my.service")}}},
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "my.library", Version: "1.0.0",
				Attributes: []*commonpb.KeyValue{{Key: "my.scope.attribute", Value: strValue("some scope attribute")}}},
			Spans: []*tracepb.Span{{
				TraceId:           []byte{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c},
				SpanId:            []byte{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74},
				ParentSpanId:      []byte{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73},
				Name:              "I'm a server span",
				StartTimeUnixNano: 1544712660000000000,
				EndTimeUnixNano:   1544712661000000000,
				Kind:              tracepb.Span_SPAN_KIND_SERVER,
				Attributes:        []*commonpb.KeyValue{{Key: "my.span.attr", Value: strValue("some value")}},
			}},
		}},
	}}}
	if !proto.Equal(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

// TestDecodeAllFields covers every field and value type, numbers given as strings and as JSON numbers, enum
// names, snake_case names and unknown fields.
func TestDecodeAllFields(t *testing.T) {
	const in = `{"resource_spans":[{"schemaUrl":"s1","resource":{"droppedAttributesCount":1,"unknown":{"a":[1]}},
	  "scopeSpans":[{"schemaUrl":"s2","spans":[{
	    "traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","traceState":"k=v","flags":257,
	    "name":"n","kind":"SPAN_KIND_CLIENT","start_time_unix_nano":1000,"endTimeUnixNano":"2000",
	    "attributes":[
	      {"key":"b","value":{"boolValue":true}},
	      {"key":"i","value":{"intValue":"-9007199254740993"}},
	      {"key":"i2","value":{"intValue":42}},
	      {"key":"d","value":{"doubleValue":1.5}},
	      {"key":"nan","value":{"doubleValue":"NaN"}},
	      {"key":"by","value":{"bytesValue":"AQI="}},
	      {"key":"arr","value":{"arrayValue":{"values":[{"stringValue":"x"},{"intValue":"1"}]}}},
	      {"key":"kv","value":{"kvlistValue":{"values":[{"key":"in","value":{"stringValue":"y"}}]}}},
	      {"key":"empty","value":{}}],
	    "droppedAttributesCount":2,"droppedEventsCount":3,"droppedLinksCount":4,
	    "events":[{"timeUnixNano":"1500","name":"e","attributes":[{"key":"ek","value":{"stringValue":"ev"}}],"droppedAttributesCount":5}],
	    "links":[{"traceId":"1112131415161718191a1b1c1d1e1f20","spanId":"1112131415161718","traceState":"t","flags":1,
	      "attributes":[{"key":"lk","value":{"stringValue":"lv"}}],"droppedAttributesCount":6}],
	    "status":{"code":2,"message":"boom"}}]}]}]}`
	var d Decoder
	got, err := d.Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	rs := got.ResourceSpans[0]
	sp := rs.ScopeSpans[0].Spans[0]
	checks := []struct {
		name string
		ok   bool
	}{
		{"schema urls", rs.SchemaUrl == "s1" && rs.ScopeSpans[0].SchemaUrl == "s2"},
		{"resource dropped", rs.Resource.DroppedAttributesCount == 1},
		{"ids", len(sp.TraceId) == 16 && sp.TraceId[15] == 0x10 && len(sp.SpanId) == 8},
		{"trace state and flags", sp.TraceState == "k=v" && sp.Flags == 257},
		{"kind by name", sp.Kind == tracepb.Span_SPAN_KIND_CLIENT},
		{"times", sp.StartTimeUnixNano == 1000 && sp.EndTimeUnixNano == 2000},
		{"bool", sp.Attributes[0].Value.GetBoolValue()},
		{"int string", sp.Attributes[1].Value.GetIntValue() == -9007199254740993},
		{"int number", sp.Attributes[2].Value.GetIntValue() == 42},
		{"double", sp.Attributes[3].Value.GetDoubleValue() == 1.5},
		{"NaN", math.IsNaN(sp.Attributes[4].Value.GetDoubleValue())},
		{"bytes", string(sp.Attributes[5].Value.GetBytesValue()) == "\x01\x02"},
		{"array", len(sp.Attributes[6].Value.GetArrayValue().GetValues()) == 2},
		{"kvlist", sp.Attributes[7].Value.GetKvlistValue().GetValues()[0].Value.GetStringValue() == "y"},
		{"empty value", sp.Attributes[8].Value.GetValue() == nil},
		{"dropped counts", sp.DroppedAttributesCount == 2 && sp.DroppedEventsCount == 3 && sp.DroppedLinksCount == 4},
		{"event", sp.Events[0].TimeUnixNano == 1500 && sp.Events[0].Name == "e" && sp.Events[0].Attributes[0].Key == "ek" && sp.Events[0].DroppedAttributesCount == 5},
		{"link", len(sp.Links[0].TraceId) == 16 && sp.Links[0].TraceState == "t" && sp.Links[0].Flags == 1 && sp.Links[0].Attributes[0].Key == "lk" && sp.Links[0].DroppedAttributesCount == 6},
		{"status", sp.Status.Code == tracepb.Status_STATUS_CODE_ERROR && sp.Status.Message == "boom"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: wrong in %v", c.name, sp)
		}
	}
}

func TestDecodeInvalidHexIDIsNotAnError(t *testing.T) {
	var d Decoder
	got, err := d.Decode([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":"0102030405060708"}]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if id := got.ResourceSpans[0].ScopeSpans[0].Spans[0].TraceId; len(id) != 1 {
		t.Fatalf("trace id = %x, want a one-byte id", id)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"not json", `{"resourceSpans":`, "invalid JSON"},
		{"top-level array", `[]`, "expected an object, got array"},
		{"resourceSpans not array", `{"resourceSpans":{}}`, "resourceSpans: expected an array, got object"},
		{"spans not array", `{"resourceSpans":[{"scopeSpans":[{"spans":"x"}]}]}`, "resourceSpans[0].scopeSpans[0].spans: expected an array, got string"},
		{"span not object", `{"resourceSpans":[{"scopeSpans":[{"spans":[1]}]}]}`, "resourceSpans[0].scopeSpans[0].spans[0]: expected an object, got number"},
		{"bad time", `{"resourceSpans":[{"scopeSpans":[{},{"spans":[{"startTimeUnixNano":"soon"}]}]}]}`, `resourceSpans[0].scopeSpans[1].spans[0].startTimeUnixNano: invalid unsigned integer "soon"`},
		{"negative time", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"endTimeUnixNano":-1}]}]}]}`, `endTimeUnixNano: invalid unsigned integer "-1"`},
		{"time as bool", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"endTimeUnixNano":true}]}]}]}`, "endTimeUnixNano: expected an unsigned integer, got true"},
		{"name not string", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":7}]}]}]}`, "spans[0].name: expected a string, got number"},
		{"trace id not string", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":7}]}]}]}`, "spans[0].traceId: expected a string, got number"},
		{"unknown kind", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_WEIRD"}]}]}]}`, `spans[0].kind: unknown enum value "SPAN_KIND_WEIRD"`},
		{"kind too big", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":1e12}]}]}]}`, "spans[0].kind: expected an enum integer"},
		{"flags overflow", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"flags":4294967296}]}]}]}`, `spans[0].flags: invalid 32-bit unsigned integer "4294967296"`},
		{"bad int attr", `{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":{"intValue":"1.5"}}]}}]}`, `resourceSpans[0].resource.attributes[0].value.intValue: invalid integer "1.5"`},
		{"bad double attr", `{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":{"doubleValue":"x"}}]}}]}`, `value.doubleValue: invalid number "x"`},
		{"bad base64", `{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":{"bytesValue":"!!"}}]}}]}`, "value.bytesValue: invalid base64"},
		{"bool as string", `{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":{"boolValue":"true"}}]}}]}`, "value.boolValue: expected a boolean, got string"},
		{"status not object", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"status":[]}]}]}]}`, "spans[0].status: expected an object, got array"},
		{"too deep", `{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":` + strings.Repeat(`{"arrayValue":{"values":[`, 14) + strings.Repeat(`]}}`, 14) + `}]}}]}`, "nested deeper than 12 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Decoder
			_, err := d.Decode([]byte(tt.in))
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("error = %v, want *Error", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// FuzzDecode checks that no input crashes the decoder, that failures are *Error values with a message, and
// that a reused Decoder gives the same result as a fresh one.
func FuzzDecode(f *testing.F) {
	if data, err := os.ReadFile("testdata/trace.json"); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var reused Decoder
		_, _ = reused.Decode([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"warm"}]}]}]}`))
		got, err := reused.Decode(data)
		var fresh Decoder
		again, err2 := fresh.Decode(data)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("reused decoder error %v, fresh decoder error %v", err, err2)
		}
		if err != nil {
			var de *Error
			if !errors.As(err, &de) || err.Error() == "" {
				t.Fatalf("error %v is not a described *Error", err)
			}
			return
		}
		if !proto.Equal(got, again) {
			t.Fatalf("reused decoder gave %v, fresh decoder %v", got, again)
		}
		if _, err := proto.Marshal(got); err != nil {
			t.Fatalf("decoded request does not marshal: %v", err)
		}
	})
}
