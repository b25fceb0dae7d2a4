package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/filter/kafka/kafkatest"
	"github.com/meshtrace/meshtrace/indexer/api"
	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/envoy"
	"github.com/meshtrace/meshtrace/testenv/envoy/mesh"
	"github.com/meshtrace/meshtrace/testenv/kafka"
)

// kafkaProducer is one producer run of a kafkaScenario: records carrying the trace context trace.
type kafkaProducer struct {
	kind          kafka.ClientKind
	count         int    // records; 0: the scenario's n
	trace         string // the trace id of the traceparent header every record carries
	compression   string
	transactional bool
	args          []string // more driver arguments
}

// records returns how many records p produces in sc.
func (p kafkaProducer) records(sc kafkaScenario) int {
	if p.count > 0 {
		return p.count
	}
	return sc.n
}

// kafkaScenario is the traffic one Envoy sidecar (one build of the filter) carries: producers into one
// topic, then one consumer reading all their records.
type kafkaScenario struct {
	build      artifact.Build
	topic      string
	partitions int
	n          int // records per producer
	producers  []kafkaProducer
	consumer   kafka.ClientKind
	group      string
	protocol   string // group protocol: classic or consumer (KIP-848)
}

// TestKafkaRealClients runs the official Java client and librdkafka against a real Kafka broker through Envoy
// with the filter as a network filter, each build of the filter in its own sidecar, and checks the send and
// receive spans the decoder makes of their bytes, the message journey through the real indexer, and that the
// filter changed no byte: a recording forwarder on each side of Envoy sees the same streams.
//
//	client -> front (recording, advertised by the broker) -> Envoy + filter -> back (recording) -> broker
func TestKafkaRealClients(t *testing.T) {
	builds := artifact.Builds(t)
	ix := startIndexer(t)
	col := newCollector(t, ix.Receiver)
	front, back := kafka.NewForwarder(t), kafka.NewForwarder(t)
	b := kafka.StartBroker(t, kafka.BrokerConfig{AdvertisedAddr: front.Addr(), NumPartitions: 3})
	back.SetTarget(b.Addr)
	sidecars := map[string]string{} // build name: the sidecar's Kafka listener
	for _, build := range builds {
		_, sidecars[build.Name] = startKafkaSidecar(t, build.Name, build.Path, back.Addr(), col.Addr())
	}
	front.Record()
	back.Record()
	begin := time.Now()

	const javaTrace, pyTrace = "11111111111111111111111111111111", "22222222222222222222222222222222"
	scenarios := []kafkaScenario{
		{
			build: builds[0], topic: "payments", partitions: 3, n: 30,
			producers: []kafkaProducer{
				{kind: kafka.Java, trace: javaTrace, compression: "lz4", args: []string{"--client-id", "java-producer"}},
				{kind: kafka.Librdkafka, trace: pyTrace, compression: "zstd",
					args: []string{"--client-id", "rdkafka-producer", "--header", "x-order-id=o-77"}},
			},
			consumer: kafka.Java, group: "billing", protocol: "classic",
		},
		{
			build: builds[1], topic: "refunds", partitions: 2, n: 20,
			producers: []kafkaProducer{
				{kind: kafka.Java, trace: "33333333333333333333333333333333", compression: "zstd", transactional: true,
					args: []string{"--transactional-id", "refunds-txn"}},
				{kind: kafka.Librdkafka, trace: "44444444444444444444444444444444", compression: "gzip"},
				// one record: its send span carries its key and offset (the policy allows keys)
				{kind: kafka.Java, count: 1, trace: "55555555555555555555555555555555", compression: "none"},
			},
			consumer: kafka.Librdkafka, group: "audit", protocol: "consumer",
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.build.Name+"/"+sc.topic, func(t *testing.T) {
			front.SetTarget(sidecars[sc.build.Name])
			runKafkaScenario(t, b, front.Addr(), col, sc, begin)
		})
	}

	// The journey question, asked of the real indexer: the messages of order o-77 in the topic that waited
	// more than a given time. They waited less than a minute and at least 0 ms.
	const journey = `messaging.destination.name = "payments" AND order_id = "o-77" AND meshtrace.kafka.time_in_topic_ms `
	var waited api.SearchResponse
	if !waitFor(30*time.Second, func() bool {
		waited = ix.search(t, journey+">= 0", "spans")
		return waited.Total > 0 && waited.IndexLagSeconds == 0
	}) {
		t.Fatalf("%q: %d spans", journey+">= 0", waited.Total)
	}
	for _, s := range waited.Spans {
		if s.Name != "receive payments" || s.Attr["order_id"] != "o-77" {
			t.Errorf("%q found %s with order_id %v", journey+">= 0", s.Name, s.Attr["order_id"])
		}
	}
	if r := ix.search(t, journey+"> 60000", "spans"); r.Total != 0 {
		t.Errorf("%q: %d spans, want none", journey+"> 60000", r.Total)
	}
	// Both ways: each producer's trace lists the consumer's receive span, whose link says how long it waited.
	for _, id := range []string{javaTrace, pyTrace} {
		tr := ix.trace(t, id)
		found := false
		for _, s := range tr.LinkedFrom {
			for _, l := range s.Links {
				found = found || (s.Name == "receive payments" && l.TraceID == id && l.Attr["meshtrace.kafka.time_in_topic_ms"] != nil)
			}
		}
		if !found {
			t.Errorf("trace %s: linked from %d spans, none the receive span with a time in topic", id, len(tr.LinkedFrom))
		}
	}

	// Once every connection is closed on both sides of Envoy, the bytes each side saw are compared.
	if !waitFor(30*time.Second, func() bool { return front.Active() == 0 && back.Active() == 0 }) {
		t.Fatalf("connections still open after the clients exited: %d in front of Envoy, %d behind", front.Active(), back.Active())
	}
	checkSameBytes(t, front.Capture(), back.Capture())
}

