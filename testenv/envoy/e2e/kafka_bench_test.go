package e2e

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/kafka"
)

var (
	kafkaBenchRecords   = flag.Int("kafka-records", 200_000, "BenchmarkKafkaThroughEnvoy: records produced and consumed per sidecar and round")
	kafkaBenchValueSize = flag.Int("kafka-value-size", 200, "BenchmarkKafkaThroughEnvoy: bytes per record value")
	kafkaBenchRounds    = flag.Int("kafka-rounds", 3, "BenchmarkKafkaThroughEnvoy: alternating rounds per benchmark iteration")
	kafkaBenchBuilds    artifact.BuildFlag
)

func init() {
	flag.Var(&kafkaBenchBuilds, "kafka-build", "BenchmarkKafkaThroughEnvoy: name=path of one more filter build in its own sidecar, e.g. an earlier one (repeatable)")
}

// kafkaBenchTopics numbers the topics BenchmarkKafkaThroughEnvoy creates.
var kafkaBenchTopics int

// kafkaArm is one sidecar of BenchmarkKafkaThroughEnvoy and what its rounds measured.
type kafkaArm struct {
	name     string
	addr     string // the sidecar's Kafka listener
	cpu      func() (time.Duration, error)
	produce  []float64 // MB/s per round, as the producer measured it
	consume  []float64 // MB/s per round, as the consumer measured it
	workerUs []float64 // the sidecar worker's CPU per MB produced and consumed, per round, us
}

// BenchmarkKafkaThroughEnvoy measures what the filter costs a Kafka client and its broker: the official Java
// client produces and then consumes -kafka-records records (headers traceparent and baggage, values of
// -kafka-value-size bytes) through an Envoy sidecar without the filter, with the TinyGo build and with the Go
// build as a network filter in front of tcp_proxy, in -kafka-rounds alternating rounds (3; an iteration of
// the benchmark is all of them, so the default -benchtime runs them once).
// The broker is real (Kafka 4.4, KRaft, C2 on); it advertises a forwarder that each round points at one
// sidecar. Per sidecar it reports the median producer and consumer throughput (MB/s of keys and values,
// measured inside the client, so the JVM's start is left out), their ratio to the no-filter sidecar's in the
// same round, and the worker thread's CPU per MB moved, minus the no-filter sidecar's. Each codec is a
// sub-benchmark: none, and zstd, which the filter must decompress to read record headers. -kafka-build
// name=path adds a sidecar with another build (an earlier one, to measure a change side by side):
//
//	go test ./testenv/envoy/e2e -run '^$' -bench KafkaThroughEnvoy -args -kafka-rounds 5 -kafka-build old=/tmp/old.wasm
func BenchmarkKafkaThroughEnvoy(b *testing.B) {
	builds := append(artifact.Builds(b), kafkaBenchBuilds...)
	col := newCollector(b, nil)
	front := kafka.NewForwarder(b)
	broker := kafka.StartBroker(b, kafka.BrokerConfig{
		AdvertisedAddr: front.Addr(), MaxHeap: "768m", JVMArgs: []string{"-XX:TieredStopAtLevel=4"},
	})
	arms := []*kafkaArm{{name: "none"}}
	for _, build := range builds {
		arms = append(arms, &kafkaArm{name: build.Name})
	}
	for _, a := range arms {
		path := ""
		for _, build := range builds {
			if build.Name == a.name {
				path = build.Path
			}
		}
		p, addr := startKafkaSidecar(b, a.name, path, broker.Addr, col.Addr())
		a.addr, a.cpu = addr, p.WorkerCPU
	}

	// A warm-up round per sidecar, unmeasured: V8 compiles the plugin's hot code and the filter's heap grows
	// to its working size in the first one.
	for _, a := range arms {
		front.SetTarget(a.addr)
		if err := kafkaRound(b, broker, front.Addr(), a, "bench-warmup-"+a.name, "zstd", *kafkaBenchRecords/4); err != nil {
			b.Fatal(err)
		}
		a.produce, a.consume, a.workerUs = nil, nil, nil
	}
	for _, codec := range []string{"none", "zstd"} {
		b.Run(codec, func(b *testing.B) {
			for _, a := range arms {
				a.produce, a.consume, a.workerUs = nil, nil, nil
			}
			for round := 0; round < b.N**kafkaBenchRounds; round++ {
				for i := range arms {
					a := arms[(round+i)%len(arms)] // rotate, so no sidecar always runs first
					front.SetTarget(a.addr)
					kafkaBenchTopics++ // the benchmark function runs again with a larger b.N: topics must be new
					topic := fmt.Sprintf("bench-%s-%d-%s", codec, kafkaBenchTopics, a.name)
					if err := kafkaRound(b, broker, front.Addr(), a, topic, codec, *kafkaBenchRecords); err != nil {
						b.Fatal(err)
					}
				}
			}
			reportKafka(b, arms)
		})
	}
}

