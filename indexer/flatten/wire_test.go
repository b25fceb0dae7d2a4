package flatten

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/indexer/document"
)

// viaTree is the reference: the generated protobuf code, then Spans. decodeErr is proto.Unmarshal's error,
// err that of Spans.
func viaTree(b []byte, lim Limits) (docs []document.Span, rej Rejected, decodeErr, err error) {
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		return nil, Rejected{}, err, nil
	}
	docs, rej, err = Spans(nil, req.ResourceSpans, lim)
	return docs, rej, nil, err
}

// checkSame asserts FromProtobuf's contract on b under lim: where the generated code decodes b, FromProtobuf
// gives the same documents and rejections, or refuses b with the same *LimitError as Spans; where FromProtobuf
// fails to decode b, so does the generated code.
func checkSame(t *testing.T, b []byte, lim Limits) {
	t.Helper()
	want, wantRej, decodeErr, wantErr := viaTree(b, lim)
	got, gotRej, err := FromProtobuf(nil, b, lim)
	// Validate walks exactly as FromProtobuf does, building nothing.
	valid, vRej, vErr := Validate(b, lim)
	if !reflect.DeepEqual(vErr, err) || vRej != gotRej || (err == nil && valid != len(got)) {
		t.Fatalf("Validate = %d, %+v, %v; FromProtobuf = %d documents, %+v, %v", valid, vRej, vErr, len(got), gotRej, err)
	}
	if decodeErr != nil {
		return // FromProtobuf may skip what it does not need, malformed or not, and may stop at a limit first
	}
	var le *LimitError
	switch {
	case wantErr != nil || errors.As(err, &le):
		if !reflect.DeepEqual(err, wantErr) {
			t.Fatalf("FromProtobuf error %v, Spans error %v", err, wantErr)
		}
		return
	case err != nil:
		t.Fatalf("FromProtobuf failed (%v) where proto.Unmarshal succeeded", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FromProtobuf documents differ:\n got %+v\nwant %+v", got, want)
	}
	if gotRej != wantRej {
		t.Fatalf("FromProtobuf rejections %+v, want %+v", gotRej, wantRej)
	}
}

func marshal(t testing.TB, rss ...*tracepb.ResourceSpans) []byte {
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wireSamples(t testing.TB) map[string][]byte {
	full := validSpan()
	full.Attributes = append(full.Attributes,
		kv("d", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: math.Inf(1)}}),
		kv("big", iv(1<<60)),
		kv("b", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}),
		kv("by", &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{1, 2, 3}}}),
		kv("arr", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{
			sv("x"), {}, {Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{kv("k", iv(1))}}}}}}}}),
		kv("kv", &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{kv("in", sv("y")), kv("", sv("no key"))}}}}),
		kv("strindex", &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValueStrindex{StringValueStrindex: 3}}),
		kv("", sv("no key")), &commonpb.KeyValue{Key: "novalue"})
	bad := validSpan()
	bad.SpanId = nil
	root := validSpan()
	root.ParentSpanId, root.Links, root.Events, root.Status, root.Attributes = nil, nil, nil, nil, nil
	return map[string][]byte{
		"full":        marshal(t, resourceSpans(full, bad, root)...),
		"no resource": marshal(t, &tracepb.ResourceSpans{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{root}}}}),
		"two resources": marshal(t, resourceSpans(root)[0], &tracepb.ResourceSpans{
			Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", sv(""))}},
			ScopeSpans: []*tracepb.ScopeSpans{{}, {Spans: []*tracepb.Span{bad, full}}}}),
		"empty": nil,
		"envoy": marshal(t, resourceSpans(envoySpan(), root)...),
	}
}