// startKafkaSidecar starts an Envoy sidecar whose outbound TCP listener runs the filter build at path as a
// network filter in front of tcp_proxy to broker (no filter when path is ""), exporting to collector, and
// returns the Envoy and its listener's address.
func startKafkaSidecar(t testing.TB, name, path, broker, collector string) (*envoy.Process, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sidecar-orders-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l := envoy.Listener{Name: "kafka", Direction: envoy.Outbound, TCP: true, Cluster: kafkaCluster}
	if path != "" {
		l.Wasm = &envoy.Wasm{Name: "meshtrace", RootID: networkRootID, VMID: "meshtrace", File: path, Config: networkPolicy}
	}
	p, err := envoy.Start(ctx, envoy.Bootstrap{
		Node: envoy.Node{Metadata: map[string]any{
			"NAMESPACE": "shop", "WORKLOAD_NAME": "orders", "LABELS": map[string]any{"app": "orders"},
		}},
		Listeners: []envoy.Listener{l},
		Clusters: []envoy.Cluster{
			{Name: kafkaCluster, Address: broker},
			{Name: mesh.ExportCluster, Address: collector},
		},
	}, envoy.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- %s envoy.log (tail) ---\n%s", name, p.LogTail(30))
		}
		_ = p.Close()
	})
	addr, err := p.ListenerAddr(ctx, "kafka")
	if err != nil {
		t.Fatal(err)
	}
	return p, addr
}

