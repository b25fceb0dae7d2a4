package plugin_test

import (
	"testing"

	"github.com/meshtrace/meshtrace/filter/kafka"
	"github.com/meshtrace/meshtrace/filter/kafka/kafkatest"
	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

// loadNetwork loads the filter as an outbound network filter whose export target answers 200 at once.
func loadNetwork(b *testing.B, m *wasmhost.Module) *wasmhost.Host {
	b.Helper()
	h, err := m.Load(b.Context(), wasmhost.Config{
		PluginConfig: []byte(networkPolicy),
		Properties:   networkHost(2),
		HTTPCall: func(wasmhost.HTTPCallRequest) (wasmhost.HTTPCallResponse, bool) {
			return wasmhost.HTTPCallResponse{Headers: [][2]string{{":status", "200"}}}, true
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close(b.Context()) })
	return h
}

// benchBuilds runs f as a sub-benchmark per compiled filter build.
func benchBuilds(b *testing.B, f func(b *testing.B, h *wasmhost.Host)) {
	for _, build := range artifact.Builds(b) {
		b.Run(build.Name, func(b *testing.B) { f(b, loadNetwork(b, module(b, build))) })
	}
}

// reportCPUThroughput returns a function that reports MB per second of this process's CPU time: on a
// shared machine wall-clock MB/s also counts the time spent waiting for a core.
func reportCPUThroughput(b *testing.B, bytesPerOp int) func() {
	start := cpuTime()
	return func() {
		if ns := cpuTime() - start; ns > 0 {
			b.ReportMetric(float64(bytesPerOp)*float64(b.N)/float64(ns)*1e3, "MB/cpu-s")
		}
	}
}

// must returns a checker for the (Action, error) results of the host's callbacks.
func must(b *testing.B) func(wasmhost.Action, error) {
	return func(_ wasmhost.Action, err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKafkaWasm measures Kafka decoding throughput inside the compiled filter: per connection, 64
// Produce requests of 100 records of 100 bytes (small: about 15 KB a request) or 8 of 1,000 records of 200
// bytes (large: about 230 KB, a Java producer's request with batch.size 64 KiB on a few partitions), with
// traceparent and x-customer-id headers, and their responses, delivered in 16 KiB pieces, each exchange
// becoming an exported span. MB/s counts both directions.
func BenchmarkKafkaWasm(b *testing.B) {
	for _, shape := range []struct {
		name                      string
		requests, records, values int
	}{{"small", 64, 100, 100}, {"large", 8, 1000, 200}} {
		b.Run(shape.name, func(b *testing.B) {
			benchKafkaWasm(b, shape.requests, shape.records, shape.values)
		})
	}
}

func benchKafkaWasm(b *testing.B, requests, records, values int) {
	reqs, resps := kafkatest.ProduceTraffic(requests, records, values)
	const chunk = 16 << 10
	b.Run("native", func(b *testing.B) {
		// The decoder alone, compiled natively, on the same traffic: the reference for the wasm builds.
		b.SetBytes(int64(len(reqs) + len(resps)))
		defer reportCPUThroughput(b, len(reqs)+len(resps))()
		records := 0
		for b.Loop() {
			d := kafka.NewDecoder(kafka.Config{Headers: []string{"x-customer-id"}}, func(ex *kafka.Exchange) { records += ex.Topics[0].Records })
			for i := 0; i < len(reqs); i += chunk {
				d.Requests(reqs[i:min(i+chunk, len(reqs))], 1)
			}
			for i := 0; i < len(resps); i += chunk {
				d.Responses(resps[i:min(i+chunk, len(resps))], 2)
			}
		}
	})
	benchBuilds(b, func(b *testing.B, h *wasmhost.Host) {
		ok := must(b)
		b.SetBytes(int64(len(reqs) + len(resps)))
		defer reportCPUThroughput(b, len(reqs)+len(resps))()
		for b.Loop() {
			c, a, err := h.NewConnection(kafkaConnProps(0))
			ok(a, err)
			for i := 0; i < len(reqs); i += chunk {
				ok(c.DownstreamData(reqs[i:min(i+chunk, len(reqs))], false))
			}
			for i := 0; i < len(resps); i += chunk {
				ok(c.UpstreamData(resps[i:min(i+chunk, len(resps))], false))
			}
			if err := c.Close(wasmhost.PeerRemote); err != nil {
				b.Fatal(err)
			}
			if err := h.Tick(); err != nil {
				b.Fatal(err)
			}
		}
		if n := h.Metrics()["meshtrace_spans_exported_total"]; n == 0 {
			b.Fatal("no spans exported")
		}
	})
}

// BenchmarkTCPConnection measures one short TCP connection through each compiled build: new connection, one
// read each way, both close events and the span (export amortised over 64 connections). cpu-ns/op is process
// CPU time, steadier than wall time on a loaded machine, and includes the host's own cost of the 7 guest
// callbacks; guest-bytes is the guest's linear memory at the end.
func BenchmarkTCPConnection(b *testing.B) {
	props := props("source.address", "10.0.0.9:41000", "destination.address", "10.96.0.20:5432",
		"upstream.address", "10.0.3.4:5432", "xds.cluster_name", "outbound|5432||db.data.svc.cluster.local")
	data := make([]byte, 512)
	benchBuilds(b, func(b *testing.B, h *wasmhost.Host) {
		ok := must(b)
		connection := func(i int) {
			c, a, err := h.NewConnection(props)
			ok(a, err)
			ok(c.DownstreamData(data, false))
			ok(c.UpstreamData(data, false))
			if err := c.Close(wasmhost.PeerRemote); err != nil {
				b.Fatal(err)
			}
			if i%64 == 63 {
				if err := h.Tick(); err != nil {
					b.Fatal(err)
				}
			}
		}
		for i := 0; i < 1000; i++ { // warm up
			connection(i)
		}
		cpu := cpuTime()
		n := 0
		for b.Loop() {
			connection(n)
			n++
		}
		b.ReportMetric(float64(cpuTime()-cpu)/float64(n), "cpu-ns/op")
		b.ReportMetric(float64(h.MemoryBytes()), "guest-bytes")
	})
}
