package kafka

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	baggage     = "customer_id=c-42,tenant=acme"
)

// TestClients starts one broker that advertises a TCP forwarder in front of it (as a test puts Envoy there),
// produces with the Java client and librdkafka through the forwarder (a codec each, idempotent, transactional),
// and consumes with classic and KIP-848 groups, checking counts, keys and the traceparent and baggage headers.
func TestClients(t *testing.T) {
	fwd := NewForwarder(t)
	b := StartBroker(t, BrokerConfig{AdvertisedAddr: fwd.Addr(), NumPartitions: 2})
	fwd.SetTarget(b.Addr)

	// Metadata answered on the client listener names the forwarder, on the internal listener the broker.
	if got := metadataBroker(t, b.Addr); got != fwd.Addr() {
		t.Fatalf("metadata on the client listener names %s, want the advertised %s", got, fwd.Addr())
	}
	if got := metadataBroker(t, b.InternalAddr); got != b.InternalAddr {
		t.Fatalf("metadata on the internal listener names %s, want %s", got, b.InternalAddr)
	}

	const n = 12
	b.CreateTopic(t, "java-zstd", 3, nil)
	b.CreateTopic(t, "librdkafka-lz4", 3, nil)
	b.CreateTopic(t, "java-txn", 1, nil)
	headers := []string{"--header", "traceparent=" + traceparent, "--header", "baggage=" + baggage}
	boot := fwd.Addr()

	acks := RunJava(t, boot, append([]string{"produce", "--topic", "java-zstd", "--count", fmt.Sprint(n),
		"--key", "order", "--compression", "zstd", "--idempotence", "true", "--linger-ms", "20", "--batch-size", "4096"},
		headers...)...)
	checkAcks(t, "java produce", acks, n, "order")
	acks = RunPython(t, boot, append([]string{"produce", "--topic", "librdkafka-lz4", "--count", fmt.Sprint(n),
		"--key", "cart", "--compression", "lz4", "--idempotence", "true", "--linger-ms", "20"}, headers...)...)
	checkAcks(t, "librdkafka produce", acks, n, "cart")
	acks = RunJava(t, boot, append([]string{"produce", "--topic", "java-txn", "--count", "5", "--key", "txn",
		"--compression", "gzip", "--transactional-id", "meshtrace-test-txn"}, headers...)...)
	checkAcks(t, "java transactional produce", acks, 5, "txn")

	if hw := b.HighWatermarks(t, "java-zstd"); sum(hw) != n {
		t.Errorf("java-zstd high watermarks %v, want %d records in all", hw, n)
	}
	if hw := b.HighWatermarks(t, "java-txn"); hw[0] != 6 {
		t.Errorf("java-txn high watermark %v, want 6 (5 records and the commit marker)", hw)
	}

	// Each client consumes the other's records, once with each group protocol.
	recs := RunPython(t, boot, "consume", "--topic", "java-zstd", "--group", "g-librdkafka-classic", "--count", fmt.Sprint(n))
	checkConsumed(t, "librdkafka classic consume", recs, n, "order")
	recs = RunJava(t, boot, "consume", "--topic", "librdkafka-lz4", "--group", "g-java-848", "--count", fmt.Sprint(n),
		"--group-protocol", "consumer")
	checkConsumed(t, "java KIP-848 consume", recs, n, "cart")
	recs = RunJava(t, boot, "consume", "--topic", "java-txn", "--group", "g-java-classic", "--count", "5")
	checkConsumed(t, "java classic consume (read_committed)", recs, 5, "txn")
	recs = RunPython(t, boot, "consume", "--topic", "java-txn", "--group", "g-librdkafka-848", "--count", "5",
		"--group-protocol", "consumer")
	checkConsumed(t, "librdkafka KIP-848 consume (read_committed)", recs, 5, "txn")

	// The groups committed: a second run of a group finds nothing left and times out.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Run(ctx, Librdkafka, boot, "consume", "--topic", "java-zstd", "--group", "g-librdkafka-classic",
		"--count", "1", "--timeout-ms", "3000")
	if err == nil || len(res.Records) != 0 {
		t.Errorf("a committed group consumed again: %d records, err %v", len(res.Records), err)
	}

	// --summary: one line with the records, their bytes and the seconds taken, in place of the records.
	b.CreateTopic(t, "summary", 2, nil)
	prod, err := Run(ctx, Java, boot, "produce", "--topic", "summary", "--count", "20", "--key", "k",
		"--value-size", "100", "--summary", "true")
	if err != nil {
		t.Fatal(err)
	}
	cons, err := Run(ctx, Librdkafka, boot, "consume", "--topic", "summary", "--group", "g-summary", "--count", "20",
		"--summary", "true")
	if err != nil {
		t.Fatal(err)
	}
	const bytes = 20*100 + 10*3 + 10*4 // values of 100 bytes, keys k-0..k-9 and k-10..k-19
	for name, r := range map[string]Result{"java produce": prod, "librdkafka consume": cons} {
		if s := r.Summary; len(r.Records) != 0 || s == nil || s.Records != 20 || s.Bytes != bytes || s.Seconds <= 0 {
			t.Errorf("%s --summary: %d record lines, summary %+v, want 20 records of %d bytes", name, len(r.Records), s, bytes)
		}
	}

	// Every client connection went through the forwarder: the bootstrap and the broker connections the
	// metadata named, of eleven runs.
	if c := fwd.Conns(); c < 11 {
		t.Errorf("the forwarder saw %d connections, want at least one per run", c)
	}
}

