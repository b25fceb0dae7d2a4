package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"
)

// ClientID is the client id every scenario's clients send.
const ClientID = "checkout"

// Group is the consumer group of the scenarios that consume.
const Group = "billing"

// Topics are created with these partition counts before a scenario runs.
var Topics = map[string]int32{"orders": 3, "payments": 2, "events": 1}

// TopicExpect is what a scenario sends to (and reads from) one topic.
type TopicExpect struct {
	Records    int     // records produced
	Consumed   int     // records the consumer read (0 if the scenario does not consume)
	Partitions []int32 // partitions produced to
	Codec      string  // compression codec name ("none", "gzip", ...)
	// Headers are record header values every record of the topic carries (besides traceparent).
	Headers map[string]string
	// TraceParents are the distinct traceparent header values, in production order.
	TraceParents []string
	Key          string // key of the only record, when Records == 1
	// Transactional reports that the records were written by a transactional producer.
	Transactional bool `json:",omitempty"`
}

// Scenario is a piece of client traffic to record. The scenarios of Scenarios are kgo against kfake; those a
// real client recorded against a real broker (testenv/kafka) are stored as JSON beside their capture (Save,
// LoadRecorded), with what the clients reported as the expectation.
type Scenario struct {
	Name     string
	Versions *kversion.Versions   `json:"-"` // caps the protocol versions kgo uses; nil = the newest both support
	Codec    kgo.CompressionCodec `json:"-"`
	NoAck    bool                 // produce with acks=0: the broker sends no Produce responses
	Topics   map[string]*TopicExpect
	// ClientIDs are the client ids of the exchanges; empty means ClientID.
	ClientIDs []string `json:",omitempty"`
	// Group is the consumer group of the Fetch exchanges; empty means Group.
	Group string `json:",omitempty"`
}

// WantClientIDs returns the client ids the scenario's exchanges carry.
func (sc Scenario) WantClientIDs() []string {
	if len(sc.ClientIDs) == 0 {
		return []string{ClientID}
	}
	return sc.ClientIDs
}

// WantGroup returns the consumer group of the scenario's Fetch exchanges.
func (sc Scenario) WantGroup() string {
	if sc.Group == "" {
		return Group
	}
	return sc.Group
}

// TraceParent returns the traceparent of record i of a scenario: one trace, one parent span per record.
func TraceParent(i int) string {
	return fmt.Sprintf("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9%04x-01", i+1)
}

// Scenarios lists the recorded scenarios: produce with and without headers over several partitions, each
// compression codec, a consumer group fetch, and older (non-flexible, topic-name) protocol versions.
func Scenarios() []Scenario {
	tenant := map[string]string{"baggage": "customer_id=cust-42,region=eu", "x-customer-id": "cust-42"}
	return []Scenario{
		{Name: "produce-plain", Codec: kgo.NoCompression(), Topics: map[string]*TopicExpect{
			"orders": {Records: 6, Partitions: []int32{0, 1, 2}, Codec: "none"}}},
		{Name: "produce-headers-gzip", Codec: kgo.GzipCompression(), Topics: map[string]*TopicExpect{
			"payments": {Records: 4, Partitions: []int32{0, 1}, Codec: "gzip", Headers: tenant, TraceParents: traceParents(0, 4)}}},
		{Name: "produce-snappy", Codec: kgo.SnappyCompression(), Topics: map[string]*TopicExpect{
			"events": {Records: 3, Partitions: []int32{0}, Codec: "snappy", Headers: tenant, TraceParents: traceParents(0, 3)}}},
		{Name: "produce-lz4", Codec: kgo.Lz4Compression(), Topics: map[string]*TopicExpect{
			"events": {Records: 3, Partitions: []int32{0}, Codec: "lz4", Headers: tenant, TraceParents: traceParents(0, 3)}}},
		{Name: "produce-zstd", Codec: kgo.ZstdCompression(), Topics: map[string]*TopicExpect{
			"events": {Records: 3, Partitions: []int32{0}, Codec: "zstd", Headers: tenant, TraceParents: traceParents(0, 3)}}},
		{Name: "produce-single-key", Codec: kgo.NoCompression(), Topics: map[string]*TopicExpect{
			"events": {Records: 1, Partitions: []int32{0}, Codec: "none", Key: "order-7", Headers: tenant, TraceParents: traceParents(0, 1)}}},
		{Name: "produce-acks0", Codec: kgo.NoCompression(), NoAck: true, Topics: map[string]*TopicExpect{
			"payments": {Records: 2, Partitions: []int32{0}, Codec: "none", Headers: tenant, TraceParents: traceParents(0, 2)}}},
		{Name: "consume-group", Codec: kgo.GzipCompression(), Topics: map[string]*TopicExpect{
			"orders": {Records: 5, Consumed: 5, Partitions: []int32{0, 1, 2}, Codec: "gzip", Headers: tenant, TraceParents: traceParents(0, 5)}}},
		{Name: "consume-group-v2.8", Versions: kversion.V2_8_0(), Codec: kgo.NoCompression(), Topics: map[string]*TopicExpect{
			"orders": {Records: 4, Consumed: 4, Partitions: []int32{0, 1}, Codec: "none", Headers: tenant, TraceParents: traceParents(0, 4)}}},
		{Name: "consume-group-v2.4", Versions: kversion.V2_4_0(), Codec: kgo.NoCompression(), Topics: map[string]*TopicExpect{
			"payments": {Records: 2, Consumed: 2, Partitions: []int32{1}, Codec: "none", Headers: tenant, TraceParents: traceParents(0, 2)}}},
	}
}

