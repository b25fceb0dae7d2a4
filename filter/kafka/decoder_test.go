package kafka_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/meshtrace/meshtrace/filter/kafka"
	"github.com/meshtrace/meshtrace/filter/kafka/kafkatest"
)

var update = flag.Bool("update", false, "re-record testdata/captures and the fuzz seed corpus from kgo against kfake")

// summary totals what a replay reported per topic.
type summary struct {
	produced, consumed int
	partitions         []int32
	codec              string
	headers            map[string]string
	traceParents       []string // from Produce
	fetchedParents     []string // from Fetch
	key                string
	clientIDs          map[string]bool
	groups             map[string]bool // of Fetch exchanges
	unanswered         int
	undecoded          int
	transactional      bool
}

// replay feeds a capture into one decoder per connection, sharing topic names, and totals the exchanges.
func replay(t testing.TB, c *kafkatest.Capture, cfg kafka.Config) map[string]*summary {
	t.Helper()
	return replayWith(t, c, cfg, (*kafkatest.Capture).Feed)
}

// replayWith is replay with feed in place of Capture.Feed.
func replayWith(t testing.TB, c *kafkatest.Capture, cfg kafka.Config,
	feed func(*kafkatest.Capture, kafka.Config, kafka.Handler) []*kafka.Decoder) map[string]*summary {
	t.Helper()
	cfg.Topics = kafka.NewTopicNames(64)
	cfg.Groups = kafka.NewGroupNames(16)
	out := map[string]*summary{}
	handle := func(ex *kafka.Exchange) {
		for _, tp := range ex.Topics {
			s := out[tp.Name]
			if s == nil {
				s = &summary{headers: map[string]string{}, clientIDs: map[string]bool{}, groups: map[string]bool{}, codec: "none"}
				out[tp.Name] = s
			}
			s.clientIDs[ex.ClientID] = true
			s.undecoded += tp.Undecoded
			s.transactional = s.transactional || tp.Transactional
			if tp.Compression != kafka.CodecNone {
				s.codec = tp.Compression.String()
			}
			for _, h := range tp.Headers {
				if _, ok := s.headers[h.Key]; !ok {
					s.headers[h.Key] = string(h.Value)
				}
			}
			for _, c := range tp.Contexts {
				if c.Timestamp != 0 && (c.Timestamp < tp.OldestTimestamp || c.Timestamp > tp.NewestTimestamp) {
					t.Errorf("topic %q: context %s at %d, outside its batches' timestamps %d..%d",
						tp.Name, c.TraceParent, c.Timestamp, tp.OldestTimestamp, tp.NewestTimestamp)
				}
				if c.Timestamp == 0 && tp.OldestTimestamp != 0 {
					t.Errorf("topic %q: context %s without a timestamp in timestamped batches", tp.Name, c.TraceParent)
				}
			}
			if ex.APIKey == kafka.APIFetch {
				s.consumed += tp.Records
				s.groups[ex.Group] = true
				s.fetchedParents = addContexts(s.fetchedParents, tp.Contexts)
				continue
			}
			if !ex.Answered {
				s.unanswered++
			}
			s.produced += tp.Records
			for _, p := range tp.Partitions {
				if !slices.Contains(s.partitions, p) {
					s.partitions = append(s.partitions, p)
				}
			}
			s.traceParents = addContexts(s.traceParents, tp.Contexts)
			if tp.HasKey {
				s.key = string(tp.Key)
			}
		}
	}
	for i, d := range feed(c, cfg, handle) {
		if err := d.Err(); err != nil {
			t.Errorf("connection %d: decoder stopped: %v", i, err)
		}
	}
	return out
}

func addContexts(to []string, cs []kafka.Context) []string {
	for _, c := range cs {
		if !slices.Contains(to, string(c.TraceParent)) {
			to = append(to, string(c.TraceParent))
		}
	}
	slices.Sort(to)
	return to
}

