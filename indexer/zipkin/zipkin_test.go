package zipkin

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/meshtrace/meshtrace/indexer/flatten"
)

// envoySpans is what Envoy 1.40's Zipkin tracer posts for one request through a sidecar (shape as Envoy
// sends it: 64-bit-or-128-bit hex ids, microsecond times, string tags, shared server spans).
const envoySpans = `[{"traceId":"0af7651916cd43dd8448eb211c80319c","id":"b7ad6b7169203331","parentId":"00f067aa0ba902b7",
 "name":"frontend.default.svc.cluster.local:8080/*","kind":"SERVER","timestamp":1700000000000000,"duration":1500,
 "localEndpoint":{"serviceName":"frontend.default","ipv4":"10.0.0.7"},"shared":true,
 "remoteEndpoint":{"ipv4":"10.0.0.9","port":51234},
 "tags":{"component":"proxy","http.method":"GET","http.status_code":"503","error":"true","istio.canonical_service":"frontend"},
 "annotations":[{"timestamp":1700000000000500,"value":"retry"}]},
 {"traceId":"8448eb211c80319c","id":"c7ad6b7169203331","name":"router egress","kind":"CLIENT","timestamp":1700000000000100,"duration":900,
 "localEndpoint":{"serviceName":"frontend.default"},"tags":{"component":"proxy"}},
 {"traceId":"zz","id":"d7ad6b7169203331","name":"bad trace id","localEndpoint":{"serviceName":"checkout.default"}}]`

func TestDecode(t *testing.T) {
	req, err := Decode([]byte(envoySpans))
	if err != nil {
		t.Fatal(err)
	}
	if len(req.ResourceSpans) != 2 {
		t.Fatalf("%d resources, want 2 (one per local service)", len(req.ResourceSpans))
	}
	rs := req.ResourceSpans[0]
	if got := rs.Resource.Attributes[0].Value.GetStringValue(); got != "frontend.default" {
		t.Errorf("service.name %q", got)
	}
	spans := rs.ScopeSpans[0].Spans
	s := spans[0]
	if hex.EncodeToString(s.TraceId) != "0af7651916cd43dd8448eb211c80319c" || hex.EncodeToString(s.SpanId) != "b7ad6b7169203331" ||
		hex.EncodeToString(s.ParentSpanId) != "00f067aa0ba902b7" || s.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("ids/kind: %x %x %x %v", s.TraceId, s.SpanId, s.ParentSpanId, s.Kind)
	}
	if s.StartTimeUnixNano != 1_700_000_000_000_000_000 || s.EndTimeUnixNano != 1_700_000_000_001_500_000 {
		t.Errorf("times %d..%d", s.StartTimeUnixNano, s.EndTimeUnixNano)
	}
	if s.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || len(s.Events) != 1 || s.Events[0].Name != "retry" {
		t.Errorf("status %v, events %v", s.Status, s.Events)
	}
	attrs := map[string]string{}
	for _, kv := range s.Attributes {
		attrs[kv.Key] = kv.Value.String()
	}
	for _, k := range []string{"component", "http.method", "http.status_code", "istio.canonical_service", "network.peer.address", "network.peer.port"} {
		if _, ok := attrs[k]; !ok {
			t.Errorf("attribute %s missing: %v", k, attrs)
		}
	}
	if _, ok := attrs["error"]; ok {
		t.Error("the error tag stays an attribute; it is the status")
	}
	if got := hex.EncodeToString(spans[1].TraceId); got != "00000000000000008448eb211c80319c" || spans[1].ParentSpanId != nil {
		t.Errorf("64-bit trace id %s (want left-padded), parent %x (want none)", got, spans[1].ParentSpanId)
	}

	// Through flatten, as the receiver validates: Envoy's spans become documents under the filter's names,
	// the span with a bad trace id alone is rejected.
	docs, rej, err := flatten.Spans(nil, req.ResourceSpans, flatten.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || rej.Count != 1 || !strings.Contains(rej.Message, "trace_id") {
		t.Fatalf("%d documents, rejected %+v; want 2 and the bad trace id", len(docs), rej)
	}
	if d := docs[0]; d.Service != "frontend" || d.Attr["http.request.method"] != "GET" || !d.Error {
		t.Errorf("document %+v: want service frontend (istio.canonical_service), http.request.method, error", d)
	}
}

func TestDecodeRefusesWhatIsNotASpanList(t *testing.T) {
	for _, body := range []string{``, `{}`, `[{"traceId": 5}]`, `[] []`, `[{"timestamp": -1}]`, strings.Repeat("[", 100)} {
		if _, err := Decode([]byte(body)); err == nil {
			t.Errorf("Decode(%q) accepted", body)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(envoySpans))
	f.Add([]byte(`[{"traceId":"1","id":"2"}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := Decode(body)
		if err != nil {
			return
		}
		if _, _, err := flatten.Spans(nil, req.ResourceSpans, flatten.Limits{}); err != nil {
			var le *flatten.LimitError
			if !errors.As(err, &le) {
				t.Fatalf("flatten of a decoded list: %v", err)
			}
		}
	})
}
