package kafka_test

import (
	"testing"

	"github.com/meshtrace/meshtrace/filter/kafka"
	"github.com/meshtrace/meshtrace/filter/kafka/kafkatest"
)

// feedAll feeds a request and a response stream in chunks of chunk bytes, requests first, as a proxy
// delivers them, and returns the exchanges seen and their records.
func feedAll(d *kafka.Decoder, reqs, resps []byte, chunk int) {
	for i := 0; i < len(reqs); i += chunk {
		d.Requests(reqs[i:min(i+chunk, len(reqs))], 1)
	}
	for i := 0; i < len(resps); i += chunk {
		d.Responses(resps[i:min(i+chunk, len(resps))], 2)
	}
}

// TestProduceTraffic checks the generated benchmark traffic decodes as what it claims to be.
func TestProduceTraffic(t *testing.T) {
	reqs, resps := kafkatest.ProduceTraffic(32, 100, 100)
	exchanges, records := 0, 0
	d := kafka.NewDecoder(kafka.Config{Headers: []string{"x-customer-id"}}, func(ex *kafka.Exchange) {
		exchanges++
		for _, tp := range ex.Topics {
			records += tp.Records
			if v, _ := tp.Header("x-customer-id"); string(v) != "cust-42" || !ex.Answered || tp.Name != "orders" {
				t.Errorf("exchange %d: topic %q answered %v x-customer-id %q", ex.CorrelationID, tp.Name, ex.Answered, v)
			}
		}
	})
	feedAll(d, reqs, resps, 16<<10)
	if d.Err() != nil || exchanges != 32 || records != 3200 {
		t.Fatalf("got %d exchanges, %d records, error %v; want 32, 3200", exchanges, records, d.Err())
	}
}

// BenchmarkDecoder measures native decoding throughput over Produce traffic (both directions) delivered
// in 16 KiB pieces, with the default bound on records read per batch and with every record read.
func BenchmarkDecoder(b *testing.B) {
	reqs, resps := kafkatest.ProduceTraffic(64, 100, 100)
	for _, bc := range []struct {
		name string
		read int
	}{{"read-default", 0}, {"read-all", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(reqs) + len(resps)))
			cfg := kafka.Config{Headers: []string{"x-customer-id"}, MaxRecordsRead: bc.read}
			records := 0
			for b.Loop() {
				d := kafka.NewDecoder(cfg, func(ex *kafka.Exchange) { records += ex.Topics[0].Records })
				feedAll(d, reqs, resps, 16<<10)
			}
			if records == 0 {
				b.Fatal("nothing decoded")
			}
		})
	}
}

// BenchmarkRecordedClients decodes the committed captures of the real clients' produce traffic, one per codec
// (records per second of what each client sent, decompression included).
func BenchmarkRecordedClients(b *testing.B) {
	for _, client := range []string{"java", "librdkafka"} {
		for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
			name := client + "-produce-" + codec
			c, err := kafkatest.Load(name)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(int64(c.Bytes()))
				records := 0
				for b.Loop() {
					c.Feed(kafka.Config{Topics: kafka.NewTopicNames(4)}, func(ex *kafka.Exchange) {
						for _, tp := range ex.Topics {
							records += tp.Records - tp.Undecoded
						}
					})
				}
				b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}
