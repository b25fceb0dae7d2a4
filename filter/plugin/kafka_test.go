package plugin_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/meshtrace/meshtrace/filter/kafka/kafkatest"
	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

// kafkaConnProps are the properties of an outbound sidecar connection to the Kafka service.
func kafkaConnProps(i int) map[string][]byte {
	return props("source.address", "10.0.0.9:"+strconv.Itoa(41000+i), "destination.address", "10.96.0.30:9092",
		"upstream.address", "10.0.5.1:9092", "xds.cluster_name", "outbound|9092||kafka.data.svc.cluster.local")
}

// replayKafka runs a capture through the filter, one network context per captured connection, and returns
// the exported spans.
func (e *env) replayKafka(c *kafkatest.Capture) []*tracepb.Span {
	e.t.Helper()
	conns := make([]*wasmhost.Connection, c.Conns())
	for i := range conns {
		conns[i] = e.connect(kafkaConnProps(i))
	}
	for _, ch := range c.Chunks {
		if ch.FromClient {
			e.downstream(conns[ch.Conn], ch.Data)
		} else {
			e.upstream(conns[ch.Conn], ch.Data)
		}
	}
	for _, conn := range conns {
		if err := conn.Close(wasmhost.PeerRemote); err != nil {
			e.t.Fatal(err)
		}
	}
	return e.spans()
}

// TestKafkaSpans runs the recorded kgo/kfake traffic through the compiled filter and checks the exported
// send and receive spans against what each scenario produced and consumed.
func TestKafkaSpans(t *testing.T) {
	for _, sc := range kafkatest.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			c, err := kafkatest.Load(sc.Name)
			if err != nil {
				t.Fatal(err)
			}
			forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
				e := setup(t, m, networkPolicy, networkHost(2))
				spans := e.replayKafka(c)
				if n := e.metric("meshtrace_kafka_parse_stopped_total"); n != 0 {
					t.Errorf("decoder stopped on %d connections of real traffic", n)
				}
				checkKafkaSpans(t, sc, spans, c.Conns())
			})
		})
	}
}

func checkKafkaSpans(t *testing.T, sc kafkatest.Scenario, spans []*tracepb.Span, conns int) {
	t.Helper()
	sent, received := map[string]int{}, map[string]int{}
	tcp := 0
	for _, s := range spans {
		a := attrs(s.Attributes)
		op, topic, _ := strings.Cut(s.Name, " ")
		switch {
		case a["network.transport"] == "tcp" && strings.HasPrefix(s.Name, "tcp"):
			tcp++
			if a["messaging.system"] != "kafka" || a["peer.service"] != "kafka" {
				t.Errorf("TCP span of a Kafka connection: %v", a)
			}
			continue
		case op == "send" && s.Kind == tracepb.Span_SPAN_KIND_PRODUCER:
		case op == "receive" && s.Kind == tracepb.Span_SPAN_KIND_CLIENT:
		default:
			t.Errorf("unexpected span %q kind %v", s.Name, s.Kind)
			continue
		}
		want := sc.Topics[topic]
		if want == nil {
			t.Errorf("span %q for a topic the scenario did not use", s.Name)
			continue
		}
		count, _ := strconv.Atoi(a["messaging.batch.message_count"])
		if op == "send" {
			sent[topic] += count
		} else {
			received[topic] += count
		}
		for k, v := range map[string]string{
			"messaging.system": "kafka", "messaging.operation.type": op, "messaging.destination.name": topic,
			"messaging.client.id": kafkatest.ClientID, "server.address": "kafka.data.svc.cluster.local",
			"server.port": "9092", "peer.service": "kafka", "network.peer.address": "10.0.5.1",
		} {
			if a[k] != v {
				t.Errorf("%s: %s = %q, want %q", s.Name, k, a[k], v)
			}
		}
		if want.Codec != "none" && a["messaging.kafka.compression"] != want.Codec {
			t.Errorf("%s: compression %q, want %q", s.Name, a["messaging.kafka.compression"], want.Codec)
		}
		if want.Headers != nil && a["customer_id"] != "42" {
			t.Errorf("%s: customer_id %q from record headers, want 42", s.Name, a["customer_id"])
		}
		if want.Key != "" && a["messaging.kafka.message.key"] != want.Key {
			t.Errorf("%s: message key %q, want %q", s.Name, a["messaging.kafka.message.key"], want.Key)
		}
		if s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("%s: error status %v", s.Name, s.Status)
		}
		checkKafkaContext(t, s, want.TraceParents, op == "receive")
	}
	for topic, want := range sc.Topics {
		if sent[topic] != want.Records || received[topic] != want.Consumed {
			t.Errorf("topic %s: spans count %d records sent and %d received, want %d and %d",
				topic, sent[topic], received[topic], want.Records, want.Consumed)
		}
	}
	if tcp != conns {
		t.Errorf("%d TCP spans for %d connections", tcp, conns)
	}
}

