package kafka

// Codec is a record batch compression codec (the low three bits of the batch attributes).
type Codec int8

// Compression codecs, numbered as in the record batch attributes.
const (
	CodecNone   Codec = 0
	CodecGzip   Codec = 1
	CodecSnappy Codec = 2
	CodecLZ4    Codec = 3
	CodecZstd   Codec = 4
)

var codecNames = [...]string{"none", "gzip", "snappy", "lz4", "zstd"}

// String returns the codec's name as Kafka's compression.type spells it.
func (c Codec) String() string {
	if c >= 0 && int(c) < len(codecNames) {
		return codecNames[c]
	}
	return "unknown"
}

// API keys the decoder understands.
const (
	APIProduce  int16 = 0
	APIFetch    int16 = 1
	APIMetadata int16 = 3
)

// Exchange is one Produce request (with its response, if any) or one Fetch response (with its request),
// summarised per topic. It and everything it points to are only valid during the Handler call: copy what
// you keep.
type Exchange struct {
	APIKey        int16
	APIVersion    int16
	CorrelationID int32
	ClientID      string
	// Group is the consumer group of a Fetch exchange's client id, when Config.Groups knows it.
	Group string
	// Acks is the Produce request's acks setting.
	Acks int16
	// StartNanos is when the request was seen, EndNanos when the response was (or when the exchange was given
	// up: acks=0, connection closed).
	StartNanos, EndNanos uint64
	// Answered reports whether a response was seen.
	Answered bool
	// Truncated reports that the frame was larger than the decoder buffers, so only its beginning was read.
	Truncated bool
	// Topics summarises the topics of the exchange (at most 64; more are read but not reported).
	Topics []Topic

	arena    arena
	overflow Topic // scratch for topics beyond maxTopics
}

// Topic summarises the records of one topic in an exchange.
type Topic struct {
	// Name is the topic name; for versions that carry only topic ids it is filled from the Metadata responses
	// seen (see TopicNames) and empty if the id is unknown.
	Name string
	// ID is the topic id (Produce v13+, Fetch v13+), zero otherwise.
	ID [16]byte
	// Partitions lists the partitions that carried records, in order of appearance, without duplicates (at
	// most 64).
	Partitions []int32
	// Records counts records by the headers of the record batches (magic v2, control batches excluded);
	// Batches counts those batches. A legacy message (magic v0/v1) counts as a batch of one undecoded record.
	Records, Batches int
	// Undecoded counts the records among them whose contents could not be read (corrupt or truncated data,
	// decompression limit).
	Undecoded int
	// Compression is the first non-none codec seen, CodecNone if every batch was uncompressed.
	Compression Codec
	// ErrorCode is the first non-zero error code the broker returned for this topic's partitions.
	ErrorCode int16
	// FirstOffset is the lowest record offset seen (Fetch; Produce responses give the base offset).
	FirstOffset int64
	// OldestTimestamp is the lowest first timestamp and NewestTimestamp the highest max timestamp of the
	// batches (Unix milliseconds; with LogAppendTime both are the broker's append time), 0 if no batch carried
	// one. Now less these is how long the records waited in the topic.
	OldestTimestamp, NewestTimestamp int64
	// OldestPartition is the partition whose batch has OldestTimestamp (Fetch; meaningful when that is set):
	// where the records that waited longest were.
	OldestPartition int32
	// Transactional reports that a batch was written by a transactional producer (attribute bit 4).
	Transactional bool
	// Key is the key of the only record when Records == 1 and Config.RecordKey is set.
	Key    []byte
	HasKey bool
	// Headers holds the first value of each record header named in Config.Headers, plus traceparent,
	// tracestate and baggage.
	Headers []Header
	// Contexts lists distinct trace contexts (traceparent with the tracestate of the same record) in order of
	// appearance, at most Config.MaxContexts.
	Contexts []Context

	skip bool // a topic beyond maxTopics: its records are not read
}

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Context is the trace context carried by one record.
type Context struct {
	TraceParent []byte
	TraceState  []byte
	// Timestamp is the earliest timestamp (Unix milliseconds) of the records that carried this context: the
	// producer's create time, or the broker's append time for topics with LogAppendTime; 0 if unknown.
	Timestamp int64
}

// Header returns the value of the named collected header.
func (t *Topic) Header(key string) ([]byte, bool) {
	for i := range t.Headers {
		if t.Headers[i].Key == key {
			return t.Headers[i].Value, true
		}
	}
	return nil, false
}