// TestToolsMissing checks that a missing install fails naming `make tools`.
func TestToolsMissing(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		env string
		fn  func() (string, error)
	}{
		{BrokerLibsEnv, BrokerLibs},
		{ClientLibsEnv, ClientLibs},
		{PythonPathEnv, PythonPath},
	} {
		t.Setenv(tc.env, dir)
		if _, err := tc.fn(); err == nil || !strings.Contains(err.Error(), "make tools") {
			t.Errorf("%s=%s: err %v, want one naming `make tools`", tc.env, dir, err)
		}
	}
}

// TestProperties checks the listeners server.properties gets, and that BrokerConfig.Properties win.
func TestProperties(t *testing.T) {
	b := &Broker{Addr: "127.0.0.1:1", AdvertisedAddr: "127.0.0.1:9", InternalAddr: "127.0.0.1:2", Dir: "/d",
		cfg: BrokerConfig{NumPartitions: 4, Properties: map[string]string{"num.io.threads": "3"}}}
	p := b.properties("127.0.0.1:3")
	for _, want := range []string{
		"listeners=CLIENT://127.0.0.1:1,INTERNAL://127.0.0.1:2,CONTROLLER://127.0.0.1:3\n",
		"advertised.listeners=CLIENT://127.0.0.1:9,INTERNAL://127.0.0.1:2\n",
		"controller.quorum.voters=1@127.0.0.1:3\n",
		"inter.broker.listener.name=INTERNAL\n",
		"num.partitions=4\n",
		"num.io.threads=3\n",
		"auto.create.topics.enable=false\n",
	} {
		if !strings.Contains(p, want) {
			t.Errorf("server.properties lacks %q:\n%s", want, p)
		}
	}
}

func checkAcks(t *testing.T, what string, acks []Record, n int, keyPrefix string) {
	t.Helper()
	if len(acks) != n {
		t.Fatalf("%s: %d acks, want %d", what, len(acks), n)
	}
	for i, r := range acks {
		if want := fmt.Sprintf("%s-%d", keyPrefix, i); r.KeyString() != want || r.Offset < 0 {
			t.Errorf("%s: ack %d = %+v, want key %s and an offset", what, i, r, want)
		}
	}
}

func checkConsumed(t *testing.T, what string, recs []Record, n int, keyPrefix string) {
	t.Helper()
	if len(recs) != n {
		t.Fatalf("%s: %d records, want %d", what, len(recs), n)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		seen[r.KeyString()] = true
		if tp, _ := r.Header("traceparent"); tp != traceparent {
			t.Errorf("%s: %s traceparent %q, want %q", what, r.KeyString(), tp, traceparent)
		}
		if bg, _ := r.Header("baggage"); bg != baggage {
			t.Errorf("%s: %s baggage %q, want %q", what, r.KeyString(), bg, baggage)
		}
		if r.Value == nil || !strings.HasPrefix(*r.Value, "value-") {
			t.Errorf("%s: %s value %v", what, r.KeyString(), r.Value)
		}
	}
	for i := range n {
		if k := fmt.Sprintf("%s-%d", keyPrefix, i); !seen[k] {
			t.Errorf("%s: key %s not consumed", what, k)
		}
	}
}

func sum(m map[int32]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

// metadataBroker returns the host:port of the broker a metadata request to addr names.
func metadataBroker(t *testing.T, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// One raw MetadataRequest v12 on the connection: franz-go's client would follow the metadata itself.
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 12
	body := req.AppendTo(nil)
	msg := []byte{0, 0, 0, 0}
	msg = append(msg, 0, byte(req.Key()), 0, byte(req.Version), 0, 0, 0, 7) // api key, version, correlation id
	msg = append(msg, 0, 4, 't', 'e', 's', 't', 0)                          // client id, empty tagged fields
	msg = append(msg, body...)
	n := len(msg) - 4
	msg[0], msg[1], msg[2], msg[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, int(size[0])<<24|int(size[1])<<16|int(size[2])<<8|int(size[3]))
	if _, err := io.ReadFull(conn, resp); err != nil {
		t.Fatal(err)
	}
	m := kmsg.NewPtrMetadataResponse()
	m.Version = 12
	if err := m.ReadFrom(resp[5:]); err != nil { // correlation id, empty tagged fields
		t.Fatal(err)
	}
	if len(m.Brokers) != 1 {
		t.Fatalf("metadata from %s names %d brokers", addr, len(m.Brokers))
	}
	return net.JoinHostPort(m.Brokers[0].Host, fmt.Sprint(m.Brokers[0].Port))
}

// TestClusterID checks the random cluster ids: 16 bytes of a version-4 UUID, and none starting with '-'
// (which kafka-storage would take for an option: about 1 in 64 before they were drawn again).
func TestClusterID(t *testing.T) {
	for range 5000 {
		id, err := clusterID()
		if err != nil {
			t.Fatal(err)
		}
		u, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil || len(u) != 16 || u[6]>>4 != 4 || u[8]>>6 != 2 || strings.HasPrefix(id, "-") {
			t.Fatalf("cluster id %q: %x, %v", id, u, err)
		}
	}
}
