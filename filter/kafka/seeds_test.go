package kafka_test

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/meshtrace/meshtrace/filter/kafka"
	"github.com/meshtrace/meshtrace/filter/kafka/kafkatest"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the kmsg-encoded FuzzDecoder seeds (testdata/fuzz/FuzzDecoder/kmsg-*)")

// kmsgSeeds are synthetic traffic the recorded captures lack: consumer group requests on a coordinator
// connection with a Fetch on another, batch timestamps, transaction markers, legacy message sets, and SASL
// authentication before a Produce.
func kmsgSeeds() map[string]*kafkatest.Capture {
	const ts = 1_700_000_000_000
	seeds := map[string]*kafkatest.Capture{}
	var group kafkatest.Capture
	for i, req := range []struct{ key, version int16 }{
		{kafka.APIJoinGroup, 9}, {kafka.APISyncGroup, 5}, {kafka.APIHeartbeat, 4}, {kafka.APIOffsetFetch, 8},
		{kafka.APIOffsetCommit, 9}, {kafka.APIConsumerGroupHeartbeat, 0}, {kafka.APILeaveGroup, 5}, {kafka.APIJoinGroup, 2},
	} {
		group.Chunks = append(group.Chunks, kafkatest.Chunk{Conn: 0, FromClient: true,
			Data: kafkatest.Request(groupRequest(req.key, req.version, "billing"), int32(i), kafkatest.ClientID)})
	}
	freq, fresp := kafkatest.Fetch(12, 1, kafkatest.ClientID, "orders",
		kafkatest.Batch{Records: 2, FirstTimestamp: ts, MaxTimestamp: ts + 10}.Encode())
	group.Chunks = append(group.Chunks, kafkatest.Chunk{Conn: 1, FromClient: true, Data: freq}, kafkatest.Chunk{Conn: 1, Data: fresp})
	seeds["kmsg-groups"] = &group

	txn := join(
		kafkatest.Batch{BaseOffset: 10, Records: 3, Attributes: 0x10, ProducerID: 7, ProducerEpoch: 1, FirstTimestamp: ts, MaxTimestamp: ts}.Encode(),
		kafkatest.Batch{BaseOffset: 13, Records: 1, Attributes: 0x30, ProducerID: 7, ProducerEpoch: 1, FirstTimestamp: ts, MaxTimestamp: ts}.Encode(),
		kafkatest.Batch{BaseOffset: 14, Records: 1, Attributes: 0x08, FirstTimestamp: ts, MaxTimestamp: ts + 5}.Encode())
	freq, fresp = kafkatest.Fetch(16, 1, kafkatest.ClientID, "orders", txn)
	seeds["kmsg-fetch-transactions"] = &kafkatest.Capture{Chunks: []kafkatest.Chunk{{FromClient: true, Data: freq}, {Data: fresp}}}

	legacy := join(kafkatest.LegacyMessage(0, 1), kafkatest.LegacyMessage(1, 2), kafkatest.Batch{BaseOffset: 3, Records: 1}.Encode())
	freq, fresp = kafkatest.Fetch(4, 1, kafkatest.ClientID, "orders", legacy)
	seeds["kmsg-fetch-legacy"] = &kafkatest.Capture{Chunks: []kafkatest.Chunk{{FromClient: true, Data: freq}, {Data: fresp}}}

	reqs, resps := saslTraffic("SCRAM-SHA-512", 2)
	preq, presp := kafkatest.Produce(9, 100, kafkatest.ClientID, "orders", kafkatest.Batch{Records: 2, Attributes: 0x10, ProducerID: 3}.Encode())
	seeds["kmsg-sasl-produce"] = &kafkatest.Capture{Chunks: []kafkatest.Chunk{{FromClient: true, Data: reqs}, {Data: resps},
		{FromClient: true, Data: preq}, {Data: presp}}}
	return seeds
}

// TestKmsgSeeds replays the synthetic seeds (each must decode without stopping and report something) and,
// with -update-seeds, writes them to the FuzzDecoder corpus.
func TestKmsgSeeds(t *testing.T) {
	for name, c := range kmsgSeeds() {
		t.Run(name, func(t *testing.T) {
			got := replay(t, c, kafka.Config{})
			if len(got) == 0 {
				t.Error("nothing reported")
			}
			if !*updateSeeds {
				return
			}
			b, err := c.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			seed := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
			if err := os.WriteFile(filepath.Join("testdata", "fuzz", "FuzzDecoder", name), []byte(seed), 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
}
