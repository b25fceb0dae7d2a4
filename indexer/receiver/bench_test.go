package receiver

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/indexer/flatten"
	"github.com/meshtrace/meshtrace/indexer/otlpjson"
)

const benchSpans = 1000

// meshRequest is an export shaped like the filter's: one resource, spans with the HTTP semantic-convention
// attributes and a business key.
func meshRequest(n int) *coltracepb.ExportTraceServiceRequest {
	s := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	i := func(k string, v int64) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
	}
	spans := make([]*tracepb.Span, n)
	for k := range spans {
		start := uint64(1_700_000_000_000_000_000 + k*1_000_000)
		spans[k] = &tracepb.Span{
			TraceId: []byte(fmt.Sprintf("%016x", k/5)), SpanId: []byte(fmt.Sprintf("%08x", k+1)), ParentSpanId: []byte(fmt.Sprintf("%08x", k+100000)),
			Name: "GET /api/cart/{id}", Kind: tracepb.Span_SPAN_KIND_SERVER, StartTimeUnixNano: start, EndTimeUnixNano: start + 12_345_678,
			Attributes: []*commonpb.KeyValue{
				s("http.request.method", "GET"), s("url.path", fmt.Sprintf("/api/cart/%d", k)), s("url.scheme", "http"),
				s("http.route", "/api/cart/{id}"), i("http.response.status_code", 200), s("server.address", "checkout.shop.svc.cluster.local"),
				i("server.port", 8080), s("client.address", "10.0.3.17"), s("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)"),
				s("customer_id", fmt.Sprint(100+k%50)), s("network.peer.address", "10.0.3.17"), s("meshtrace.direction", "inbound"),
			},
			Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_UNSET},
		}
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			s("service.name", "checkout"), s("service.namespace", "shop"), s("k8s.pod.name", "checkout-7d9f8b6c5-x2x9z"),
			s("k8s.namespace.name", "shop"), s("telemetry.sdk.name", "meshtrace"),
		}},
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "meshtrace", Version: "0.1.0"}, Spans: spans}},
	}}}
}