func check(t *testing.T, sc kafkatest.Scenario, got map[string]*summary) {
	t.Helper()
	for topic, want := range sc.Topics {
		s := got[topic]
		if s == nil {
			t.Errorf("topic %q: no exchanges reported (got topics %v)", topic, keys(got))
			continue
		}
		sort.Slice(s.partitions, func(i, j int) bool { return s.partitions[i] < s.partitions[j] })
		if s.produced != want.Records || s.consumed != want.Consumed {
			t.Errorf("topic %q: produced %d consumed %d records, want %d and %d", topic, s.produced, s.consumed, want.Records, want.Consumed)
		}
		if !slices.Equal(s.partitions, want.Partitions) {
			t.Errorf("topic %q: partitions %v, want %v", topic, s.partitions, want.Partitions)
		}
		if s.codec != want.Codec {
			t.Errorf("topic %q: codec %s, want %s", topic, s.codec, want.Codec)
		}
		for k, v := range want.Headers {
			if s.headers[k] != v {
				t.Errorf("topic %q: header %q = %q, want %q", topic, k, s.headers[k], v)
			}
		}
		if want.Records > 0 && !slices.Equal(s.traceParents, want.TraceParents) {
			t.Errorf("topic %q: produced trace contexts %q, want %q", topic, s.traceParents, want.TraceParents)
		}
		if want.Consumed > 0 && !slices.Equal(s.fetchedParents, want.TraceParents) {
			t.Errorf("topic %q: fetched trace contexts %q, want %q", topic, s.fetchedParents, want.TraceParents)
		}
		if s.transactional != want.Transactional {
			t.Errorf("topic %q: transactional %v, want %v", topic, s.transactional, want.Transactional)
		}
		if s.key != want.Key {
			t.Errorf("topic %q: key %q, want %q", topic, s.key, want.Key)
		}
		if s.undecoded != 0 || (s.unanswered != 0) != sc.NoAck {
			t.Errorf("topic %q: %d undecoded records, %d unanswered produce requests (acks=0: %v)", topic, s.undecoded, s.unanswered, sc.NoAck)
		}
		if want.Consumed > 0 && (len(s.groups) != 1 || !s.groups[sc.WantGroup()]) {
			t.Errorf("topic %q: fetch groups %v, want only %q", topic, s.groups, sc.WantGroup())
		}
		if ids := keys(s.clientIDs); !slices.Equal(ids, sc.WantClientIDs()) {
			t.Errorf("topic %q: client ids %v, want %v", topic, ids, sc.WantClientIDs())
		}
	}
	for topic := range got {
		if sc.Topics[topic] == nil {
			t.Errorf("unexpected topic %q reported", topic)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var testConfig = kafka.Config{Headers: []string{"x-customer-id"}, RecordKey: true}

// TestLiveTraffic records each scenario with kgo against kfake and checks what the decoder reports, with the
// capture as recorded, cut into tiny pieces, and merged into large ones.
func TestLiveTraffic(t *testing.T) {
	for _, sc := range kafkatest.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			c, err := kafkatest.Record(context.Background(), sc)
			if err != nil {
				t.Fatal(err)
			}
			check(t, sc, replay(t, c, testConfig))
			check(t, sc, replay(t, c.Split(1), testConfig))
			check(t, sc, replay(t, c.Split(7), testConfig))
			check(t, sc, replay(t, c.Merged(), testConfig))
			if *update {
				if err := kafkatest.Save(sc.Name, c, nil); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestRecordedClients replays the committed captures of the Java client and librdkafka against a real broker
// (recorded by testenv/kafka's TestRecordClients) and checks them against what the clients reported, whole
// and cut the ways a proxy may deliver them.
func TestRecordedClients(t *testing.T) {
	scs, err := kafkatest.LoadRecorded()
	if err != nil {
		t.Fatal(err)
	}
	if len(scs) == 0 {
		t.Fatal("no recorded client captures (record with `go test ./testenv/kafka -run TestRecordClients -update`)")
	}
	for _, sc := range scs {
		t.Run(sc.Name, func(t *testing.T) {
			c, err := kafkatest.Load(sc.Name)
			if err != nil {
				t.Fatal(err)
			}
			check(t, sc, replay(t, c, testConfig))
			check(t, sc, replay(t, c.Split(5), testConfig))
			check(t, sc, replay(t, c.Merged(), testConfig))
		})
	}
}

// TestCapturedFixtures replays the committed captures (the inputs of the compiled-filter tests).
func TestCapturedFixtures(t *testing.T) {
	for _, sc := range kafkatest.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			c, err := kafkatest.Load(sc.Name)
			if err != nil {
				t.Fatalf("%v (re-record with `go test ./filter/kafka -run TestLiveTraffic -update`)", err)
			}
			check(t, sc, replay(t, c, testConfig))
		})
	}
}

// FuzzDecoder feeds arbitrary traffic (a kafkatest capture encoding; seeds are real kgo/kfake captures) to
// decoders and checks that they neither crash nor report impossible summaries.
func FuzzDecoder(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var c kafkatest.Capture
		if err := c.UnmarshalBinary(data); err != nil || c.Conns() > 8 {
			c = kafkatest.Capture{Chunks: []kafkatest.Chunk{{FromClient: true, Data: data}, {Data: data}}}
		}
		cfg := kafka.Config{Topics: kafka.NewTopicNames(4), Groups: kafka.NewGroupNames(2), MaxFrameBytes: 4096, MaxDecompressedBytes: 1 << 16,
			MaxInFlight: 4, Headers: []string{"x-customer-id"}, RecordKey: true}
		handle := func(ex *kafka.Exchange) {
			if len(ex.Group) > kafka.MaxGroupIDLen || (ex.Group != "" && ex.APIKey != kafka.APIFetch) {
				t.Fatalf("impossible group %q on api key %d", ex.Group, ex.APIKey)
			}
			for _, tp := range ex.Topics {
				if tp.Records < 0 || tp.Undecoded < 0 || tp.Undecoded > tp.Records || len(tp.Contexts) > kafka.DefaultMaxContexts ||
					(tp.Records == 0 && (tp.OldestTimestamp != 0 || tp.NewestTimestamp != 0)) {
					t.Fatalf("impossible topic summary %+v", tp)
				}
				for _, c := range tp.Contexts {
					if c.Timestamp < 0 {
						t.Fatalf("negative context timestamp %d", c.Timestamp)
					}
				}
			}
		}
		c.Feed(cfg, handle)
		// Again as the filter feeds it, skipping, with frames up to 128 KiB assembled in a pool's buffers.
		pool := kafka.NewFramePool(2)
		cfg.Topics, cfg.Groups, cfg.MaxFrameBytes, cfg.Frames = kafka.NewTopicNames(4), kafka.NewGroupNames(2), 128<<10, pool
		feedSkipping(&c, cfg, handle)
		if pool.Len() > 2 {
			t.Fatalf("frame pool holds %d buffers, capacity 2", pool.Len())
		}
	})
}

