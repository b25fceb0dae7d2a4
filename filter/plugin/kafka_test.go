package plugin_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
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

// TestKafkaSpans runs the recorded traffic (kgo against kfake, and the Java client and librdkafka against
// Apache Kafka) through the compiled filter and checks the exported send and receive spans against what each
// scenario produced and consumed.
func TestKafkaSpans(t *testing.T) {
	recorded, err := kafkatest.LoadRecorded()
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range append(kafkatest.Scenarios(), recorded...) {
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
			"messaging.client.id": sc.WantClientIDs()[0], "server.address": "kafka.data.svc.cluster.local",
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
		if op == "receive" {
			// the group the client named to its coordinator, on another connection than its fetches
			if a["messaging.consumer.group.name"] != sc.WantGroup() {
				t.Errorf("%s: consumer group %q, want %q", s.Name, a["messaging.consumer.group.name"], sc.WantGroup())
			}
			oldest, err1 := strconv.Atoi(a["meshtrace.kafka.time_in_topic_ms"])
			newest, err2 := strconv.Atoi(a["meshtrace.kafka.time_in_topic_min_ms"])
			if err1 != nil || err2 != nil || newest < 0 || oldest < newest {
				t.Errorf("%s: time in topic %q, min %q", s.Name, a["meshtrace.kafka.time_in_topic_ms"], a["meshtrace.kafka.time_in_topic_min_ms"])
			}
			if p, err := strconv.Atoi(a["meshtrace.kafka.time_in_topic_partition"]); err != nil || p < 0 || (want.Partitions != nil && !slices.Contains(want.Partitions, int32(p))) {
				t.Errorf("%s: oldest records in partition %q, want one of %v", s.Name, a["meshtrace.kafka.time_in_topic_partition"], want.Partitions)
			}
			// each link: how long the first record of that producer context waited, within the span's range
			for _, l := range s.Links {
				la := attrs(l.Attributes)
				if age, err := strconv.Atoi(la["meshtrace.kafka.time_in_topic_ms"]); err != nil || age < newest || age > oldest {
					t.Errorf("%s: link time in topic %q, want %d..%d", s.Name, la["meshtrace.kafka.time_in_topic_ms"], newest, oldest)
				}
			}
		} else if _, ok := a["messaging.consumer.group.name"]; ok {
			t.Errorf("%s: consumer group on a send span", s.Name)
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
	// Memory is read every 300 replays after a warm-up of 300. TinyGo's collector is conservative, so random
	// span ids that look like pointers can keep a block alive and grow the heap once; a leak grows it in
	// every interval. The heap may grow by a page in one interval, never in two, nor in the last.
	const interval, intervals = 300, 4
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		e := setup(t, m, networkPolicy, networkHost(2))
		var mem []uint64
		for i := 0; i <= interval*(intervals+1); i++ {
			if i >= interval && i%interval == 0 {
				mem = append(mem, e.h.MemoryBytes())
			}
			e.replayKafka(c)
		}
		grew := 0
		for i := 1; i < len(mem); i++ {
			if mem[i] > mem[i-1]+leakSlack {
				grew++
			}
		}
		t.Logf("guest memory every %d replays: %v bytes", interval, mem)
		if grew > 1 || mem[len(mem)-1] > mem[len(mem)-2]+leakSlack {
			t.Errorf("guest memory grew in %d of %d intervals of %d replays: %v bytes", grew, len(mem)-1, interval, mem)
		}
		if n := e.h.LiveContexts(); n != 1 {
			t.Errorf("%d live contexts, want 1 (the root)", n)
		}
	})
}

