package flatten

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshtrace/meshtrace/indexer/document"
)

// unlimited disables every limit.
var unlimited = Limits{-1, -1, -1, -1, -1, -1, -1, -1, -1}

// tinyLimits make limits reachable by the fuzzer's small inputs.
var tinyLimits = Limits{
	MaxSpans: 4, MaxAttributes: 4, MaxResourceAttributes: 3, MaxEvents: 2, MaxLinks: 2,
	MaxKeyBytes: 8, MaxValueBytes: 16, MaxArrayElements: 3, MaxDepth: 2,
}

func minimalSpan() *tracepb.Span {
	return &tracepb.Span{TraceId: traceID, SpanId: spanID, StartTimeUnixNano: 1_000, EndTimeUnixNano: 2_000}
}

func withAttrs(kvs ...*commonpb.KeyValue) *tracepb.Span {
	sp := minimalSpan()
	sp.Attributes = kvs
	return sp
}

func attrs(n int) []*commonpb.KeyValue {
	kvs := make([]*commonpb.KeyValue, n)
	for i := range kvs {
		kvs[i] = kv(fmt.Sprintf("k%d", i), iv(int64(i)))
	}
	return kvs
}

func kvlist(kvs ...*commonpb.KeyValue) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: kvs}}}
}

func array(vals ...*commonpb.AnyValue) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vals}}}
}

func one(sp *tracepb.Span) []*tracepb.ResourceSpans {
	return []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{sp}}}}}
}

const span0 = "resourceSpans[0].scopeSpans[0].spans[0]"