func ExampleDecoder() {
	c, err := kafkatest.Load("produce-headers-gzip")
	if err != nil {
		fmt.Println(err)
		return
	}
	names := kafka.NewTopicNames(16)
	decoders := map[int]*kafka.Decoder{}
	for _, ch := range c.Chunks {
		d := decoders[ch.Conn]
		if d == nil {
			d = kafka.NewDecoder(kafka.Config{Topics: names}, func(ex *kafka.Exchange) {
				for _, t := range ex.Topics {
					fmt.Printf("produce %s: %d records, %s, first traceparent %s\n", t.Name, t.Records, t.Compression, t.Contexts[0].TraceParent)
				}
			})
			decoders[ch.Conn] = d
		}
		if ch.FromClient {
			d.Requests(ch.Data, 0)
		} else {
			d.Responses(ch.Data, 0)
		}
	}
	// Output:
	// produce payments: 4 records, gzip, first traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba90001-01
}

// TestNotKafka checks that bytes of other protocols stop the decoder with ErrNotKafka and that it then
// ignores input.
func TestNotKafka(t *testing.T) {
	cases := map[string][]byte{
		"tls client hello": {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03},
		"http request":     []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"negative size":    {0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0},
		"bad api key":      {0, 0, 0, 10, 0x7f, 0x00, 0, 1, 0, 0, 0, 1, 0, 0},
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			d := kafka.NewDecoder(kafka.Config{}, func(*kafka.Exchange) { t.Error("exchange reported") })
			d.Requests(data, 1)
			if !errors.Is(d.Err(), kafka.ErrNotKafka) {
				t.Fatalf("Err() = %v, want ErrNotKafka", d.Err())
			}
			d.Requests(data, 2)
			d.Responses(data, 3)
		})
	}
}

// TestTruncatedFrames replays real traffic with a frame buffer smaller than most frames: the decoder must read
// what fits, flag those exchanges, skip the rest of each frame and keep going.
func TestTruncatedFrames(t *testing.T) {
	c, err := kafkatest.Load("consume-group")
	if err != nil {
		t.Fatal(err)
	}
	names := kafka.NewTopicNames(16)
	truncated, exchanges := 0, 0
	decoders := make([]*kafka.Decoder, c.Conns())
	for i := range decoders {
		decoders[i] = kafka.NewDecoder(kafka.Config{MaxFrameBytes: 200, Topics: names}, func(ex *kafka.Exchange) {
			exchanges++
			if ex.Truncated {
				truncated++
			}
		})
	}
	for _, ch := range c.Chunks {
		if ch.FromClient {
			decoders[ch.Conn].Requests(ch.Data, 1)
		} else {
			decoders[ch.Conn].Responses(ch.Data, 2)
		}
	}
	for i, d := range decoders {
		if d.Err() != nil {
			t.Errorf("connection %d stopped: %v", i, d.Err())
		}
	}
	if truncated == 0 || exchanges == 0 {
		t.Errorf("%d exchanges, %d truncated; want some of each", exchanges, truncated)
	}
}