func TestFromProtobufMatchesGeneratedCode(t *testing.T) {
	for name, b := range wireSamples(t) {
		t.Run(name, func(t *testing.T) {
			checkSame(t, b, DefaultLimits)
			if _, _, err := FromProtobuf(nil, b, DefaultLimits); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFromProtobufMergeRules covers protobuf's rules for repeated occurrences of singular fields, which the
// generated code applies and a hand-written walker could miss.
func TestFromProtobufMergeRules(t *testing.T) {
	span := marshalMsg(t, validSpan())
	status := func(code int32, msg string) []byte {
		var b []byte
		if msg != "" {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendString(b, msg)
		}
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(code))
	}
	anyArray := func(vals ...*commonpb.AnyValue) []byte {
		return marshalMsg(t, &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vals}}})
	}
	attr := func(key string, values ...[]byte) []byte { // a KeyValue with several value occurrences
		var b []byte
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, key)
		for _, v := range values {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendBytes(b, v)
		}
		return b
	}
	extra := [][]byte{
		field(15, status(2, "first")), field(15, status(1, "")), // status merges: code 1, message "first"
		field(5, []byte("renamed")),                                         // last name wins
		field(9, attr("merged", anyArray(sv("a")), anyArray(sv("b")))),      // arrays concatenate
		field(9, attr("replaced", anyArray(sv("a")), marshalMsg(t, iv(7)))), // a scalar replaces
		field(9, attr("again", marshalMsg(t, iv(7)), anyArray(sv("z")))),    // an array replaces
		varintField(2, 5),  // span_id with the wrong wire type: unknown field
		varintField(99, 1), // unknown field
	}
	for _, e := range extra {
		span = append(span, e...)
	}
	scope := field(2, span)
	rs := field(2, scope)
	req := field(1, rs)
	checkSame(t, req, DefaultLimits)
	docs, _, err := FromProtobuf(nil, req, DefaultLimits)
	if err != nil || len(docs) != 1 {
		t.Fatalf("docs %v, err %v", docs, err)
	}
	d := docs[0]
	if d.StatusCode != "ok" || d.StatusMessage != "first" || d.Name != "renamed" ||
		!reflect.DeepEqual(d.Attr["merged"], []any{"a", "b"}) || d.Attr["replaced"] != int64(7) || !reflect.DeepEqual(d.Attr["again"], []any{"z"}) {
		t.Fatalf("merge rules not applied: %+v", d)
	}
}

func TestFromProtobufErrors(t *testing.T) {
	deep := func(levels int) []byte {
		v := marshalMsg(t, sv("leaf"))
		for range levels {
			var arr []byte
			arr = protowire.AppendTag(arr, 1, protowire.BytesType)
			arr = protowire.AppendBytes(arr, v)
			v = field(5, arr)
		}
		kvb := append(field(1, []byte("k")), field(2, v)...)
		span := append(marshalMsg(t, validSpan()), field(9, kvb)...)
		return field(1, field(2, field(2, span)))
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"truncated", marshal(t, resourceSpans(validSpan())...)[:40], "unexpected EOF"},
		{"bad tag", []byte{0x00}, "invalid field number"},
		{"invalid UTF-8 name", field(1, field(2, field(2, field(5, []byte{0xff})))), "invalid UTF-8"},
		{"too deep", deep(maxWireDepth + 1), "recursion depth"},
	}
	for _, tt := range tests {
		_, _, err := FromProtobuf(nil, tt.in, unlimited)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
		if _, _, treeErr, _ := viaTree(tt.in, unlimited); treeErr == nil {
			t.Errorf("%s: proto.Unmarshal accepts what FromProtobuf refuses", tt.name)
		}
	}
	checkSame(t, deep(maxWireDepth-10), unlimited)
}

func marshalMsg(t testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func field(num protowire.Number, b []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
}

func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

// FuzzFromProtobuf is the differential check: on any input, FromProtobuf agrees with the generated code.
func FuzzFromProtobuf(f *testing.F) {
	for _, b := range wireSamples(f) {
		f.Add(b)
	}
	f.Add(readEnvoyFixture(f))
	f.Add(readFixture(f, envoyUpstreamFixture))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkSame(t, b, DefaultLimits)
		checkSame(t, b, tinyLimits)
	})
}
