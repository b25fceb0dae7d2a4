package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/api"
	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/envoy"
	"github.com/meshtrace/meshtrace/testenv/envoy/mesh"
	"github.com/meshtrace/meshtrace/testenv/kafka"
)

// TestKafkaRealClients runs the official Java client and librdkafka against a real Kafka broker through Envoy
// with the filter as a network filter, and checks the send and receive spans the decoder makes of their bytes.
func TestKafkaRealClients(t *testing.T) {
	build := artifact.Builds(t)[0]
	ix := startIndexer(t)
	col := newCollector(t, ix.Receiver)
	port, err := kafka.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	proxy := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	b := kafka.StartBroker(t, kafka.BrokerConfig{AdvertisedAddr: proxy, NumPartitions: 3})

	plugin := &envoy.Wasm{Name: "meshtrace", RootID: networkRootID, VMID: "meshtrace", File: build.Path, Config: networkPolicy}
	dir := filepath.Join(t.TempDir(), "sidecar-orders")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := envoy.Start(ctx, envoy.Bootstrap{
		Node: envoy.Node{Metadata: map[string]any{
			"NAMESPACE": "shop", "WORKLOAD_NAME": "orders", "LABELS": map[string]any{"app": "orders"},
		}},
		Listeners: []envoy.Listener{
			{Name: "kafka", Address: proxy, Direction: envoy.Outbound, TCP: true, Cluster: kafkaCluster, Wasm: plugin},
		},
		Clusters: []envoy.Cluster{
			{Name: kafkaCluster, Address: b.Addr},
			{Name: mesh.ExportCluster, Address: col.Addr()},
		},
	}, envoy.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.ListenerAddr(ctx, "kafka"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("--- envoy.log (tail) ---\n%s", p.LogTail(30))
		}
	}()

	const topic, n = "payments", 30
	const javaTrace, pyTrace = "11111111111111111111111111111111", "22222222222222222222222222222222"
	b.CreateTopic(t, topic, 3, nil)
	begin := time.Now()
	javaAcks := kafka.RunJava(t, proxy, "produce", "--topic", topic, "--count", strconv.Itoa(n), "--key", "j",
		"--client-id", "java-producer", "--compression", "lz4", "--idempotence", "true",
		"--header", "traceparent=00-"+javaTrace+"-00f067aa0ba902b7-01")
	pyAcks := kafka.RunPython(t, proxy, "produce", "--topic", topic, "--count", strconv.Itoa(n), "--key", "p",
		"--client-id", "rdkafka-producer", "--compression", "zstd",
		"--header", "traceparent=00-"+pyTrace+"-00f067aa0ba902b8-01", "--header", "x-order-id=o-77")
	got := kafka.RunJava(t, proxy, "consume", "--topic", topic, "--group", "billing", "--client-id", "billing-consumer",
		"--count", strconv.Itoa(2*n))
	if len(javaAcks) != n || len(pyAcks) != n || len(got) != 2*n {
		t.Fatalf("acks java %d librdkafka %d, consumed %d", len(javaAcks), len(pyAcks), len(got))
	}
	traces := map[string]int{}
	for _, r := range got {
		tp, _ := r.Header("traceparent")
		traces[tp]++
	}
	if len(traces) != 2 {
		t.Errorf("consumed traceparents %v", traces)
	}

	count := func(s document.Span) int {
		v, _ := strconv.Atoi(fmt.Sprint(s.Attr["messaging.batch.message_count"]))
		return v
	}
	var sendJava, sendPy, recv int
	var sums [3]int
	ok := waitFor(30*time.Second, func() bool {
		sums = [3]int{}
		for _, s := range col.Spans() {
			switch {
			case s.Name == "send "+topic && s.TraceID == javaTrace:
				sums[0] += count(s)
			case s.Name == "send "+topic && s.TraceID == pyTrace:
				sums[1] += count(s)
			case s.Name == "receive "+topic:
				sums[2] += count(s)
			}
		}
		return sums[0] >= n && sums[1] >= n && sums[2] >= 2*n
	})
	if !ok {
		t.Fatalf("record counts java send %d librdkafka send %d receive %d: %s", sums[0], sums[1], sums[2], describe(col.Spans()))
	}
	for _, s := range col.Spans() {
		if _, bad := s.Attr["meshtrace.kafka.parse_error"]; bad {
			t.Errorf("%s: parse error %v", s.Name, s.Attr["meshtrace.kafka.parse_error"])
		}
		if n, bad := s.Attr["meshtrace.kafka.undecoded_records"]; bad {
			t.Errorf("%s: %v records not decoded", s.Name, n)
		}
		switch {
		case s.Name == "send "+topic && s.TraceID == javaTrace:
			sendJava++
			checkAttr(t, s, "messaging.kafka.compression", "lz4")
		case s.Name == "send "+topic && s.TraceID == pyTrace:
			sendPy++
			checkAttr(t, s, "messaging.kafka.compression", "zstd")
		case s.Name == "receive "+topic:
			recv++
			if g, ok := s.Attr["messaging.consumer.group.name"]; ok && g != "billing" {
				t.Errorf("receive span group %v, want billing", g)
			}
			// every producer context it links to says how long its first record waited: at most the time since
			// the first producer started
			for _, l := range s.Links {
				wait, err := strconv.Atoi(fmt.Sprint(l.Attr["meshtrace.kafka.time_in_topic_ms"]))
				if err != nil || wait < 0 || time.Duration(wait)*time.Millisecond > time.Since(begin) {
					t.Errorf("receive span link to %s: time in topic %v, want 0..%v", l.TraceID, l.Attr["meshtrace.kafka.time_in_topic_ms"], time.Since(begin))
				}
			}
		}
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
		if s.Name != "receive "+topic || s.Attr["order_id"] != "o-77" {
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
				found = found || (s.Name == "receive "+topic && l.TraceID == id && l.Attr["meshtrace.kafka.time_in_topic_ms"] != nil)
			}
		}
		if !found {
			t.Errorf("trace %s: linked from %d spans, none the receive span with a time in topic", id, len(tr.LinkedFrom))
		}
	}
	t.Logf("java producer %d records, %d send spans; librdkafka producer %d records, %d send spans; consumer billing %d records, %d receive spans (%d); in %v",
		sums[0], sendJava, sums[1], sendPy, sums[2], recv, len(got), time.Since(begin).Round(time.Millisecond))
}