// TestCloseReportsPending checks that Produce requests still waiting for a response when the connection
// closes are reported as unanswered, ending at the close.
func TestCloseReportsPending(t *testing.T) {
	reqs, _ := kafkatest.ProduceTraffic(3, 5, 10)
	var got []*kafka.Exchange
	d := kafka.NewDecoder(kafka.Config{}, func(ex *kafka.Exchange) {
		got = append(got, &kafka.Exchange{CorrelationID: ex.CorrelationID, Answered: ex.Answered, EndNanos: ex.EndNanos})
	})
	d.Requests(reqs, 10)
	if len(got) != 0 {
		t.Fatalf("%d exchanges reported before any response or close", len(got))
	}
	d.Close(20)
	if len(got) != 3 {
		t.Fatalf("%d exchanges reported at close, want 3", len(got))
	}
	for i, ex := range got {
		if ex.CorrelationID != int32(i) || ex.Answered || ex.EndNanos != 20 {
			t.Errorf("exchange %d: %+v, want correlation %d, unanswered, ended at 20", i, ex, i)
		}
	}
}

// TestManyTopicsAndPartitions checks the bounds on what one exchange lists: a Produce request to 100 topics,
// the first with 200 partitions, reports 64 topics and 64 partitions but counts every record of those topics.
func TestManyTopicsAndPartitions(t *testing.T) {
	batch := kafkatest.RecordBatch(2, 10, false)
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks = 9, 0
	for i := 0; i < 100; i++ {
		topic := kmsg.NewProduceRequestTopic()
		topic.Topic = fmt.Sprintf("t%03d", i)
		parts := 1
		if i == 0 {
			parts = 200
		}
		for p := 0; p < parts; p++ {
			part := kmsg.NewProduceRequestTopicPartition()
			part.Partition, part.Records = int32(p), batch
			topic.Partitions = append(topic.Partitions, part)
		}
		req.Topics = append(req.Topics, topic)
	}
	frame := kmsg.NewRequestFormatter().AppendRequest(nil, req, 1)
	var topics, firstParts, firstRecords int
	d := kafka.NewDecoder(kafka.Config{MaxFrameBytes: len(frame)}, func(ex *kafka.Exchange) {
		topics = len(ex.Topics)
		firstParts, firstRecords = len(ex.Topics[0].Partitions), ex.Topics[0].Records
	})
	d.Requests(frame, 1)
	if d.Err() != nil || topics != 64 || firstParts != 64 || firstRecords != 400 {
		t.Fatalf("got %d topics, %d partitions and %d records in the first, error %v; want 64, 64, 400",
			topics, firstParts, firstRecords, d.Err())
	}
}

// TestInflateBudget sends one Produce request of 20 small gzip batches that each inflate to 1 MiB: the decoder
// inflates four of them and counts the records of the rest from their headers, unread.
func TestInflateBudget(t *testing.T) {
	batch := kafkatest.RecordBatch(1, 1<<20-200, true)
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks = 9, 0
	topic := kmsg.NewProduceRequestTopic()
	topic.Topic = "bombs"
	for p := 0; p < 20; p++ {
		part := kmsg.NewProduceRequestTopicPartition()
		part.Partition, part.Records = int32(p), batch
		topic.Partitions = append(topic.Partitions, part)
	}
	req.Topics = append(req.Topics, topic)
	frame := kmsg.NewRequestFormatter().AppendRequest(nil, req, 1)
	var got kafka.Topic
	d := kafka.NewDecoder(kafka.Config{MaxContexts: 100}, func(ex *kafka.Exchange) { got = ex.Topics[0] })
	d.Requests(frame, 1)
	if got.Records != 20 || got.Undecoded != 16 || len(got.Contexts) != 1 || got.Compression != kafka.CodecGzip {
		t.Fatalf("got %d records, %d undecoded, %d contexts, %s; want 20, 16, 1, gzip (frame %d bytes)",
			got.Records, got.Undecoded, len(got.Contexts), got.Compression, len(frame))
	}
}