// checkKafkaContext checks that a span with record trace contexts is a child of one of them, and that a
// receive span links to the producer contexts it carried.
func checkKafkaContext(t *testing.T, s *tracepb.Span, traceParents []string, receive bool) {
	t.Helper()
	if len(traceParents) == 0 {
		if len(s.ParentSpanId) != 0 || len(s.Links) != 0 {
			t.Errorf("%s: parent %x and %d links without record contexts", s.Name, s.ParentSpanId, len(s.Links))
		}
		return
	}
	parent := "00-" + hexID(s.TraceId) + "-" + hexID(s.ParentSpanId) + "-01"
	if !slices.Contains(traceParents, parent) {
		t.Errorf("%s: parent %s is none of the record contexts %q", s.Name, parent, traceParents)
	}
	if !receive {
		return
	}
	if len(s.Links) == 0 {
		t.Errorf("%s: receive span without links to the producer contexts", s.Name)
	}
	for _, l := range s.Links {
		if link := "00-" + hexID(l.TraceId) + "-" + hexID(l.SpanId) + "-01"; !slices.Contains(traceParents, link) {
			t.Errorf("%s: link %s is none of the record contexts", s.Name, link)
		}
	}
}

// TestKafkaNotKafka sends bytes that are not Kafka on a Kafka port: the filter stops decoding that
// connection, counts it, passes every byte on unchanged and still reports the connection.
func TestKafkaNotKafka(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		e := setup(t, m, networkPolicy, networkHost(2))
		c := e.connect(kafkaConnProps(0))
		tlsHello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}
		e.downstream(c, tlsHello)
		e.upstream(c, []byte{0x16, 0x03, 0x03, 0x00, 0x5a})
		e.downstream(c, []byte("more application data"))
		if err := c.Close(wasmhost.PeerRemote); err != nil {
			t.Fatal(err)
		}
		if n := e.metric("meshtrace_kafka_parse_stopped_total"); n != 1 {
			t.Errorf("parse stopped metric %d, want 1", n)
		}
		spans := e.spans()
		if len(spans) != 1 {
			t.Fatalf("exported %d spans, want only the TCP span", len(spans))
		}
		a := attrs(spans[0].Attributes)
		if !strings.Contains(a["meshtrace.kafka.parse_error"], "not the Kafka protocol") {
			t.Errorf("parse error attribute %q", a["meshtrace.kafka.parse_error"])
		}
		if a["meshtrace.tcp.bytes_sent"] != strconv.Itoa(len(tlsHello)+len("more application data")) {
			t.Errorf("bytes sent %s", a["meshtrace.tcp.bytes_sent"])
		}
	})
}

// TestKafkaSpansRechunked replays a capture cut into small pieces and, separately, merged into large ones, so
// the compiled filter sees frames split across callbacks and several frames per callback.
func TestKafkaSpansRechunked(t *testing.T) {
	sc := kafkatest.Scenarios()[0]
	for _, s := range kafkatest.Scenarios() {
		if s.Name == "consume-group" {
			sc = s
		}
	}
	c, err := kafkatest.Load(sc.Name)
	if err != nil {
		t.Fatal(err)
	}
	for name, rechunked := range map[string]*kafkatest.Capture{"split": c.Split(13), "merged": c.Merged()} {
		t.Run(name, func(t *testing.T) {
			forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
				e := setup(t, m, networkPolicy, networkHost(2))
				checkKafkaSpans(t, sc, e.replayKafka(rechunked), c.Conns())
			})
		})
	}
}

// TestKafkaMemoryFlat replays recorded traffic many times through each build and checks that guest memory
// stops growing after warm-up (TinyGo's heap settles within about 250 replays; see leakSlack) and that every
// connection context is deleted: per-connection state is freed.
func TestKafkaMemoryFlat(t *testing.T) {
	c, err := kafkatest.Load("consume-group")
	if err != nil {
		t.Fatal(err)
	}
	const warm, rounds = 300, 900
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		e := setup(t, m, networkPolicy, networkHost(2))
		var warmMem uint64
		for i := 0; i < rounds; i++ {
			e.replayKafka(c)
			if i == warm {
				warmMem = e.h.MemoryBytes()
			}
		}
		checkMemoryFlat(t, warmMem, e.h.MemoryBytes(), "replay", warm, rounds)
		if n := e.h.LiveContexts(); n != 1 {
			t.Errorf("%d live contexts, want 1 (the root)", n)
		}
	})
}