// runKafkaScenario creates the scenario's topic, runs its producers and its consumer through bootstrap and
// checks what they did and the spans the collector received for the topic.
func runKafkaScenario(t *testing.T, b *kafka.Broker, bootstrap string, col *collector, sc kafkaScenario, begin time.Time) {
	b.CreateTopic(t, sc.topic, sc.partitions, nil)
	run := func(kind kafka.ClientKind, args ...string) []kafka.Record {
		if kind == kafka.Java {
			return kafka.RunJava(t, bootstrap, args...)
		}
		return kafka.RunPython(t, bootstrap, args...)
	}
	total := 0
	offsets := map[string]int64{} // the offset of each single-record producer's record, by trace
	for i, p := range sc.producers {
		n := p.records(sc)
		total += n
		args := append([]string{"produce", "--topic", sc.topic, "--count", strconv.Itoa(n), "--key", fmt.Sprint("p", i),
			"--compression", p.compression, "--header", "traceparent=00-" + p.trace + "-00f067aa0ba902b7-01"}, p.args...)
		acks := run(p.kind, args...)
		if len(acks) != n {
			t.Fatalf("%s producer: %d acks, want %d", p.kind, len(acks), n)
		}
		if n == 1 {
			offsets[p.trace] = acks[0].Offset
		}
	}
	got := run(sc.consumer, "consume", "--topic", sc.topic, "--group", sc.group, "--group-protocol", sc.protocol,
		"--client-id", sc.group+"-consumer", "--count", strconv.Itoa(total))
	traces := map[string]int{}
	for _, r := range got {
		tp, _ := r.Header("traceparent")
		traces[tp]++
	}
	if len(got) != total || len(traces) != len(sc.producers) {
		t.Fatalf("consumed %d records, want %d; traceparents %v", len(got), total, traces)
	}

	count := func(s document.Span) int {
		v, _ := strconv.Atoi(fmt.Sprint(s.Attr["messaging.batch.message_count"]))
		return v
	}
	sent := make([]int, len(sc.producers)) // records in send spans, per producer
	received := 0
	ok := waitFor(30*time.Second, func() bool {
		clear(sent)
		received = 0
		for _, s := range col.Spans() {
			if s.Name == "receive "+sc.topic {
				received += count(s)
			}
			for i, p := range sc.producers {
				if s.Name == "send "+sc.topic && s.TraceID == p.trace {
					sent[i] += count(s)
				}
			}
		}
		for i, p := range sc.producers {
			if sent[i] < p.records(sc) {
				return false
			}
		}
		return received >= total
	})
	if !ok {
		t.Fatalf("records in send spans %v, in receive spans %d, want %d in all", sent, received, total)
	}
	if received != total {
		t.Errorf("records in receive spans %d, want %d", received, total)
	}
	var sends, recvs, grouped int
	for _, s := range col.Spans() {
		if s.Attr["messaging.destination.name"] != sc.topic {
			continue
		}
		if _, bad := s.Attr["meshtrace.kafka.parse_error"]; bad {
			t.Errorf("%s: parse error %v", s.Name, s.Attr["meshtrace.kafka.parse_error"])
		}
		if n, bad := s.Attr["meshtrace.kafka.undecoded_records"]; bad {
			t.Errorf("%s: %v records not decoded", s.Name, n)
		}
		if s.Name == "receive "+sc.topic {
			recvs++
			if g, ok := s.Attr["messaging.consumer.group.name"]; ok {
				grouped++
				if g != sc.group {
					t.Errorf("receive span group %v, want %s", g, sc.group)
				}
			}
			if p, err := strconv.Atoi(fmt.Sprint(s.Attr["meshtrace.kafka.time_in_topic_partition"])); err != nil || p < 0 || p >= sc.partitions {
				t.Errorf("receive span: oldest records in partition %v, want 0..%d", s.Attr["meshtrace.kafka.time_in_topic_partition"], sc.partitions-1)
			}
			// every producer context it links to says how long its first record waited: at most the time since
			// the first producer started
			for _, l := range s.Links {
				wait, err := strconv.Atoi(fmt.Sprint(l.Attr["meshtrace.kafka.time_in_topic_ms"]))
				if err != nil || wait < 0 || time.Duration(wait)*time.Millisecond > time.Since(begin) {
					t.Errorf("receive span link to %s: time in topic %v, want 0..%v", l.TraceID, l.Attr["meshtrace.kafka.time_in_topic_ms"], time.Since(begin))
				}
			}
			continue
		}
		for i, p := range sc.producers {
			if s.Name != "send "+sc.topic || s.TraceID != p.trace {
				continue
			}
			sends++
			if p.compression != "none" {
				checkAttr(t, s, "messaging.kafka.compression", p.compression)
			}
			if offset, single := offsets[p.trace]; single {
				checkAttr(t, s, "messaging.kafka.message.key", fmt.Sprint("p", i, "-0"))
				checkAttr(t, s, "messaging.kafka.offset", strconv.FormatInt(offset, 10))
			}
			if _, txn := s.Attr["messaging.kafka.transactional"]; txn != p.transactional {
				t.Errorf("%s producer's send span: transactional %v, want %v", p.kind, txn, p.transactional)
			}
		}
	}
	if grouped == 0 {
		t.Errorf("none of %d receive spans names the consumer group %s", recvs, sc.group)
	}
	t.Logf("%s: records per producer %v in %d send spans; %s consumer group %s (%s) %d records in %d receive spans, %d naming the group",
		sc.build.Name, sent, sends, sc.consumer, sc.group, sc.protocol, received, recvs, grouped)
}