// toJSON writes the OTLP/JSON encoding of a request built by meshRequest (hex ids, 64-bit integers as strings).
func toJSON(req *coltracepb.ExportTraceServiceRequest) []byte {
	var b bytes.Buffer
	attrs := func(kvs []*commonpb.KeyValue) {
		b.WriteString(`"attributes":[`)
		for i, kv := range kvs {
			if i > 0 {
				b.WriteByte(',')
			}
			switch v := kv.Value.Value.(type) {
			case *commonpb.AnyValue_StringValue:
				fmt.Fprintf(&b, `{"key":%q,"value":{"stringValue":%q}}`, kv.Key, v.StringValue)
			case *commonpb.AnyValue_IntValue:
				fmt.Fprintf(&b, `{"key":%q,"value":{"intValue":"%d"}}`, kv.Key, v.IntValue)
			}
		}
		b.WriteByte(']')
	}
	rs := req.ResourceSpans[0]
	b.WriteString(`{"resourceSpans":[{"resource":{`)
	attrs(rs.Resource.Attributes)
	fmt.Fprintf(&b, `},"scopeSpans":[{"scope":{"name":%q,"version":%q},"spans":[`, rs.ScopeSpans[0].Scope.Name, rs.ScopeSpans[0].Scope.Version)
	for i, sp := range rs.ScopeSpans[0].Spans {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"traceId":%q,"spanId":%q,"parentSpanId":%q,"name":%q,"kind":%d,"startTimeUnixNano":"%d","endTimeUnixNano":"%d",`,
			hex.EncodeToString(sp.TraceId), hex.EncodeToString(sp.SpanId), hex.EncodeToString(sp.ParentSpanId), sp.Name, sp.Kind,
			sp.StartTimeUnixNano, sp.EndTimeUnixNano)
		attrs(sp.Attributes)
		fmt.Fprintf(&b, `,"status":{"code":%d}}`, sp.Status.Code)
	}
	b.WriteString(`]}]}]}`)
	return b.Bytes()
}

// cpuTime is the CPU time used by the process so far (user and system, all threads).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBenchInputsAgree guards the benchmark: both encodings decode to the same request.
func TestBenchInputsAgree(t *testing.T) {
	req := meshRequest(3)
	var d otlpjson.Decoder
	got, err := d.Decode(toJSON(req))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, req) {
		t.Fatalf("JSON decodes to %v\nwant %v", got, req)
	}
}

// BenchmarkDecodeFlatten measures what the OTLP/HTTP receiver does with a body before logging it: decoding and
// flattening it into span documents to validate it (protobuf straight from the wire; JSON through the OTLP
// types, then re-encoded as the protobuf record), on one goroutine;
// spans/s is the per-core throughput.
func BenchmarkDecodeFlatten(b *testing.B) {
	req := meshRequest(benchSpans)
	pb, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	bodies := map[encoding][]byte{protobufEncoding: pb, jsonEncoding: toJSON(req)}
	for _, enc := range []encoding{protobufEncoding, jsonEncoding} {
		name := map[encoding]string{protobufEncoding: "protobuf", jsonEncoding: "json"}[enc]
		b.Run(name, func(b *testing.B) {
			r := newReceiver(b, &recorder{}, Config{})
			body := bodies[enc]
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			for b.Loop() {
				a, err := r.decodeHTTP(enc, body)
				if err != nil {
					b.Fatal(err)
				}
				if a.rej.Count != 0 || a.spans != benchSpans {
					b.Fatalf("flattened %d spans, rejected %s", a.spans, a.rej.Summary())
				}
			}
			b.ReportMetric(float64(b.N*benchSpans)/b.Elapsed().Seconds(), "spans/s")
			// The machine may be shared: CPU time of the process (GC included) gives the per-core rate.
			b.ReportMetric(float64(b.N*benchSpans)/(cpuTime(b)-cpu0).Seconds(), "spans/cpu-s")
		})
	}
}

// BenchmarkStages shows where the time goes: the generated protobuf code alone and followed by flatten (the
// gRPC path, and the alternative to flatten.FromProtobuf), the wire walk building documents (the pipeline) and
// only validating (the receiver), the JSON decoder, and flatten alone.
func BenchmarkStages(b *testing.B) {
	req := meshRequest(benchSpans)
	pb, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	js := toJSON(req)
	var d otlpjson.Decoder
	stages := []struct {
		name string
		run  func()
	}{
		{"protobuf-unmarshal", func() { _ = proto.Unmarshal(pb, &coltracepb.ExportTraceServiceRequest{}) }},
		{"protobuf-unmarshal+flatten", func() {
			var req coltracepb.ExportTraceServiceRequest
			_ = proto.Unmarshal(pb, &req)
			_, _, _ = flatten.Spans(nil, req.ResourceSpans, flatten.Limits{})
		}},
		{"wire-flatten-pipeline", func() { _, _, _ = flatten.FromProtobuf(nil, pb, flatten.Limits{}) }},
		{"wire-validate-receiver", func() { _, _, _ = flatten.Validate(pb, flatten.Limits{}) }},
		{"json-decode", func() { _, _ = d.Decode(js) }},
		{"flatten", func() { _, _, _ = flatten.Spans(nil, req.ResourceSpans, flatten.Limits{}) }},
	}
	for _, st := range stages {
		b.Run(st.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			for b.Loop() {
				st.run()
			}
			b.ReportMetric(float64(b.N*benchSpans)/(cpuTime(b)-cpu0).Seconds(), "spans/cpu-s")
		})
	}
}

// BenchmarkTenantIngest prices ingest tenancy on the whole OTLP/HTTP path of a 1,000-span protobuf request
// (handler, validation, the log append into memory): without tenancy, with an ingest token (the tenant
// record's header and copy), and with per-tenant rate limits as well.
func BenchmarkTenantIngest(b *testing.B) {
	pb, err := proto.Marshal(meshRequest(benchSpans))
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"none", Config{}},
		{"token", Config{Tenancy: tokens}},
		{"token+limits", Config{Tenancy: tokens, TenantLimits: TenantLimits{SpansPerSecond: 1e12, BytesPerSecond: 1e15}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := newReceiver(b, discardLog{}, tc.cfg)
			b.SetBytes(int64(len(pb)))
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, TracesPath, bytes.NewReader(pb))
				req.Header.Set("Content-Type", "application/x-protobuf")
				req.Header.Set("Authorization", "Bearer token-of-team-a")
				w := httptest.NewRecorder()
				r.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%d: %s", w.Code, w.Body)
				}
			}
			b.ReportMetric(float64(b.N*benchSpans)/(cpuTime(b)-cpu0).Seconds(), "spans/cpu-s")
		})
	}
}

// discardLog is a Log that keeps nothing.
type discardLog struct{}

func (discardLog) Append(context.Context, ...[]byte) error { return nil }