// TestLimits checks every limit at its default value on both paths: a request at the limit is flattened, one
// item (or byte, or level) above it is refused with the same error by Spans and FromProtobuf.
func TestLimits(t *testing.T) {
	d := DefaultLimits
	tests := []struct {
		name  string
		max   int                                  // the limit; the request is built at max and at max+1
		build func(n int) []*tracepb.ResourceSpans // a request holding n of what is limited
		want  string                               // the error at max+1
	}{
		{"spans", d.MaxSpans, func(n int) []*tracepb.ResourceSpans {
			spans := make([]*tracepb.Span, n)
			for i := range spans {
				spans[i] = minimalSpan()
			}
			half := n / 2 // spans of two resources count together
			return []*tracepb.ResourceSpans{
				{ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans[:half]}}},
				{ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans[half : half+1]}, {Spans: spans[half+1:]}}}}
		}, "65537 spans exceed the limit of 65536 (MaxSpans)"},
		{"span attributes", d.MaxAttributes, func(n int) []*tracepb.ResourceSpans {
			return one(withAttrs(attrs(n)...))
		}, span0 + ".attributes: 1025 attributes exceed the limit of 1024 (MaxAttributes)"},
		{"attributes of a flattened list", d.MaxAttributes, func(n int) []*tracepb.ResourceSpans {
			return one(withAttrs(kv("list", kvlist(attrs(n-1)...)))) // the list's pair counts too
		}, span0 + ".attributes: 1025 attributes exceed the limit of 1024 (MaxAttributes)"},
		{"attributes of a list in an array", d.MaxAttributes, func(n int) []*tracepb.ResourceSpans {
			return one(withAttrs(kv("a", sv("x")), kv("arr", array(kvlist(attrs(n-3)...), kvlist(kv("last", sv("y")))))))
		}, span0 + ".attributes: 1025 attributes exceed the limit of 1024 (MaxAttributes)"},
		{"event attributes", d.MaxAttributes, func(n int) []*tracepb.ResourceSpans {
			sp := minimalSpan()
			sp.Events = []*tracepb.Span_Event{{Name: "e"}, {Name: "e", Attributes: attrs(n)}}
			return one(sp)
		}, span0 + ".events[1].attributes: 1025 attributes exceed the limit of 1024 (MaxAttributes)"},
		{"link attributes", d.MaxAttributes, func(n int) []*tracepb.ResourceSpans {
			sp := minimalSpan()
			sp.Links = []*tracepb.Span_Link{{TraceId: traceID, SpanId: spanID, Attributes: attrs(n)}}
			return one(sp)
		}, span0 + ".links[0].attributes: 1025 attributes exceed the limit of 1024 (MaxAttributes)"},
		{"resource attributes", d.MaxResourceAttributes, func(n int) []*tracepb.ResourceSpans {
			rss := one(minimalSpan())
			rss[0].Resource = &resourcepb.Resource{Attributes: append(attrs(n - 1)[:n-1], kv("service.name", sv("s")))}
			return rss
		}, "resourceSpans[0].resource.attributes: 1025 attributes exceed the limit of 1024 (MaxResourceAttributes)"},
		{"events", d.MaxEvents, func(n int) []*tracepb.ResourceSpans {
			sp := minimalSpan()
			for range n {
				sp.Events = append(sp.Events, &tracepb.Span_Event{Name: "e", TimeUnixNano: 1_500})
			}
			return one(sp)
		}, span0 + ".events: 1025 events exceed the limit of 1024 (MaxEvents)"},
		{"links", d.MaxLinks, func(n int) []*tracepb.ResourceSpans {
			sp := minimalSpan()
			for range n {
				sp.Links = append(sp.Links, &tracepb.Span_Link{TraceId: traceID, SpanId: parent})
			}
			return one(sp)
		}, span0 + ".links: 1025 links exceed the limit of 1024 (MaxLinks)"},
		{"key", d.MaxKeyBytes, func(n int) []*tracepb.ResourceSpans {
			return one(withAttrs(kv("ok", sv("v")), kv(strings.Repeat("k", n), sv("v"))))
		}, span0 + ".attributes: a key of 1025 bytes exceeds the limit of 1024 (MaxKeyBytes)"},
		{"flattened key", d.MaxKeyBytes, func(n int) []*tracepb.ResourceSpans {
			return one(withAttrs(kv(strings.Repeat("p", n-2), kvlist(kv("k", sv("v")))))) // "ppp" + "." + "k"
		}, span0 + ".attributes: a key of 1025 bytes exceeds the limit of 1024 (MaxKeyBytes)"},
		{"string value", d.MaxValueBytes, func(n int) []*tracepb.ResourceSpans {
			return one(withAttrs(kv("body", sv(strings.Repeat("v", n)))))
		}, span0 + `.attributes["body"]: a value of 65537 bytes exceeds the limit of 65536 (MaxValueBytes)`},
		{"value in a flattened list", d.MaxValueBytes, func(n int) []*tracepb.ResourceSpans {
			return one(withAttrs(kv("http", kvlist(kv("body", sv(strings.Repeat("v", n)))))))
		}, span0 + `.attributes["http.body"]: a value of 65537 bytes exceeds the limit of 65536 (MaxValueBytes)`},
		{"array element", d.MaxValueBytes, func(n int) []*tracepb.ResourceSpans {
			return one(withAttrs(kv("arr", array(sv("a"), sv(strings.Repeat("v", n))))))
		}, span0 + `.attributes["arr"]: a value of 65537 bytes exceeds the limit of 65536 (MaxValueBytes)`},
		{"bytes value, base64", d.MaxValueBytes, func(n int) []*tracepb.ResourceSpans {
			raw := make([]byte, n/4*3+n%4) // 49152 bytes are 65536 in base64; 49153 are 65540
			return one(withAttrs(kv("b", &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: raw}})))
		}, span0 + `.attributes["b"]: a value of 65540 bytes exceeds the limit of 65536 (MaxValueBytes)`},
		{"resource value", d.MaxValueBytes, func(n int) []*tracepb.ResourceSpans {
			rss := one(minimalSpan())
			rss[0].Resource = &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", sv(strings.Repeat("s", n)))}}
			return rss
		}, `resourceSpans[0].resource.attributes["service.name"]: a value of 65537 bytes exceeds the limit of 65536 (MaxValueBytes)`},
		{"span name", d.MaxValueBytes, func(n int) []*tracepb.ResourceSpans {
			sp := minimalSpan()
			sp.Name = strings.Repeat("n", n)
			return one(sp)
		}, span0 + ".name: a value of 65537 bytes exceeds the limit of 65536 (MaxValueBytes)"},
		{"status message", d.MaxValueBytes, func(n int) []*tracepb.ResourceSpans {
			sp := minimalSpan()
			sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: strings.Repeat("m", n)}
			return one(sp)
		}, span0 + ".status.message: a value of 65537 bytes exceeds the limit of 65536 (MaxValueBytes)"},
		{"event name", d.MaxValueBytes, func(n int) []*tracepb.ResourceSpans {
			sp := minimalSpan()
			sp.Events = []*tracepb.Span_Event{{Name: strings.Repeat("e", n)}}
			return one(sp)
		}, span0 + ".events[0].name: a value of 65537 bytes exceeds the limit of 65536 (MaxValueBytes)"},
		{"scope name", d.MaxValueBytes, func(n int) []*tracepb.ResourceSpans {
			rss := one(minimalSpan())
			rss[0].ScopeSpans[0].Scope = &commonpb.InstrumentationScope{Name: strings.Repeat("s", n)}
			return rss
		}, "resourceSpans[0].scopeSpans[0].scope.name: a value of 65537 bytes exceeds the limit of 65536 (MaxValueBytes)"},
		{"array elements", d.MaxArrayElements, func(n int) []*tracepb.ResourceSpans {
			vals := make([]*commonpb.AnyValue, n)
			for i := range vals {
				vals[i] = iv(int64(i))
			}
			return one(withAttrs(kv("arr", array(vals...))))
		}, span0 + `.attributes["arr"]: 1025 array elements exceed the limit of 1024 (MaxArrayElements)`},
		{"nested arrays", d.MaxDepth, func(n int) []*tracepb.ResourceSpans {
			v := sv("leaf")
			for range n {
				v = array(v)
			}
			return one(withAttrs(kv("deep", v)))
		}, span0 + `.attributes["deep"]: values nested 9 deep exceed the limit of 8 (MaxDepth)`},
		{"nested lists", d.MaxDepth, func(n int) []*tracepb.ResourceSpans {
			v := sv("leaf")
			for range n {
				v = kvlist(kv("a", v))
			}
			return one(withAttrs(kv("a", v)))
		}, span0 + `.attributes["a.a.a.a.a.a.a.a.a"]: values nested 9 deep exceed the limit of 8 (MaxDepth)`},
		{"rejected span", d.MaxAttributes, func(n int) []*tracepb.ResourceSpans {
			sp := withAttrs(attrs(n)...)
			sp.SpanId = nil // rejected on its own, but the limits hold for it too
			return one(sp)
		}, span0 + ".attributes: 1025 attributes exceed the limit of 1024 (MaxAttributes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := tt.build(tt.max)
			if _, _, err := Spans(nil, at, DefaultLimits); err != nil {
				t.Fatalf("Spans refused a request at the limit: %v", err)
			}
			b := marshal(t, at...)
			if _, _, err := FromProtobuf(nil, b, DefaultLimits); err != nil {
				t.Fatalf("FromProtobuf refused a request at the limit: %v", err)
			}
			checkSame(t, b, DefaultLimits)

			over := tt.build(tt.max + 1)
			dst := make([]document.Span, 1, 4)
			got, _, err := Spans(dst, over, Limits{}) // the zero Limits are the defaults
			var le *LimitError
			if !errors.As(err, &le) || err.Error() != tt.want {
				t.Fatalf("Spans error %v, want %q", err, tt.want)
			}
			if len(got) != 1 {
				t.Fatalf("Spans returned %d documents with its error, want dst as passed", len(got))
			}
			b = marshal(t, over...)
			got, _, err = FromProtobuf(dst, b, DefaultLimits)
			if !errors.As(err, &le) || err.Error() != tt.want {
				t.Fatalf("FromProtobuf error %v, want %q", err, tt.want)
			}
			if len(got) != 1 {
				t.Fatalf("FromProtobuf returned %d documents with its error, want dst as passed", len(got))
			}
			if le.TooLarge() != (le.Limit == "MaxSpans") {
				t.Fatalf("TooLarge %v for %s", le.TooLarge(), le.Limit)
			}
			checkSame(t, b, DefaultLimits)
			if _, _, err := FromProtobuf(nil, b, unlimited); err != nil {
				t.Fatalf("without limits: %v", err)
			}
		})
	}
}