// byteStreams sums up a comparison of two captures of the same connections (compareStreams).
type byteStreams struct {
	conns       int // connections with bytes
	client      int // bytes clients sent
	server      int // bytes the broker sent that reached the clients
	afterClosed int // bytes the broker sent after the client had closed
}

// compareStreams checks that every connection recorded in front of Envoy has a connection recorded behind it
// with the same bytes: every byte the client sent, unchanged, and the broker's bytes, unchanged, up to
// where the client closed (Envoy drops what the broker still answers after that, so the client's side may be
// a prefix of the broker's).
func compareStreams(front, back *kafkatest.Capture) (byteStreams, error) {
	type stream struct{ client, server []byte }
	streams := func(c *kafkatest.Capture) []stream {
		m := map[int]*stream{}
		for _, ch := range c.Chunks {
			s := m[ch.Conn]
			if s == nil {
				s = &stream{}
				m[ch.Conn] = s
			}
			if ch.FromClient {
				s.client = append(s.client, ch.Data...)
			} else {
				s.server = append(s.server, ch.Data...)
			}
		}
		out := make([]stream, 0, len(m))
		for _, s := range m {
			out = append(out, *s)
		}
		return out
	}
	f, bk := streams(front), streams(back)
	sum := byteStreams{conns: len(f)}
	if len(f) != len(bk) {
		return sum, fmt.Errorf("%d connections with bytes in front of Envoy, %d behind it", len(f), len(bk))
	}
	var mismatched []string
	for _, fs := range f {
		i := slices.IndexFunc(bk, func(bs stream) bool {
			return bytes.Equal(fs.client, bs.client) && bytes.HasPrefix(bs.server, fs.server)
		})
		if i < 0 {
			mismatched = append(mismatched, fmt.Sprintf("%d bytes sent, %d received", len(fs.client), len(fs.server)))
			continue
		}
		sum.client += len(fs.client)
		sum.server += len(fs.server)
		sum.afterClosed += len(bk[i].server) - len(fs.server)
		bk = slices.Delete(bk, i, i+1)
	}
	if len(mismatched) > 0 {
		return sum, fmt.Errorf("%d of %d connections differ across Envoy (front: %s)", len(mismatched), len(f), strings.Join(mismatched, "; "))
	}
	return sum, nil
}

// checkSameBytes fails the test unless compareStreams finds the same bytes on both sides, some from each end.
func checkSameBytes(t *testing.T, front, back *kafkatest.Capture) {
	t.Helper()
	sum, err := compareStreams(front, back)
	if err != nil {
		t.Fatal(err)
	}
	if sum.client == 0 || sum.server == 0 {
		t.Fatalf("no bytes compared: %d from clients, %d from the broker", sum.client, sum.server)
	}
	t.Logf("bytes unchanged across Envoy on %d connections: %d from clients, %d from the broker (%d more the broker sent after clients closed)",
		sum.conns, sum.client, sum.server, sum.afterClosed)
}

// TestCompareStreams checks the byte comparison itself: the same streams cut differently pass, a broker's
// answer the client closed before is allowed, and a changed, missing or extra byte, or connection, is not.
func TestCompareStreams(t *testing.T) {
	capture := func(chunks ...kafkatest.Chunk) *kafkatest.Capture { return &kafkatest.Capture{Chunks: chunks} }
	req := func(conn int, s string) kafkatest.Chunk {
		return kafkatest.Chunk{Conn: conn, FromClient: true, Data: []byte(s)}
	}
	resp := func(conn int, s string) kafkatest.Chunk { return kafkatest.Chunk{Conn: conn, Data: []byte(s)} }
	front := capture(req(0, "hello"), resp(0, "world"), req(1, "fetch"), resp(1, "records"))
	for _, tc := range []struct {
		name    string
		back    *kafkatest.Capture
		wantErr bool
	}{
		{"same, other order and cuts", capture(req(0, "fet"), req(1, "hel"), req(0, "ch"), resp(0, "records"), req(1, "lo"), resp(1, "world")), false},
		{"broker answered after the client closed", capture(req(0, "hello"), resp(0, "world"), req(1, "fetch"), resp(1, "records+late")), false},
		{"a request byte changed", capture(req(0, "hellO"), resp(0, "world"), req(1, "fetch"), resp(1, "records")), true},
		{"a request byte missing", capture(req(0, "hell"), resp(0, "world"), req(1, "fetch"), resp(1, "records")), true},
		{"a response byte changed", capture(req(0, "hello"), resp(0, "w0rld"), req(1, "fetch"), resp(1, "records")), true},
		{"a response shorter behind Envoy", capture(req(0, "hello"), resp(0, "worl"), req(1, "fetch"), resp(1, "records")), true},
		{"a connection missing", capture(req(0, "hello"), resp(0, "world")), true},
		{"a connection more", capture(req(0, "hello"), resp(0, "world"), req(1, "fetch"), resp(1, "records"), req(2, "x")), true},
	} {
		sum, err := compareStreams(front, tc.back)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: %+v, %v; want error %v", tc.name, sum, err, tc.wantErr)
		}
	}
}

