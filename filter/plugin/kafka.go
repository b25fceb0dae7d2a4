package plugin

import (
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/meshtrace/meshtrace/filter/kafka"
	"github.com/meshtrace/meshtrace/filter/policy"
	"github.com/meshtrace/meshtrace/filter/span"
	tc "github.com/meshtrace/meshtrace/filter/tracecontext"
)

// MetricKafkaStopped counts Kafka connections whose bytes the decoder could not parse; their spans stop but
// the connections carry on untouched.
const MetricKafkaStopped = "meshtrace_kafka_parse_stopped_total"

// Attributes of Kafka spans that OpenTelemetry does not name.
const (
	attrKafkaCompression = "messaging.kafka.compression"
	attrKafkaUndecoded   = "meshtrace.kafka.undecoded_records"
	attrKafkaTopicID     = "meshtrace.kafka.topic_id"
	attrKafkaTruncated   = "meshtrace.kafka.truncated"
	attrKafkaParseError  = "meshtrace.kafka.parse_error"
	// attrKafkaTimeInTopic is how long the oldest record of a receive span waited in the topic (the exchange's
	// end less the oldest batch timestamp, in ms), attrKafkaTimeInTopicMin how long the newest did.
	attrKafkaTimeInTopic    = "meshtrace.kafka.time_in_topic_ms"
	attrKafkaTimeInTopicMin = "meshtrace.kafka.time_in_topic_min_ms"
	// attrKafkaTimeInTopicPartition is the partition whose records waited attrKafkaTimeInTopic: on a receive
	// span over several partitions, the one that lags.
	attrKafkaTimeInTopicPartition = "meshtrace.kafka.time_in_topic_partition"
	attrKafkaTransactional        = "messaging.kafka.transactional"
)

// topicNames is shared by the connections of this VM: clients learn topic ids from Metadata, often on another
// connection than the one that produces or fetches.
var topicNames = kafka.NewTopicNames(4096)

// groupNames is shared by the connections of this VM: a consumer names its group on the coordinator's
// connection and fetches on the partition leaders' ones, with the same client id on all of them.
var groupNames = kafka.NewGroupNames(1024)

// framePool is shared by the connections of this VM: the buffers of large frames (a producer's request of a
// few hundred KB, a fetch response up to MaxFrameBytes) are reused across frames and connections instead of
// being made per frame, at most 4 of them (4 MiB at the default MaxFrameBytes).
var framePool = kafka.NewFramePool(4)

// kafkaStopped is the metric behind MetricKafkaStopped, defined on first use.
var kafkaStopped *proxywasm.MetricCounter

// kafkaConn decodes one connection as Kafka and turns each topic of each Produce request and Fetch response
// into a span.
type kafkaConn struct {
	conn    *tcpContext
	dec     *kafka.Decoder
	stopped bool
	span    span.Span // reused for every span of the connection (the exporter encodes on submit)
}

func newKafkaConn(c *tcpContext) *kafkaConn {
	p := c.root.policy
	k := &kafkaConn{conn: c}
	k.dec = kafka.NewDecoder(kafka.Config{
		Headers:   recordHeaderNames(p.Tags),
		RecordKey: p.Network.Kafka.RecordKey,
		Topics:    topicNames,
		Groups:    groupNames,
		Frames:    framePool,
	}, k.exchange)
	return k
}

// recordHeaderNames lists the record headers the tag rules read (header and record_header sources).
func recordHeaderNames(tags []policy.Tag) []string {
	var names []string
	for i := range tags {
		for _, src := range tags[i].From {
			if src.Kind == policy.SourceHeader || src.Kind == policy.SourceRecordHeader {
				names = append(names, src.Name)
			}
		}
	}
	return names
}

// in feeds the size bytes of a data callback (requests: the client's) to the decoder. The bytes it would
// discard unread (the rest of a frame beyond its limit, everything once it stopped) are not copied in; the
// others are copied by get (the host's copy of the connection's data) in pieces of at most maxLent, each into
// the lent buffer: the decoder keeps no slice of its input. Envoy hands a network filter up to its connection
// buffer limit (1 MiB by default) at once, so no piece needs a buffer of its own. A piece the host refuses
// ends the callback's copy.
func (k *kafkaConn) in(requests bool, size int, get func(start, size int) ([]byte, error)) {
	for start := 0; start < size; {
		if skip := k.dec.Skippable(requests); skip > 0 {
			n := min(skip, size-start)
			k.dec.Skip(requests, n)
			start += n
			continue
		}
		n := min(size-start, maxLent)
		lendNext(n)
		data, err := get(start, n)
		lendDone()
		if err != nil {
			break
		}
		if requests {
			k.dec.Requests(data, hostNow())
		} else {
			k.dec.Responses(data, hostNow())
		}
		start += n
	}
	k.checkStopped()
}

