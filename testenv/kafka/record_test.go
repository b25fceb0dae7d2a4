package kafka

import (
	"flag"
	"fmt"
	"slices"
	"testing"

	fkafka "github.com/meshtrace/meshtrace/filter/kafka"
	"github.com/meshtrace/meshtrace/filter/kafka/kafkatest"
)

var update = flag.Bool("update", false, "write the recorded client traffic to filter/kafka/testdata (captures and fuzz seeds)")

// clientRun is one driver run of TestRecordClients, recorded as one capture.
type clientRun struct {
	name   string
	kind   ClientKind
	topic  string
	codec  string // of the records produced, or consumed
	group  string // consume runs
	txn    bool
	args   []string
	client string
}

// TestRecordClients records the bytes of the Java client and librdkafka against the real broker, one capture
// per run: producing with every codec, idempotent and transactional, and consuming with classic and KIP-848
// groups, then, on a broker that wants SASL, producing with PLAIN and consuming with SCRAM-SHA-256. It replays each capture into the filter's decoder and requires every record the client
// acknowledged or received to be counted and decoded; with -update it stores the captures, with what the
// clients reported, for filter/kafka's TestRecordedClients and the fuzz corpus.
func TestRecordClients(t *testing.T) {
	fwd := NewForwarder(t)
	b := StartBroker(t, BrokerConfig{AdvertisedAddr: fwd.Addr(), NumPartitions: 2})
	fwd.SetTarget(b.Addr)

	var runs []clientRun
	for _, kind := range []ClientKind{Java, Librdkafka} {
		for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
			runs = append(runs, clientRun{name: "produce-" + codec, kind: kind, topic: fmt.Sprintf("%s-%s", kind, codec), codec: codec,
				args: []string{"--compression", codec, "--idempotence", "true"}})
		}
		runs = append(runs, clientRun{name: "produce-transactional", kind: kind, topic: fmt.Sprintf("%s-txn", kind), codec: "zstd", txn: true,
			args: []string{"--compression", "zstd", "--transactional-id", fmt.Sprintf("meshtrace-%s-txn", kind)}})
	}
	for _, kind := range []ClientKind{Java, Librdkafka} {
		other := Librdkafka
		if kind == Librdkafka {
			other = Java
		}
		for _, proto := range []string{"classic", "consumer"} {
			runs = append(runs, clientRun{name: "consume-" + proto, kind: kind, topic: fmt.Sprintf("%s-zstd", other), codec: "zstd",
				group: fmt.Sprintf("g-%s-%s", kind, proto), args: []string{"--group-protocol", proto}})
		}
	}
	recordRuns(t, b, fwd, runs)
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}

	// The same through a listener that wants SASL: the Java client produces with PLAIN, librdkafka consumes
	// with SCRAM-SHA-256; their SaslHandshake and SaslAuthenticate frames precede the exchanges.
	sfwd := NewForwarder(t)
	sb := StartBroker(t, BrokerConfig{AdvertisedAddr: sfwd.Addr(), NumPartitions: 2, SASL: &SASL{
		Plain: map[string]string{"alice": "alice-secret"}, SCRAM: map[string]string{"bob": "bob-secret"},
	}})
	sfwd.SetTarget(sb.Addr)
	recordRuns(t, sb, sfwd, []clientRun{
		{name: "produce-sasl-plain", kind: Java, topic: "java-sasl", codec: "lz4", args: []string{"--compression", "lz4",
			"--property", "security.protocol=SASL_PLAINTEXT", "--property", "sasl.mechanism=PLAIN",
			"--property", `sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="alice" password="alice-secret";`}},
		{name: "consume-sasl-scram", kind: Librdkafka, topic: "java-sasl", codec: "lz4", group: "g-librdkafka-sasl", args: []string{
			"--property", "security.protocol=SASL_PLAINTEXT", "--property", "sasl.mechanism=SCRAM-SHA-256",
			"--property", "sasl.username=bob", "--property", "sasl.password=bob-secret"}},
	})
}