// TestKafkaSASL runs the real clients through Envoy with the filter against a broker whose client listener
// wants SASL: the Java client produces with PLAIN and librdkafka consumes with SCRAM-SHA-256. The decoder
// skips the SaslHandshake and SaslAuthenticate frames and decodes the Produce and Fetch exchanges after
// them.
func TestKafkaSASL(t *testing.T) {
	build := artifact.Builds(t)[0]
	col := newCollector(t, nil)
	front := kafka.NewForwarder(t)
	b := kafka.StartBroker(t, kafka.BrokerConfig{AdvertisedAddr: front.Addr(), NumPartitions: 2, SASL: &kafka.SASL{
		Plain: map[string]string{"alice": "alice-secret"},
		SCRAM: map[string]string{"bob": "bob-secret"},
	}})
	_, sidecar := startKafkaSidecar(t, build.Name, build.Path, b.Addr, col.Addr())
	front.SetTarget(sidecar)
	front.Record()

	const topic, n, trace = "invoices", 12, "66666666666666666666666666666666"
	b.CreateTopic(t, topic, 2, nil)
	acks := kafka.RunJava(t, front.Addr(), "produce", "--topic", topic, "--count", strconv.Itoa(n), "--key", "i",
		"--compression", "snappy", "--header", "traceparent=00-"+trace+"-00f067aa0ba902b7-01",
		"--property", "security.protocol=SASL_PLAINTEXT", "--property", "sasl.mechanism=PLAIN",
		"--property", `sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="alice" password="alice-secret";`)
	got := kafka.RunPython(t, front.Addr(), "consume", "--topic", topic, "--group", "ledger", "--count", strconv.Itoa(n),
		"--property", "security.protocol=SASL_PLAINTEXT", "--property", "sasl.mechanism=SCRAM-SHA-256",
		"--property", "sasl.username=bob", "--property", "sasl.password=bob-secret")
	if len(acks) != n || len(got) != n {
		t.Fatalf("%d acks, %d records consumed, want %d each", len(acks), len(got), n)
	}

	var sent, received int
	if !waitFor(30*time.Second, func() bool {
		sent, received = 0, 0
		for _, s := range col.Spans() {
			c, _ := strconv.Atoi(fmt.Sprint(s.Attr["messaging.batch.message_count"]))
			switch {
			case s.Name == "send "+topic && s.TraceID == trace:
				sent += c
			case s.Name == "receive "+topic:
				received += c
			}
		}
		return sent >= n && received >= n
	}) {
		t.Fatalf("records in send spans %d, in receive spans %d, want %d each: %s", sent, received, n, describe(col.Spans()))
	}
	for _, s := range col.Spans() {
		if v, bad := s.Attr["meshtrace.kafka.parse_error"]; bad {
			t.Errorf("%s: parse error %v", s.Name, v)
		}
		if s.Name == "receive "+topic {
			checkAttr(t, s, "messaging.consumer.group.name", "ledger")
		}
	}
	// Both mechanisms were on the wire: each client named its mechanism in a SaslHandshake request.
	var fromClients []byte
	for _, ch := range front.Capture().Chunks {
		if ch.FromClient {
			fromClients = append(fromClients, ch.Data...)
		}
	}
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256"} {
		if !bytes.Contains(fromClients, []byte(mech)) {
			t.Errorf("no client sent SASL mechanism %s", mech)
		}
	}
}
