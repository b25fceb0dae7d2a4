package kafka_test

import (
	"testing"

	"github.com/meshtrace/meshtrace/filter/kafka"
	"github.com/meshtrace/meshtrace/filter/kafka/kafkatest"
)

// TestContextTimestamps checks the timestamp each record trace context gets: the first record's create time
// (batch first timestamp plus the record's delta), the earliest when a context repeats, and the broker's
// append time for LogAppendTime batches.
func TestContextTimestamps(t *testing.T) {
	const ts = 1_700_000_000_000
	cases := []struct {
		name    string
		batches [][]byte
		want    []int64 // per context TraceParent(0), TraceParent(1), ...
	}{
		{"create time", [][]byte{kafkatest.Batch{Records: 3, FirstTimestamp: ts, MaxTimestamp: ts + 20, TimestampStep: 10}.Encode()},
			[]int64{ts, ts + 10, ts + 20}},
		{"earliest of a repeated context", [][]byte{
			kafkatest.Batch{BaseOffset: 0, Records: 2, FirstTimestamp: ts + 500, MaxTimestamp: ts + 501, TimestampStep: 1}.Encode(),
			kafkatest.Batch{BaseOffset: 2, Records: 2, FirstTimestamp: ts, MaxTimestamp: ts + 7, TimestampStep: 7}.Encode()},
			[]int64{ts, ts + 7}},
		{"log append time", [][]byte{kafkatest.Batch{Records: 2, Attributes: 0x08, FirstTimestamp: ts, MaxTimestamp: ts + 900, TimestampStep: 5}.Encode()},
			[]int64{ts + 900, ts + 900}},
		{"no timestamps", [][]byte{kafkatest.Batch{Records: 2, FirstTimestamp: -1, MaxTimestamp: -1}.Encode()},
			[]int64{0, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var records []byte
			for _, b := range tc.batches {
				records = append(records, b...)
			}
			req, resp := kafkatest.Fetch(12, 1, kafkatest.ClientID, "orders", records)
			c := &kafkatest.Capture{Chunks: []kafkatest.Chunk{{FromClient: true, Data: req}, {Data: resp}}}
			var got []kafka.Context
			c.Feed(kafka.Config{Topics: kafka.NewTopicNames(4)}, func(ex *kafka.Exchange) {
				for _, tp := range ex.Topics {
					for _, ctx := range tp.Contexts {
						got = append(got, kafka.Context{TraceParent: append([]byte(nil), ctx.TraceParent...), Timestamp: ctx.Timestamp})
					}
				}
			})
			if len(got) != len(tc.want) {
				t.Fatalf("%d contexts, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				if string(got[i].TraceParent) != kafkatest.TraceParent(i) || got[i].Timestamp != w {
					t.Errorf("context %d = %s at %d, want %s at %d", i, got[i].TraceParent, got[i].Timestamp, kafkatest.TraceParent(i), w)
				}
			}
		})
	}
}

// TestOldestPartition checks that a fetch over several partitions names the one whose records waited longest.
func TestOldestPartition(t *testing.T) {
	const ts = 1_700_000_000_000
	batch := func(offset, age int64) []byte {
		return kafkatest.Batch{BaseOffset: offset, Records: 1, FirstTimestamp: ts - age, MaxTimestamp: ts - age}.Encode()
	}
	for _, tc := range []struct {
		name       string
		partitions [][]byte
		want       int32
		oldest     int64
	}{
		{"the middle one", [][]byte{batch(0, 500), batch(0, 9000), batch(0, 20)}, 1, ts - 9000},
		{"the first one", [][]byte{batch(0, 9000), batch(0, 500)}, 0, ts - 9000},
		{"the last one, after an empty partition", [][]byte{batch(0, 5), nil, batch(0, 70)}, 2, ts - 70},
		{"the older of two batches in one partition", [][]byte{batch(0, 10), append(batch(0, 30), batch(1, 600)...)}, 1, ts - 600},
	} {
		req, resp := kafkatest.FetchPartitions(12, 1, kafkatest.ClientID, "orders", tc.partitions...)
		c := &kafkatest.Capture{Chunks: []kafkatest.Chunk{{FromClient: true, Data: req}, {Data: resp}}}
		var got []kafka.Topic
		c.Feed(kafka.Config{}, func(ex *kafka.Exchange) {
			for _, tp := range ex.Topics {
				got = append(got, kafka.Topic{OldestTimestamp: tp.OldestTimestamp, OldestPartition: tp.OldestPartition})
			}
		})
		if len(got) != 1 || got[0].OldestPartition != tc.want || got[0].OldestTimestamp != tc.oldest {
			t.Errorf("%s: %+v, want partition %d at %d", tc.name, got, tc.want, tc.oldest)
		}
	}
}
