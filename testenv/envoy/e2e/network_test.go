package e2e

import (
	"bufio"
	"context"

	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/envoy"
	"github.com/meshtrace/meshtrace/testenv/envoy/mesh"
)

// Istio cluster names of the upstreams the network test's sidecar proxies TCP to.
const (
	kafkaCluster    = "outbound|9092||kafka.kafka.svc.cluster.local"
	postgresCluster = "outbound|5432||postgres.db.svc.cluster.local"
	networkRootID   = "meshtrace-network" // the root id that loads the filter as a network filter
)

const networkPolicy = `{
  "direction": "auto",
  "export": {"flush_interval_ms": 100},
  "tags": [{"attribute": "order_id", "from": [{"record_header": "x-order-id"}]}],
  "network": {
    "peer_services": [{"cluster": "` + postgresCluster + `", "service": "postgres"},
                      {"cluster": "` + kafkaCluster + `", "service": "kafka"}],
    "kafka": {"clusters": ["` + kafkaCluster + `"], "record_key": true}
  }
}`

// TestNetworkFilter runs the filter as a network filter in front of tcp_proxy, for a Kafka broker (kfake,
// used by a real Kafka client) and for a plain TCP upstream.
func TestNetworkFilter(t *testing.T) {
	for _, build := range artifact.Builds(t) {
		t.Run(build.Name, func(t *testing.T) {
			col := newCollector(t, nil)
			broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
			if err != nil {
				t.Fatal(err)
			}
			defer broker.Close()
			echo := envoy.EchoTCP(t)

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
					{Name: "kafka", Direction: envoy.Outbound, TCP: true, Cluster: kafkaCluster, Wasm: plugin},
					{Name: "postgres", Direction: envoy.Outbound, TCP: true, Cluster: postgresCluster, Wasm: plugin},
				},
				Clusters: []envoy.Cluster{
					{Name: kafkaCluster, Address: broker.ListenAddrs()[0]},
					{Name: postgresCluster, Address: echo},
					{Name: mesh.ExportCluster, Address: col.Addr()},
				},
			}, envoy.Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			kafkaAddr, err := p.ListenerAddr(ctx, "kafka")
			if err != nil {
				t.Fatal(err)
			}
			postgresAddr, err := p.ListenerAddr(ctx, "postgres")
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if t.Failed() {
					t.Logf("--- envoy.log (tail) ---\n%s", p.LogTail(30))
				}
			}()

			t.Run("kafka", func(t *testing.T) { testKafka(t, ctx, kafkaAddr, col) })
			t.Run("tcp", func(t *testing.T) { testTCP(t, postgresAddr, col) })
		})
	}
}

// A producer's trace context, as an instrumented producer writes it into the record headers.
const (
	producerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	producerSpan  = "00f067aa0ba902b7"
)

func testKafka(t *testing.T, ctx context.Context, proxy string, col *collector) {
	// Every connection the client opens, to the seed or to the broker the metadata names, goes through
	// the sidecar's listener.
	var d net.Dialer
	viaSidecar := kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, proxy)
	})
	producer, err := kgo.NewClient(kgo.SeedBrokers(proxy), viaSidecar, kgo.ClientID("orders-producer"))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	rec := &kgo.Record{Topic: "orders", Key: []byte("order-42"), Value: []byte(`{"order": 42}`), Headers: []kgo.RecordHeader{
		{Key: "traceparent", Value: []byte("00-" + producerTrace + "-" + producerSpan + "-01")},
		{Key: "x-order-id", Value: []byte("42")},
	}}
	if err := producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}

	consumer, err := kgo.NewClient(kgo.SeedBrokers(proxy), viaSidecar, kgo.ClientID("orders-consumer"),
		kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	pollCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) == 0 && pollCtx.Err() == nil {
		fetches := consumer.PollFetches(pollCtx)
		got = append(got, fetches.Records()...)
	}
	if len(got) != 1 || string(got[0].Value) != `{"order": 42}` {
		t.Fatalf("consumed %d records: %v", len(got), got)
	}

	var send, receive document.Span
	found := waitFor(30*time.Second, func() bool {
		send, receive = document.Span{}, document.Span{}
		for _, s := range col.Spans() {
			switch s.Name {
			case "send orders":
				send = s
			case "receive orders":
				receive = s
			}
		}
		return send.SpanID != "" && receive.SpanID != ""
	})
	if !found {
		t.Fatalf("no send and receive spans for topic orders: %s", describe(col.Spans()))
	}
	for _, s := range []document.Span{send, receive} {
		if s.TraceID != producerTrace || s.ParentSpanID != producerSpan {
			t.Errorf("%s: trace %s parent %s, want the producer's %s / %s", s.Name, s.TraceID, s.ParentSpanID, producerTrace, producerSpan)
		}
		checkAttr(t, s, "messaging.system", "kafka")
		checkAttr(t, s, "messaging.destination.name", "orders")
		checkAttr(t, s, "order_id", "42")
		checkAttr(t, s, "peer.service", "kafka")
		if s.Service != "orders" {
			t.Errorf("%s: service %q, want orders", s.Name, s.Service)
		}
	}
	if send.Kind != "producer" {
		t.Errorf("send span kind %s, want producer", send.Kind)
	}
	checkAttr(t, send, "messaging.client.id", "orders-producer")
	if !slices.ContainsFunc(receive.Links, func(l document.Link) bool {
		return l.TraceID == producerTrace && l.SpanID == producerSpan
	}) {
		t.Errorf("receive span does not link to the producer's context: %+v", receive.Links)
	}
}

func testTCP(t *testing.T, proxy string, col *collector) {
	conn, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "ping\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo through the sidecar: %q %v", line, err)
	}
	conn.Close()

	var tcp document.Span
	if !waitFor(30*time.Second, func() bool {
		for _, s := range col.Spans() {
			if s.Attr["peer.service"] == "postgres" {
				tcp = s
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no TCP span for the postgres upstream: %s", describe(col.Spans()))
	}
	if tcp.Kind != "client" || tcp.Service != "orders" {
		t.Errorf("TCP span: kind %s service %s, want client orders", tcp.Kind, tcp.Service)
	}
	checkAttr(t, tcp, "network.transport", "tcp")
	checkAttr(t, tcp, "meshtrace.tcp.bytes_sent", "5")
	checkAttr(t, tcp, "meshtrace.tcp.bytes_received", "5")
	checkAttr(t, tcp, "envoy.upstream.cluster", postgresCluster)
}