// TestFramePoolDecoding feeds large Produce requests (about 230 KB each) in 16 KiB pieces: the results are
// the same with and without a pool, one pooled buffer serves every frame, and once it exists, decoding
// allocates almost nothing per frame.
func TestFramePoolDecoding(t *testing.T) {
	reqs, _ := kafkatest.ProduceTraffic(4, 1000, 200)
	run := func(pool *kafka.FramePool) (records int) {
		d := kafka.NewDecoder(kafka.Config{Frames: pool}, func(ex *kafka.Exchange) {
			for _, tp := range ex.Topics {
				records += tp.Records
			}
		})
		for i := 0; i < len(reqs); i += 16 << 10 {
			d.Requests(reqs[i:min(i+16<<10, len(reqs))], 1)
		}
		d.Close(2) // the requests are never answered: Close reports them
		return records
	}
	pool := kafka.NewFramePool(4)
	if without, with := run(nil), run(pool); without != 4000 || with != 4000 {
		t.Fatalf("records: %d without a pool, %d with, want 4000", without, with)
	}
	if pool.Len() != 1 {
		t.Errorf("pool holds %d buffers after sequential frames, want 1", pool.Len())
	}
	// With the pooled buffer warm, a frame allocates its exchange's bookkeeping, not a buffer of its size.
	allocated := func(pool *kafka.FramePool) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		run(pool)
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	if with, without := allocated(pool), allocated(nil); with > 200<<10 || without < 4*200<<10 {
		t.Errorf("decoding 4 frames of 230 KB allocated %d bytes with a warm pool (want < 200 KiB), %d without (want > 800 KiB)", with, without)
	}
}

// TestSkip replays the real clients' captures with frames cut at 200 bytes, once fed whole and once as the
// filter feeds them, leaving out what Skippable says the decoder discards: the decoders report the same, and
// nearly half the bytes are left out (the rest are frames under 200 bytes).
func TestSkip(t *testing.T) {
	scs, err := kafkatest.LoadRecorded()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig
	cfg.MaxFrameBytes = 200
	var skipped, fed int
	skipping := func(c *kafkatest.Capture, cfg kafka.Config, h kafka.Handler) []*kafka.Decoder {
		decoders, sk, fd := feedSkipping(c, cfg, h)
		skipped, fed = skipped+sk, fed+fd
		return decoders
	}
	for _, sc := range scs {
		c, err := kafkatest.Load(sc.Name)
		if err != nil {
			t.Fatal(err)
		}
		if whole, skip := replay(t, c, cfg), replayWith(t, c, cfg, skipping); !reflect.DeepEqual(whole, skip) {
			t.Errorf("%s: fed whole %v, skipping %v", sc.Name, describeSummaries(whole), describeSummaries(skip))
		}
	}
	if skipped*2 < fed {
		t.Errorf("%d bytes skipped, %d fed: frames cut at 200 bytes should leave out nearly half", skipped, fed)
	}
	t.Logf("%d bytes skipped, %d fed", skipped, fed)

	// A stopped decoder skips everything.
	d := kafka.NewDecoder(kafka.Config{}, func(*kafka.Exchange) {})
	d.Requests([]byte("\x16\x03\x01\x02\x00"), 1) // a TLS ClientHello's record header
	if d.Err() == nil || d.Skippable(true) != math.MaxInt || d.Skippable(false) != math.MaxInt {
		t.Errorf("after %v: Skippable %d and %d, want everything", d.Err(), d.Skippable(true), d.Skippable(false))
	}
}

// feedSkipping feeds a capture as the filter does: what Skippable says the decoder discards is passed to Skip
// uncopied, the rest fed in pieces of 7 bytes (so that frame ends fall inside pieces). It returns the
// decoders, closed, and the bytes skipped and fed.
func feedSkipping(c *kafkatest.Capture, cfg kafka.Config, h kafka.Handler) (decoders []*kafka.Decoder, skipped, fed int) {
	decoders = make([]*kafka.Decoder, c.Conns())
	for i := range decoders {
		decoders[i] = kafka.NewDecoder(cfg, h)
	}
	for i, ch := range c.Chunks {
		d, data := decoders[ch.Conn], ch.Data
		for len(data) > 0 {
			if n := min(d.Skippable(ch.FromClient), len(data)); n > 0 {
				d.Skip(ch.FromClient, n)
				skipped, data = skipped+n, data[n:]
				continue
			}
			n := min(len(data), 7)
			if ch.FromClient {
				d.Requests(data[:n], uint64(i))
			} else {
				d.Responses(data[:n], uint64(i))
			}
			fed, data = fed+n, data[n:]
		}
	}
	for _, d := range decoders {
		d.Close(uint64(len(c.Chunks)))
	}
	return decoders, skipped, fed
}

func describeSummaries(m map[string]*summary) string {
	var b []string
	for _, k := range keys(m) {
		b = append(b, fmt.Sprintf("%s: %+v", k, *m[k]))
	}
	return fmt.Sprint(b)
}