// kafkaRound produces and consumes records records in one topic through arm a and appends what it measured.
func kafkaRound(b *testing.B, broker *kafka.Broker, bootstrap string, a *kafkaArm, topic, codec string, records int) error {
	broker.CreateTopic(b, topic, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n := strconv.Itoa(records)
	cpu0, err := a.cpu()
	if err != nil {
		return err
	}
	prod, err := kafka.Run(ctx, kafka.Java, bootstrap, "produce", "--topic", topic, "--count", n, "--key", "k",
		"--value-size", strconv.Itoa(*kafkaBenchValueSize), "--compression", codec, "--linger-ms", "5",
		"--batch-size", "65536", "--summary", "true", "--timeout-ms", "120000",
		"--header", "traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"--header", "baggage=customer_id=c-42,tenant=acme")
	if err != nil {
		return err
	}
	cons, err := kafka.Run(ctx, kafka.Java, bootstrap, "consume", "--topic", topic, "--group", topic, "--count", n,
		"--summary", "true", "--timeout-ms", "120000")
	if err != nil {
		return err
	}
	cpu1, err := a.cpu()
	if err != nil {
		return err
	}
	if prod.Summary == nil || cons.Summary == nil || cons.Summary.Bytes != prod.Summary.Bytes {
		return fmt.Errorf("%s: produce summary %+v, consume summary %+v", a.name, prod.Summary, cons.Summary)
	}
	mb := float64(prod.Summary.Bytes) / 1e6
	a.produce = append(a.produce, mb/prod.Summary.Seconds)
	a.consume = append(a.consume, mb/cons.Summary.Seconds)
	a.workerUs = append(a.workerUs, float64(cpu1-cpu0)/1e3/(2*mb))
	return nil
}

// reportKafka reports each arm's medians, and its ratios to the no-filter arm (arms[0]) round by round.
func reportKafka(b *testing.B, arms []*kafkaArm) {
	none := arms[0]
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-7s %14s %14s %18s %16s %16s %20s\n", "sidecar", "produce MB/s", "consume MB/s",
		"worker us/MB", "produce x none", "consume x none", "worker us/MB - none")
	for _, a := range arms {
		ratio := func(x, y []float64) float64 {
			r := make([]float64, len(x))
			for i := range x {
				r[i] = x[i] / y[i]
			}
			return median(r)
		}
		diff := make([]float64, len(a.workerUs))
		for i := range diff {
			diff[i] = a.workerUs[i] - none.workerUs[i]
		}
		fmt.Fprintf(&table, "%-7s %14.1f %14.1f %18.0f %16.3f %16.3f %20.0f\n", a.name, median(a.produce),
			median(a.consume), median(a.workerUs), ratio(a.produce, none.produce), ratio(a.consume, none.consume), median(diff))
		b.ReportMetric(median(a.produce), a.name+"-produce-MB/s")
		b.ReportMetric(median(a.consume), a.name+"-consume-MB/s")
		b.ReportMetric(median(a.workerUs), a.name+"-worker-us/MB")
	}
	b.Logf("medians over %d rounds of %d records of %d bytes:%s", len(none.produce), *kafkaBenchRecords, *kafkaBenchValueSize, table.String())
}

// median returns the median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