func TestLimitsResolve(t *testing.T) {
	got := Limits{MaxSpans: 10, MaxDepth: -1}.resolve()
	want := DefaultLimits
	want.MaxSpans, want.MaxDepth = 10, noLimit
	if got != want {
		t.Fatalf("resolve: %+v, want %+v", got, want)
	}
	if (Limits{}).resolve() != DefaultLimits {
		t.Fatal("the zero Limits must be DefaultLimits")
	}
}

// allocated returns the bytes f allocates and how long it takes.
func allocated(f func()) (uint64, time.Duration) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, took
}

// TestHostileInputsBounded measures what refusing hostile requests costs: the 16 MiB value, the 15 MiB key and
// the 313,500 spans that once took the indexer to 1.9 GB, 4.8 GB and 9.65 GB. Refusing them must copy none of
// them and take well under a second.
func TestHostileInputsBounded(t *testing.T) {
	spans := make([]*tracepb.Span, 313_500)
	for i := range spans {
		spans[i] = minimalSpan()
	}
	hostile := []struct {
		name  string
		rss   []*tracepb.ResourceSpans
		limit string
	}{
		{"16 MiB value", resourceSpans(withAttrs(kv("big", sv(strings.Repeat("x", 16<<20))))), "MaxValueBytes"},
		{"15 MiB key", resourceSpans(withAttrs(kv(strings.Repeat("k", 15<<20), sv("v")))), "MaxKeyBytes"},
		{"313,500 spans", resourceSpans(spans...), "MaxSpans"},
	}
	for _, h := range hostile {
		t.Run(h.name, func(t *testing.T) {
			b := marshal(t, h.rss...)
			var err error
			n, took := allocated(func() { _, _, err = FromProtobuf(nil, b, DefaultLimits) })
			var le *LimitError
			if !errors.As(err, &le) || le.Limit != h.limit {
				t.Fatalf("FromProtobuf: %v, want a %s error", err, h.limit)
			}
			t.Logf("FromProtobuf refused a %d-byte body (%s) allocating %d bytes in %v", len(b), le.Limit, n, took)
			if n > 64<<10 || took > time.Second {
				t.Errorf("FromProtobuf allocated %d bytes in %v to refuse it; want under 64 KiB and a second", n, took)
			}
			n, took = allocated(func() { _, _, err = Spans(nil, h.rss, DefaultLimits) })
			if !errors.As(err, &le) || le.Limit != h.limit {
				t.Fatalf("Spans: %v, want a %s error", err, h.limit)
			}
			t.Logf("Spans refused it allocating %d bytes in %v", n, took)
			if n > 64<<10 || took > time.Second {
				t.Errorf("Spans allocated %d bytes in %v to refuse it; want under 64 KiB and a second", n, took)
			}
		})
	}
}