// TestKafkaBatchHeaderSpans runs kmsg-encoded traffic through the compiled filter: a JoinGroup on a
// coordinator connection names the group of the same client id's fetches on another; the receive spans carry
// the time their records waited in the topic (clamped at 0 for timestamps ahead of the host clock); commit
// markers are not counted; legacy (magic v0/v1) messages count as undecoded; SASL frames before a
// transactional Produce do not stop decoding, and the send span says transactional.
func TestKafkaBatchHeaderSpans(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		e := setup(t, m, networkPolicy, networkHost(2))
		now := e.clock.now.UnixMilli()
		var c kafkatest.Capture
		add := func(conn int, req, resp []byte) {
			c.Chunks = append(c.Chunks, kafkatest.Chunk{Conn: conn, FromClient: true, Data: req})
			if resp != nil {
				c.Chunks = append(c.Chunks, kafkatest.Chunk{Conn: conn, Data: resp})
			}
		}
		var req, resp []byte
		join := kmsg.NewPtrJoinGroupRequest()
		join.Version, join.Group, join.ProtocolType = 9, kafkatest.Group, "consumer"
		add(0, kafkatest.Request(join, 1, kafkatest.ClientID), nil)

		// partition 0: a batch 1.2 s old; partition 1: a transactional batch 5 s old and its commit marker
		records := append(
			kafkatest.Batch{BaseOffset: 20, Records: 2, Attributes: 0x10, ProducerID: 4, FirstTimestamp: now - 5000, MaxTimestamp: now - 4000}.Encode(),
			kafkatest.Batch{BaseOffset: 22, Records: 1, Attributes: 0x30, ProducerID: 4, FirstTimestamp: now - 100, MaxTimestamp: now - 100}.Encode()...)
		req, resp = kafkatest.FetchPartitions(12, 1, kafkatest.ClientID, "orders",
			kafkatest.Batch{BaseOffset: 23, Records: 1, FirstTimestamp: now - 1200, MaxTimestamp: now - 1200}.Encode(), records)
		add(1, req, resp)
		req, resp = kafkatest.Fetch(12, 2, "other-client", "events", kafkatest.Batch{Records: 1, FirstTimestamp: now + 10000, MaxTimestamp: now + 10000}.Encode())
		add(1, req, resp)
		legacy := append(kafkatest.LegacyMessage(0, 7), kafkatest.LegacyMessage(1, 8)...)
		req, resp = kafkatest.Fetch(4, 1, kafkatest.ClientID, "payments", legacy)
		add(2, req, resp)

		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 1, "SCRAM-SHA-512"
		hsr := hs.ResponseKind().(*kmsg.SASLHandshakeResponse)
		hsr.SupportedMechanisms = []string{"SCRAM-SHA-512"}
		add(3, kafkatest.Request(hs, 0, kafkatest.ClientID), kafkatest.Response(hsr, 0))
		for i, tok := range []string{"n,,n=checkout,r=abc", "c=biws,r=abcdef,p=proof"} {
			auth := kmsg.NewPtrSASLAuthenticateRequest()
			auth.Version, auth.SASLAuthBytes = 2, []byte(tok)
			authr := auth.ResponseKind().(*kmsg.SASLAuthenticateResponse)
			authr.SASLAuthBytes = []byte("r=abcdef,s=salt,i=4096")
			add(3, kafkatest.Request(auth, int32(1+i), kafkatest.ClientID), kafkatest.Response(authr, int32(1+i)))
		}
		req, resp = kafkatest.Produce(9, 3, kafkatest.ClientID, "orders", kafkatest.Batch{Records: 2, Attributes: 0x10, ProducerID: 4, ProducerEpoch: 1}.Encode())
		add(3, req, resp)

		spans := e.replayKafka(&c)
		if n := e.metric("meshtrace_kafka_parse_stopped_total"); n != 0 {
			t.Errorf("decoder stopped on %d connections", n)
		}
		want := map[string]map[string]string{
			"receive orders": {"messaging.batch.message_count": "3", "messaging.consumer.group.name": kafkatest.Group,
				"meshtrace.kafka.time_in_topic_ms": "5000", "meshtrace.kafka.time_in_topic_min_ms": "1200",
				"meshtrace.kafka.time_in_topic_partition": "1", "messaging.destination.partition.id": ""},
			"receive events": {"messaging.batch.message_count": "1", "messaging.consumer.group.name": "",
				"meshtrace.kafka.time_in_topic_ms": "0", "meshtrace.kafka.time_in_topic_min_ms": "0", "messaging.client.id": "other-client"},
			"receive payments": {"messaging.batch.message_count": "2", "meshtrace.kafka.undecoded_records": "2",
				"messaging.consumer.group.name": kafkatest.Group, "meshtrace.kafka.time_in_topic_ms": ""},
			"send orders": {"messaging.batch.message_count": "2", "messaging.kafka.transactional": "true",
				"messaging.consumer.group.name": ""},
		}
		tcp := 0
		for _, s := range spans {
			if strings.HasPrefix(s.Name, "tcp ") {
				tcp++
				continue
			}
			w, ok := want[s.Name]
			if !ok {
				t.Errorf("unexpected span %q", s.Name)
				continue
			}
			delete(want, s.Name)
			a := attrs(s.Attributes)
			for k, v := range w {
				if a[k] != v {
					t.Errorf("%s: %s = %q, want %q", s.Name, k, a[k], v)
				}
			}
			if s.Name == "receive orders" {
				if _, ok := a["messaging.kafka.transactional"]; ok {
					t.Errorf("%s: transactional on a receive span", s.Name)
				}
			}
		}
		if len(want) != 0 || tcp != 4 {
			t.Errorf("missing spans %v; %d TCP spans, want 4", want, tcp)
		}
	})
}