func traceParents(from, n int) []string {
	var out []string
	for i := from; i < from+n; i++ {
		out = append(out, TraceParent(i))
	}
	return out
}

// Record runs the scenario against a fresh in-process broker and returns the traffic of all connections.
func Record(ctx context.Context, sc Scenario) (*Capture, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var seeds []kfake.Opt
	for topic, parts := range Topics {
		seeds = append(seeds, kfake.SeedTopics(parts, topic))
	}
	cluster, err := kfake.NewCluster(append(seeds, kfake.NumBrokers(1))...)
	if err != nil {
		return nil, err
	}
	defer cluster.Close()

	rec := &recorder{}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cluster.ListenAddrs()...),
		kgo.Dialer(rec.dial),
		kgo.ClientID(ClientID),
		kgo.ProducerBatchCompression(sc.Codec),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	}
	if sc.Versions != nil {
		opts = append(opts, kgo.MaxVersions(sc.Versions))
	}
	if sc.NoAck {
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	}
	if err := produce(ctx, sc, opts); err != nil {
		return nil, fmt.Errorf("produce: %w", err)
	}
	if err := consume(ctx, sc, opts); err != nil {
		return nil, fmt.Errorf("consume: %w", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return &Capture{Chunks: rec.chunks}, nil
}

func produce(ctx context.Context, sc Scenario, opts []kgo.Opt) error {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for topic, want := range sc.Topics {
		var recs []*kgo.Record
		for i := 0; i < want.Records; i++ {
			r := &kgo.Record{Topic: topic, Partition: want.Partitions[i%len(want.Partitions)],
				Value: fmt.Appendf(nil, `{"order":%d,"amount":%d}`, i, 100+i)}
			if want.Key != "" {
				r.Key = []byte(want.Key)
			}
			if i < len(want.TraceParents) {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: "traceparent", Value: []byte(want.TraceParents[i])})
			}
			for k, v := range want.Headers {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
			}
			recs = append(recs, r)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return err
		}
	}
	return nil
}

func consume(ctx context.Context, sc Scenario, opts []kgo.Opt) error {
	var topics []string
	want := 0
	for topic, exp := range sc.Topics {
		if exp.Consumed > 0 {
			topics = append(topics, topic)
			want += exp.Consumed
		}
	}
	if want == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(opts, kgo.ConsumerGroup(Group), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	got := 0
	for got < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %d of %d records: %w", got, want, err)
		}
		var errs []error
		fs.EachError(func(t string, p int32, err error) { errs = append(errs, fmt.Errorf("%s[%d]: %w", t, p, err)) })
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		got += fs.NumRecords()
	}
	return cl.CommitUncommittedOffsets(ctx)
}

// recorder is a kgo dialer that records every byte each connection writes and reads.
type recorder struct {
	mu     sync.Mutex
	chunks []Chunk
	conns  int
}

func (r *recorder) dial(ctx context.Context, network, host string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, host)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conns++
	return &recordingConn{Conn: c, id: r.conns - 1, rec: r}, nil
}

func (r *recorder) add(conn int, fromClient bool, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.chunks = append(r.chunks, Chunk{Conn: conn, FromClient: fromClient, Data: append([]byte(nil), b...)})
}

type recordingConn struct {
	net.Conn
	id  int
	rec *recorder
}

// Write records before writing, so that a request is always recorded before the response it causes.
func (c *recordingConn) Write(b []byte) (int, error) {
	c.rec.add(c.id, true, b)
	return c.Conn.Write(b)
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.rec.add(c.id, false, b[:n])
	}
	return n, err
}