// recordRuns creates the topics runs produce to on b, then records each run through fwd, checks the decoder
// counts what the client reported, and with -update saves the capture.
func recordRuns(t *testing.T, b *Broker, fwd *Forwarder, runs []clientRun) {
	// The headers of kafkatest's scenarios, which filter/plugin's policy tags.
	const n, recBaggage, customer = 6, "customer_id=cust-42,region=eu", "cust-42"
	headers := []string{"--header", "traceparent=" + traceparent, "--header", "baggage=" + recBaggage,
		"--header", "x-customer-id=" + customer}
	for _, r := range runs {
		if r.group == "" {
			b.CreateTopic(t, r.topic, 2, nil)
		}
	}
	for _, r := range runs {
		name := fmt.Sprintf("%s-%s", r.kind, r.name)
		t.Run(name, func(t *testing.T) {
			r.client = "meshtrace-" + name
			sc := kafkatest.Scenario{Name: name, ClientIDs: []string{r.client}, Group: r.group, Topics: map[string]*kafkatest.TopicExpect{}}
			fwd.Record()
			var recs []Record
			if r.group == "" {
				args := append([]string{"produce", "--topic", r.topic, "--count", fmt.Sprint(n), "--key", "order",
					"--client-id", r.client, "--linger-ms", "200"}, append(r.args, headers...)...)
				recs = runClient(t, r.kind, fwd.Addr(), args)
			} else {
				args := append([]string{"consume", "--topic", r.topic, "--group", r.group, "--count", fmt.Sprint(n),
					"--client-id", r.client}, r.args...)
				recs = runClient(t, r.kind, fwd.Addr(), args)
			}
			c := fwd.Capture()
			if len(recs) != n {
				t.Fatalf("the client reported %d records, want %d", len(recs), n)
			}
			want := &kafkatest.TopicExpect{Codec: r.codec, TraceParents: []string{traceparent}, Transactional: r.txn,
				Headers: map[string]string{"baggage": recBaggage, "x-customer-id": customer}}
			if r.group == "" {
				want.Records = n
				for _, rec := range recs {
					if !slices.Contains(want.Partitions, rec.Partition) {
						want.Partitions = append(want.Partitions, rec.Partition)
					}
				}
				slices.Sort(want.Partitions)
			} else {
				want.Consumed, want.TraceParents = n, nil
				for _, rec := range recs {
					if tp, _ := rec.Header("traceparent"); !slices.Contains(want.TraceParents, tp) {
						want.TraceParents = append(want.TraceParents, tp)
					}
				}
			}
			sc.Topics[r.topic] = want
			if got := decodeRecorded(c); got.records != n || got.undecoded != 0 || got.codec != want.Codec {
				t.Fatalf("the decoder counted %d records (%d undecoded, codec %s) of the %d the client reported (codec %s)",
					got.records, got.undecoded, got.codec, n, want.Codec)
			}
			if *update {
				if err := kafkatest.Save(name, c, &sc); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func runClient(t *testing.T, kind ClientKind, boot string, args []string) []Record {
	if kind == Java {
		return RunJava(t, boot, args...)
	}
	return RunPython(t, boot, args...)
}

// recorded is what the decoder counted in a capture: records of Produce requests and Fetch responses.
type recorded struct {
	records, undecoded int
	codec              string
}

func decodeRecorded(c *kafkatest.Capture) recorded {
	got := recorded{codec: "none"}
	cfg := fkafka.Config{Topics: fkafka.NewTopicNames(16), Groups: fkafka.NewGroupNames(4)}
	c.Feed(cfg, func(ex *fkafka.Exchange) {
		for _, tp := range ex.Topics {
			got.records += tp.Records
			got.undecoded += tp.Undecoded
			if tp.Compression != fkafka.CodecNone {
				got.codec = tp.Compression.String()
			}
		}
	})
	return got
}