func (k *kafkaConn) close(now uint64) { k.dec.Close(now) }

func (k *kafkaConn) checkStopped() {
	if k.stopped || k.dec.Err() == nil {
		return
	}
	k.stopped = true
	if kafkaStopped == nil {
		m := proxywasm.DefineCounterMetric(MetricKafkaStopped)
		kafkaStopped = &m
	}
	kafkaStopped.Increment(1)
	proxywasm.LogDebugf("meshtrace: stopped decoding Kafka: %v", k.dec.Err())
}

// connectionAttrs adds the Kafka facts of the connection to its TCP span.
func (k *kafkaConn) connectionAttrs(attrs []span.Attr) []span.Attr {
	attrs = append(attrs, span.String("messaging.system", "kafka"))
	if err := k.dec.Err(); err != nil {
		attrs = append(attrs, span.String(attrKafkaParseError, clip(err.Error())))
	}
	return attrs
}

// exchange makes one span per topic of a Produce request or Fetch response.
func (k *kafkaConn) exchange(ex *kafka.Exchange) {
	for i := range ex.Topics {
		k.topicSpan(ex, &ex.Topics[i])
	}
}

func (k *kafkaConn) topicSpan(ex *kafka.Exchange, t *kafka.Topic) {
	r := k.conn.root
	s := &k.span
	*s = span.Span{Attrs: s.Attrs[:0], Links: s.Links[:0]}
	op, opName := "send", "produce"
	s.Kind = span.KindProducer
	if ex.APIKey == kafka.APIFetch {
		op, opName = "receive", "fetch"
		s.Kind = span.KindClient // OTel messaging: receive spans are CLIENT, process spans CONSUMER
	}
	dest := t.Name
	if dest == "" {
		dest = tc.HexTraceID(t.ID) // topic id of a client that never asked this VM for metadata
	}
	s.Name = op + " " + dest
	s.StartUnixNano, s.EndUnixNano = ex.StartNanos, ex.EndNanos
	s.SpanID = spanID(r.ids.next())
	k.placeInTrace(s, t, ex.APIKey == kafka.APIFetch, ex.EndNanos)

	s.Attrs = append(s.Attrs,
		span.String("messaging.system", "kafka"),
		span.String("messaging.operation.type", op),
		span.String("messaging.operation.name", opName),
		span.String("messaging.destination.name", dest),
		span.Int("messaging.batch.message_count", int64(t.Records)),
	)
	if t.Name == "" {
		s.Attrs = append(s.Attrs, span.String(attrKafkaTopicID, dest))
	}
	if len(t.Partitions) == 1 {
		s.Attrs = append(s.Attrs, span.String("messaging.destination.partition.id", strconv.Itoa(int(t.Partitions[0]))))
	}
	if ex.ClientID != "" {
		s.Attrs = append(s.Attrs, span.String("messaging.client.id", clip(ex.ClientID)))
	}
	if ex.APIKey == kafka.APIFetch {
		if ex.Group != "" {
			s.Attrs = append(s.Attrs, span.String("messaging.consumer.group.name", ex.Group))
		}
		if t.OldestTimestamp > 0 {
			s.Attrs = append(s.Attrs, span.Int(attrKafkaTimeInTopic, ageMillis(ex.EndNanos, t.OldestTimestamp)),
				span.String(attrKafkaTimeInTopicPartition, strconv.Itoa(int(t.OldestPartition))))
		}
		if t.NewestTimestamp > 0 {
			s.Attrs = append(s.Attrs, span.Int(attrKafkaTimeInTopicMin, ageMillis(ex.EndNanos, t.NewestTimestamp)))
		}
	} else if t.Transactional {
		s.Attrs = append(s.Attrs, span.Bool(attrKafkaTransactional, true))
	}
	if t.Records == 1 && (ex.APIKey == kafka.APIFetch || ex.Answered) {
		s.Attrs = append(s.Attrs, span.Int("messaging.kafka.offset", t.FirstOffset))
	}
	if t.HasKey {
		s.Attrs = append(s.Attrs, span.String("messaging.kafka.message.key", clip(string(t.Key))))
	}
	if t.Compression != kafka.CodecNone {
		s.Attrs = append(s.Attrs, span.String(attrKafkaCompression, t.Compression.String()))
	}
	if t.Undecoded > 0 {
		s.Attrs = append(s.Attrs, span.Int(attrKafkaUndecoded, int64(t.Undecoded)))
	}
	if ex.Truncated {
		s.Attrs = append(s.Attrs, span.Bool(attrKafkaTruncated, true))
	}
	s.Attrs = k.conn.resolve().append(s.Attrs)
	if svc := k.conn.peerService(k.conn.resolve()); svc != "" {
		s.Attrs = append(s.Attrs, span.String("peer.service", svc))
	}
	k.applyTags(s, t)
	switch {
	case t.ErrorCode != 0:
		s.Status = span.StatusError
		s.Attrs = append(s.Attrs, span.String("error.type", strconv.Itoa(int(t.ErrorCode))))
	case ex.APIKey == kafka.APIProduce && ex.Acks != 0 && !ex.Answered:
		s.Status, s.StatusMessage = span.StatusError, "no response"
	}
	r.submit(s)
}