// TestAllocationProportionalToBody bounds what flattening an accepted request allocates, relative to its body:
// a request of many small attributes, arrays and lists is the worst case per byte.
func TestAllocationProportionalToBody(t *testing.T) {
	small := make([]*commonpb.KeyValue, 0, DefaultLimits.MaxAttributes)
	for i := range DefaultLimits.MaxAttributes / 4 {
		small = append(small, kv(fmt.Sprint(i), iv(1)), kv("a", array(iv(1), iv(2))), kv("l", kvlist(kv("x", iv(1)))))
	}
	spans := make([]*tracepb.Span, 64)
	for i := range spans {
		spans[i] = withAttrs(small...)
	}
	b := marshal(t, resourceSpans(spans...)...)
	var docs []document.Span
	var err error
	n, _ := allocated(func() { docs, _, err = FromProtobuf(nil, b, DefaultLimits) })
	if err != nil || len(docs) != len(spans) {
		t.Fatalf("%d documents, %v", len(docs), err)
	}
	ratio := float64(n) / float64(len(b))
	t.Logf("FromProtobuf allocated %d bytes for a %d-byte body: %.1f times", n, len(b), ratio)
	if ratio > 16 {
		t.Errorf("FromProtobuf allocated %.1f times the body size, want at most 16", ratio)
	}
}

// mergeOverLimit is a span whose array values merge (see TestFromProtobufMergeRules) across a limit: an
// array over MaxArrayElements replaced by a scalar, and arrays that concatenate over it.
func mergeOverLimit(t testing.TB) []byte {
	big := marshalMsg(t, array(iv(1), iv(2), iv(3), iv(4), iv(5)))
	small := marshalMsg(t, array(iv(1), iv(2)))
	attr := func(key string, values ...[]byte) []byte {
		b := protowire.AppendTag(nil, 1, protowire.BytesType)
		b = protowire.AppendString(b, key)
		for _, v := range values {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendBytes(b, v)
		}
		return b
	}
	span := marshalMsg(t, minimalSpan())
	span = append(span, field(9, attr("replaced", big, marshalMsg(t, sv("x"))))...)
	span = append(span, field(9, attr("concat", small, small))...)
	return field(1, field(2, field(2, span)))
}

// TestLimitsAfterMerge checks that limits apply to values as protobuf merges them: an array over the limit
// that a later occurrence replaces is no violation, arrays that are each within it but concatenate over it are.
func TestLimitsAfterMerge(t *testing.T) {
	b := mergeOverLimit(t)
	checkSame(t, b, tinyLimits)
	_, _, err := FromProtobuf(nil, b, tinyLimits)
	want := span0 + `.attributes["concat"]: 4 array elements exceed the limit of 3 (MaxArrayElements)`
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
}
