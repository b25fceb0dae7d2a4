package kafkatest

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Batch describes one magic-v2 record batch for Encode.
type Batch struct {
	BaseOffset int64
	Records    int
	// Attributes are the batch attributes: 0x08 LogAppendTime, 0x10 transactional, 0x20 control.
	Attributes int16
	// FirstTimestamp and MaxTimestamp are the batch timestamps in Unix milliseconds; record i is
	// FirstTimestamp + i*TimestampStep.
	FirstTimestamp, MaxTimestamp, TimestampStep int64
	// ProducerID and ProducerEpoch are -1 unless the producer is idempotent or transactional.
	ProducerID    int64
	ProducerEpoch int16
}

// Encode returns the batch encoded (uncompressed, valid CRC), its records carrying traceparent header
// TraceParent(i) (a control batch carries one commit marker record instead).
func (b Batch) Encode() []byte {
	var body []byte
	n := b.Records
	for i := 0; i < n; i++ {
		r := kmsg.Record{OffsetDelta: int32(i), TimestampDelta64: int64(i) * b.TimestampStep, Value: []byte("v"), Headers: []kmsg.Header{
			{Key: "traceparent", Value: []byte(TraceParent(i))}}}
		if b.Attributes&0x20 != 0 { // control record: key version 0, type 1 (commit)
			r = kmsg.Record{OffsetDelta: int32(i), Key: []byte{0, 0, 0, 1}, Value: []byte{0, 0, 0, 0, 0, 0}}
		}
		enc := r.AppendTo(nil)
		r.Length = int32(len(enc) - 1)
		body = r.AppendTo(body)
	}
	pid, epoch, seq := b.ProducerID, b.ProducerEpoch, int32(-1)
	if pid == 0 && epoch == 0 {
		pid, epoch = -1, -1
	} else {
		seq = 0
	}
	rb := kmsg.RecordBatch{FirstOffset: b.BaseOffset, Magic: 2, Attributes: b.Attributes,
		LastOffsetDelta: int32(max(n-1, 0)), FirstTimestamp: b.FirstTimestamp, MaxTimestamp: b.MaxTimestamp,
		ProducerID: pid, ProducerEpoch: epoch, FirstSequence: seq, NumRecords: int32(n), Records: body}
	enc := rb.AppendTo(nil)
	rb.Length = int32(len(enc) - 12)
	enc = rb.AppendTo(enc[:0])
	binary.BigEndian.PutUint32(enc[17:], crc32.Checksum(enc[21:], crc32.MakeTable(crc32.Castagnoli)))
	return enc
}

// LegacyMessage returns one uncompressed message of a magic v0 or v1 message set at offset.
func LegacyMessage(magic int8, offset int64) []byte {
	if magic == 0 {
		m := kmsg.MessageV0{Offset: offset, Magic: 0, Key: nil, Value: []byte("legacy")}
		m.MessageSize = int32(len(m.AppendTo(nil)) - 12)
		return m.AppendTo(nil)
	}
	m := kmsg.MessageV1{Offset: offset, Magic: 1, Timestamp: 1_700_000_000_000, Value: []byte("legacy")}
	m.MessageSize = int32(len(m.AppendTo(nil)) - 12)
	return m.AppendTo(nil)
}

// Request returns req as a frame with this correlation id and client id.
func Request(req kmsg.Request, corr int32, clientID string) []byte {
	return kmsg.NewRequestFormatter(kmsg.FormatterClientID(clientID)).AppendRequest(nil, req, corr)
}

// Response returns resp as a frame with this correlation id (the response header has tagged fields in
// flexible versions).
func Response(resp kmsg.Response, corr int32) []byte {
	b := binary.BigEndian.AppendUint32(nil, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	if resp.IsFlexible() && resp.Key() != 18 { // ApiVersions responses keep header v0
		b = append(b, 0)
	}
	b = resp.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// Fetch returns a Fetch request of this version for topic partition 0 and its response carrying records
// (the concatenated batches or messages) for that partition.
func Fetch(version int16, corr int32, clientID, topic string, records []byte) (request, response []byte) {
	return FetchPartitions(version, corr, clientID, topic, records)
}

// FetchPartitions is Fetch with one partition per records argument: partition i carries records[i].
func FetchPartitions(version int16, corr int32, clientID, topic string, records ...[]byte) (request, response []byte) {
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes = version, -1, 500, 1, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	t := kmsg.NewFetchResponseTopic()
	t.Topic = topic
	for i, recs := range records {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = int32(i)
		rt.Partitions = append(rt.Partitions, rp)
		p := kmsg.NewFetchResponseTopicPartition()
		p.Partition = int32(i)
		p.HighWatermark, p.LastStableOffset, p.RecordBatches = 100, 100, recs
		t.Partitions = append(t.Partitions, p)
	}
	req.Topics = append(req.Topics, rt)
	resp.Topics = append(resp.Topics, t)
	return Request(req, corr, clientID), Response(resp, corr)
}

// Produce returns a Produce request (acks=all) of this version carrying records to topic partition 0, and
// its response.
func Produce(version int16, corr int32, clientID, topic string, records []byte) (request, response []byte) {
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = version, -1, 30000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = records
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)

	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	t := kmsg.NewProduceResponseTopic()
	t.Topic = topic
	t.Partitions = append(t.Partitions, kmsg.NewProduceResponseTopicPartition())
	resp.Topics = append(resp.Topics, t)
	return Request(req, corr, clientID), Response(resp, corr)
}
