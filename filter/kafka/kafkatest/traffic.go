package kafkatest

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"hash/crc32"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// ProduceTraffic returns n uncompressed Produce requests (v9, acks=all, client id ClientID) of one record
// batch each, to topic "orders" partition 0, with records carrying a traceparent and an x-customer-id header
// and a value of valueSize bytes, followed in a second stream by the n responses: the bytes a client writes
// and a broker answers, encoded by franz-go's kmsg, for throughput measurements.
func ProduceTraffic(n, records, valueSize int) (requests, responses []byte) {
	batch := RecordBatch(records, valueSize, false)
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID(ClientID))
	for i := 0; i < n; i++ {
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = 9, -1, 30000
		topic := kmsg.NewProduceRequestTopic()
		topic.Topic = "orders"
		part := kmsg.NewProduceRequestTopicPartition()
		part.Records = batch
		topic.Partitions = append(topic.Partitions, part)
		req.Topics = append(req.Topics, topic)
		requests = append(requests, f.AppendRequest(nil, req, int32(i))...) // it sizes the frame at dst[0:4]

		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = "orders"
		rp := kmsg.NewProduceResponseTopicPartition()
		rp.BaseOffset = int64(i * records)
		rt.Partitions = append(rt.Partitions, rp)
		resp.Topics = append(resp.Topics, rt)
		start := len(responses)
		responses = binary.BigEndian.AppendUint32(responses, 0) // size, set below
		responses = binary.BigEndian.AppendUint32(responses, uint32(i))
		responses = append(responses, 0) // response header v1: no tagged fields
		responses = resp.AppendTo(responses)
		binary.BigEndian.PutUint32(responses[start:], uint32(len(responses)-start-4))
	}
	return requests, responses
}

// RecordBatch encodes one magic-v2 record batch (with a valid CRC), gzip-compressed if asked, of records
// records with traceparent and x-customer-id headers and valueSize-byte values.
func RecordBatch(records, valueSize int, gzipped bool) []byte {
	value := make([]byte, valueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	var body []byte
	for i := 0; i < records; i++ {
		r := kmsg.Record{OffsetDelta: int32(i), Value: value, Headers: []kmsg.Header{
			{Key: "traceparent", Value: []byte(TraceParent(i))},
			{Key: "x-customer-id", Value: []byte("cust-42")},
		}}
		enc := r.AppendTo(nil)
		r.Length = int32(len(enc) - 1) // the zero length took one byte
		body = r.AppendTo(body)
	}
	b := kmsg.RecordBatch{Magic: 2, LastOffsetDelta: int32(records - 1), ProducerID: -1, ProducerEpoch: -1,
		FirstSequence: -1, NumRecords: int32(records), Records: body}
	if gzipped {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(body) // writes to a bytes.Buffer do not fail
		w.Close()
		b.Attributes, b.Records = 1, buf.Bytes()
	}
	enc := b.AppendTo(nil)
	b.Length = int32(len(enc) - 12)
	enc = b.AppendTo(enc[:0])
	crc := crc32.Checksum(enc[21:], crc32.MakeTable(crc32.Castagnoli)) // attributes to the end
	binary.BigEndian.PutUint32(enc[17:], crc)
	return enc
}