// ageMillis returns the milliseconds from a record timestamp (Unix ms) to now (Unix ns), 0 if the timestamp
// is later (clock skew between the producer or broker and this host).
func ageMillis(nowNanos uint64, timestampMillis int64) int64 {
	now := int64(nowNanos / 1e6)
	if now <= timestampMillis {
		return 0
	}
	return now - timestampMillis
}

// placeInTrace makes the first record's trace context the span's parent (a new trace without one). Fetch
// spans link to every producer context, each link with how long that context's first record waited in the
// topic (attrKafkaTimeInTopic, from the record's timestamp to end); Produce spans link to the contexts after
// the first.
func (k *kafkaConn) placeInTrace(s *span.Span, t *kafka.Topic, fetch bool, end uint64) {
	r := k.conn.root
	joined := false
	for i := range t.Contexts {
		c, ok := tc.ParseTraceparent(string(t.Contexts[i].TraceParent))
		if !ok {
			continue
		}
		c.TraceState = tc.SanitizeTracestate(string(t.Contexts[i].TraceState))
		if !joined {
			joined = true
			s.TraceID, s.ParentSpanID, s.TraceState, s.Flags = c.TraceID, c.SpanID, c.TraceState, uint32(c.Flags)
			if !fetch {
				continue
			}
		}
		if len(s.Links) < cap(s.Links) {
			s.Links = s.Links[:len(s.Links)+1] // the span's links are reused: keep this link's attribute slice
		} else {
			s.Links = append(s.Links, span.Link{})
		}
		l := &s.Links[len(s.Links)-1]
		*l = span.Link{TraceID: c.TraceID, SpanID: c.SpanID, TraceState: c.TraceState, Attrs: l.Attrs[:0]}
		if ts := t.Contexts[i].Timestamp; fetch && ts > 0 {
			l.Attrs = append(l.Attrs, span.Int(attrKafkaTimeInTopic, ageMillis(end, ts)))
		}
	}
	if !joined {
		s.TraceID = traceID(r.ids.next(), r.ids.next())
		s.Flags = uint32(tc.FlagSampled)
	}
}

// applyTags evaluates the policy's tag rules against the record headers of the topic.
func (k *kafkaConn) applyTags(s *span.Span, t *kafka.Topic) {
	tags := k.conn.root.policy.Tags
	if len(tags) == 0 {
		return
	}
	src := recordValues{topic: t}
	if v, ok := t.Header(kafka.HeaderBaggage); ok {
		src.baggage = tc.ParseBaggage(string(v))
	}
	for i := range tags {
		if v, ok := tagValue(&tags[i], &src); ok {
			s.Attrs = append(s.Attrs, span.String(tags[i].Attribute, v))
		}
	}
}

// recordValues implements valueSource over Kafka record headers: header and record_header sources read a
// record header, baggage sources the record's baggage header.
type recordValues struct {
	topic   *kafka.Topic
	baggage tc.Baggage
}

func (v *recordValues) value(src policy.Source) (string, bool) {
	switch src.Kind {
	case policy.SourceHeader, policy.SourceRecordHeader:
		b, ok := v.topic.Header(src.Name)
		return string(b), ok
	case policy.SourceBaggage:
		return v.baggage.Get(src.Name)
	}
	return "", false
}
