// Package kafka decodes the Kafka wire protocol of one TCP connection as a byte stream, for observation only.
//
// A Decoder is fed the client's bytes (requests) and the broker's bytes (responses) in whatever pieces the
// proxy delivers them: frames split across calls and several frames in one call are both fine. It matches
// responses to requests by correlation id and reports Produce requests and Fetch responses, summarised per
// topic, to a Handler. It reads record batches (magic v2) including record headers, and decompresses gzip,
// snappy, lz4 and zstd batches up to a size limit. Legacy message sets (magic v0/v1, which Kafka 4 removed)
// are counted as undecoded records. The group ids of consumer group requests name the Fetch exchanges of the
// same client id (Config.Groups). Requests the decoder does not read (ApiVersions, SaslHandshake,
// SaslAuthenticate, ...) are skipped frame by frame, so decoding carries on after SASL PLAIN or SCRAM; TLS
// bytes are not Kafka and stop it.
//
// The decoder never modifies, holds back or requires bytes: it only reads copies. Memory per connection is
// bounded by Config (frames larger than MaxFrameBytes are read up to that size and the rest is skipped). Bytes
// that are not Kafka stop the decoder for the rest of the connection (see Err); it then ignores all input.
//
// It uses no goroutines and no reflection, so it builds with TinyGo for proxy-wasm.
package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxFrameBytes        = 1 << 20
	DefaultMaxDecompressedBytes = 1 << 20
	DefaultMaxInFlight          = 64
	DefaultMaxContexts          = 8
	DefaultMaxRecordsRead       = 16

	// maxRequestSize and maxResponseSize are the largest frames accepted as Kafka; anything longer means the
	// bytes are not Kafka (a TLS record header, for one, reads as a request of over 300 MiB). Brokers refuse
	// requests above socket.request.max.bytes, 100 MiB by default.
	maxRequestSize  = 100 << 20
	maxResponseSize = 1 << 30
	inflatePerFrame = 4
	// keptBuffer is the size of the buffer a stream keeps for frames that arrive in pieces: larger frames
	// are buffered in one of their own size, released after the frame.
	keptBuffer = 64 << 10
	maxAPIKey  = 1000
	maxVersion = 100
)

// Config bounds what a Decoder keeps and says which record data it collects.
type Config struct {
	// MaxFrameBytes is the most of one frame the decoder buffers; the rest of a longer frame is skipped and the
	// exchange is marked Truncated.
	MaxFrameBytes int
	// MaxDecompressedBytes caps the output of decompressing one record batch; one frame decompresses at
	// most four times this in all, so that small batches that inflate hugely cannot stall the proxy.
	MaxDecompressedBytes int
	// MaxInFlight caps requests awaiting a response; the oldest is given up beyond it.
	MaxInFlight int
	// MaxContexts caps the distinct trace contexts kept per topic.
	MaxContexts int
	// MaxRecordsRead caps the records read (headers, key) per record batch; the others are only counted,
	// from the batch header. It bounds the work per batch; negative means no limit.
	MaxRecordsRead int
	// Headers names record headers whose first value per topic is collected, in addition to traceparent,
	// tracestate and baggage. Names match case-insensitively.
	Headers []string
	// RecordKey keeps the record key when an exchange carries a single record for a topic.
	RecordKey bool
	// Topics resolves topic ids to names; share one between the decoders of a process so that ids learnt
	// from Metadata on one connection name the topics of Produce and Fetch on another. Optional.
	Topics *TopicNames
	// Groups maps client ids to consumer groups; share one between the decoders of a process so that the group
	// a client names to its coordinator on one connection names its Fetch exchanges on another (see
	// Exchange.Group). Optional.
	Groups *GroupNames
	// Frames lends the buffers of frames larger than 64 KiB that arrive in pieces; share one between the
	// decoders of a process. Optional: without it each such frame gets a buffer of its own.
	Frames *FramePool
}

// Handler receives each completed exchange. The Exchange is only valid during the call.
type Handler func(*Exchange)

// ErrNotKafka is wrapped by Err when the connection's bytes are not the Kafka protocol.
var ErrNotKafka = errors.New("kafka: not the Kafka protocol")

// Decoder decodes one connection. It is not safe for concurrent use.
type Decoder struct {
	cfg     Config
	wanted  []string
	handle  Handler
	req     stream
	resp    stream
	pending []pending
	free    []*Exchange
	fetch   Exchange
	scratch []byte
	keep    *arena // the arena of the exchange being read
	// inflateBudget is what the current frame may still decompress.
	inflateBudget int
	codecs        codecState
	err           error
}

type pending struct {
	correlation int32
	apiKey      int16
	version     int16
	clientID    string
	start       uint64
	produce     *Exchange // Produce request awaiting its response
}

// stream reassembles the frames of one direction.
type stream struct {
	size    [4]byte
	sizeLen int    // bytes of the size prefix read so far
	body    int    // length of the current frame body, valid when sizeLen == 4
	keep    int    // bytes of the body to buffer (min(body, MaxFrameBytes))
	buf     []byte // buffered part of the current body when it arrived in pieces
	skip    int    // bytes of the current body still to discard after keep
}

// NewDecoder returns a decoder that reports exchanges to h.
func NewDecoder(cfg Config, h Handler) *Decoder {
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if cfg.MaxDecompressedBytes <= 0 {
		cfg.MaxDecompressedBytes = DefaultMaxDecompressedBytes
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxContexts <= 0 {
		cfg.MaxContexts = DefaultMaxContexts
	}
	if cfg.MaxRecordsRead == 0 {
		cfg.MaxRecordsRead = DefaultMaxRecordsRead
	}
	wanted := []string{HeaderTraceParent, HeaderTraceState, HeaderBaggage}
	for _, h := range cfg.Headers {
		dup := false
		for _, w := range wanted {
			dup = dup || equalFold(w, []byte(h))
		}
		if !dup && h != "" {
			wanted = append(wanted, h)
		}
	}
	return &Decoder{cfg: cfg, wanted: wanted, handle: h}
}

// Err returns why the decoder stopped, or nil while it is decoding.
func (d *Decoder) Err() error { return d.err }

// Requests feeds bytes sent by the client; now is the current time in Unix nanoseconds.
func (d *Decoder) Requests(data []byte, now uint64) {
	d.feed(&d.req, data, maxRequestSize, func(body []byte, truncated bool) { d.request(body, truncated, now) })
}

// Responses feeds bytes sent by the broker; now is the current time in Unix nanoseconds.
func (d *Decoder) Responses(data []byte, now uint64) {
	d.feed(&d.resp, data, maxResponseSize, func(body []byte, truncated bool) { d.response(body, truncated, now) })
}

// Skippable returns how many of the next bytes of the client's stream (requests true) or the broker's the
// decoder will discard unread: the rest of a frame beyond MaxFrameBytes, or every byte once it has stopped. A
// caller that copies the bytes from elsewhere can pass their count to Skip instead of copying them.
func (d *Decoder) Skippable(requests bool) int {
	if d.err != nil {
		return math.MaxInt
	}
	return d.stream(requests).skip
}

// Skip consumes n bytes of a stream unread, as Requests or Responses would have discarded them; n is at most
// Skippable (more is taken as Skippable).
func (d *Decoder) Skip(requests bool, n int) {
	if d.err != nil {
		return
	}
	s := d.stream(requests)
	s.skip -= min(max(n, 0), s.skip)
}

func (d *Decoder) stream(requests bool) *stream {
	if requests {
		return &d.req
	}
	return &d.resp
}

// Close reports the Produce requests still awaiting a response as unanswered and releases buffers.
func (d *Decoder) Close(now uint64) {
	for len(d.pending) > 0 {
		d.giveUp(now)
	}
	d.dropStreams()
	d.scratch, d.free = nil, nil
}

func (d *Decoder) stop(err error) {
	if d.err == nil {
		d.err = err
	}
	d.dropStreams()
	d.pending, d.scratch, d.free = nil, nil, nil
}

// dropStreams forgets both directions' frame state; a large frame buffer goes back to the pool.
func (d *Decoder) dropStreams() {
	for _, s := range [2]*stream{&d.req, &d.resp} {
		if cap(s.buf) > keptBuffer && d.cfg.Frames != nil {
			d.cfg.Frames.put(s.buf)
		}
		*s = stream{}
	}
}

// feed splits data into frames, calling frame with each body (or its first MaxFrameBytes).
func (d *Decoder) feed(s *stream, data []byte, maxSize int32, frame func(body []byte, truncated bool)) {
	for len(data) > 0 && d.err == nil {
		switch {
		case s.skip > 0:
			n := min(s.skip, len(data))
			s.skip -= n
			data = data[n:]
		case s.sizeLen < 4:
			if s.sizeLen == 0 && len(data) >= 4 {
				copy(s.size[:], data)
				s.sizeLen, data = 4, data[4:]
			} else {
				n := copy(s.size[s.sizeLen:], data)
				s.sizeLen, data = s.sizeLen+n, data[n:]
			}
			if s.sizeLen == 4 {
				size := int32(binary.BigEndian.Uint32(s.size[:]))
				if size < 4 || size > maxSize {
					d.stop(fmt.Errorf("%w: frame size %d", ErrNotKafka, size))
					return
				}
				s.body = int(size)
				s.keep = min(s.body, d.cfg.MaxFrameBytes)
			}
		case len(s.buf) == 0 && len(data) >= s.keep:
			body := data[:s.keep]
			data = data[s.keep:]
			s.endFrame()
			frame(body, s.skip > 0)
		default:
			if cap(s.buf) < s.keep {
				// One buffer for the frame: growing it by append would copy and allocate a large frame about
				// twice over. Frames up to keptBuffer share one buffer of that size, kept across frames; a
				// larger one is assembled in a buffer of the frame pool's, or of its own.
				if s.keep > keptBuffer && d.cfg.Frames != nil {
					s.buf = d.cfg.Frames.get(s.keep)
				} else {
					s.buf = make([]byte, 0, max(s.keep, keptBuffer))
				}
			}
			n := min(s.keep-len(s.buf), len(data))
			s.buf = append(s.buf, data[:n]...)
			data = data[n:]
			if len(s.buf) == s.keep {
				body := s.buf
				s.endFrame()
				frame(body, s.skip > 0)
				s.buf = body[:0]
				if cap(s.buf) > keptBuffer {
					// An idle connection holds no large buffer: it goes back to the pool.
					if d.cfg.Frames != nil {
						d.cfg.Frames.put(s.buf)
					}
					s.buf = nil
				}
			}
		}
	}
}

func (s *stream) endFrame() {
	s.skip = s.body - s.keep
	s.sizeLen = 0
}

func (d *Decoder) request(body []byte, truncated bool, now uint64) {
	if d.err != nil {
		return
	}
	d.inflateBudget = inflatePerFrame * d.cfg.MaxDecompressedBytes
	r := reader{b: body}
	key, version, corr := r.int16(), r.int16(), r.int32()
	clientID := r.str(false)
	if r.err != nil || key < 0 || key > maxAPIKey || version < 0 || version > maxVersion {
		d.stop(fmt.Errorf("%w: request header (api key %d, version %d)", ErrNotKafka, key, version))
		return
	}
	if key != APIProduce && key != APIFetch && key != APIMetadata {
		if d.cfg.Groups != nil && clientID != nil {
			if group := readGroupID(&r, key, version); group != nil {
				d.cfg.Groups.Put(clientID, group)
			}
		}
		return // other requests (ApiVersions, SASL, group membership, ...) are skipped whole
	}
	p := pending{correlation: corr, apiKey: key, version: version, start: now}
	if key != APIMetadata {
		p.clientID = string(clientID)
	}
	if key == APIProduce {
		if version < minProduce || version > maxProduce {
			return
		}
		ex := d.newExchange()
		ex.APIKey, ex.APIVersion, ex.CorrelationID, ex.ClientID = key, version, corr, p.clientID
		ex.StartNanos, ex.Truncated = now, truncated
		r.tags(version >= flexibleProduce)
		d.keep = &ex.arena
		d.readProduceRequest(&r, ex)
		if r.err != nil && !truncated {
			d.release(ex)
			d.stop(fmt.Errorf("%w: produce request v%d: %v", ErrNotKafka, version, r.err))
			return
		}
		if ex.Acks == 0 {
			ex.EndNanos = now
			d.emit(ex)
			return
		}
		p.produce = ex
	}
	if len(d.pending) >= d.cfg.MaxInFlight {
		d.giveUp(now)
	}
	d.pending = append(d.pending, p)
}

func (d *Decoder) response(body []byte, truncated bool, now uint64) {
	if d.err != nil {
		return
	}
	d.inflateBudget = inflatePerFrame * d.cfg.MaxDecompressedBytes
	r := reader{b: body}
	corr := r.int32()
	i := 0
	for i < len(d.pending) && d.pending[i].correlation != corr {
		i++
	}
	if i == len(d.pending) {
		return // a response to a request the decoder does not track
	}
	for i > 0 {
		d.giveUp(now) // responses come in request order: the earlier ones will not be answered
		i--
	}
	p := d.pending[0]
	d.pending = append(d.pending[:0], d.pending[1:]...)
	var err error
	switch p.apiKey {
	case APIProduce:
		ex := p.produce
		ex.EndNanos, ex.Answered = now, true
		r.tags(p.version >= flexibleProduce)
		d.readProduceResponse(&r, ex)
		err = r.err
		if err == nil || truncated {
			d.emit(ex)
		} else {
			d.release(ex)
		}
	case APIFetch:
		if p.version < minFetch || p.version > maxFetch {
			return
		}
		ex := &d.fetch
		ex.reset()
		ex.APIKey, ex.APIVersion, ex.CorrelationID, ex.ClientID = p.apiKey, p.version, p.correlation, p.clientID
		ex.StartNanos, ex.EndNanos, ex.Answered, ex.Truncated = p.start, now, true, truncated
		if d.cfg.Groups != nil && p.clientID != "" {
			ex.Group = d.cfg.Groups.Lookup(p.clientID)
		}
		r.tags(p.version >= flexibleFetch)
		d.keep = &ex.arena
		d.readFetchResponse(&r, ex, truncated)
		if err = r.err; err == nil || truncated {
			d.finish(ex)
			if len(ex.Topics) > 0 {
				d.handle(ex)
			}
		}
	case APIMetadata:
		if p.version >= minMetadataIDs && p.version <= maxMetadata && d.cfg.Topics != nil {
			r.tags(p.version >= flexibleMetadata)
			d.readMetadataResponse(&r, p.version)
			err = r.err
		}
	}
	if err != nil && !truncated {
		d.stop(fmt.Errorf("%w: response to api key %d v%d: %v", ErrNotKafka, p.apiKey, p.version, err))
	}
}

// giveUp drops the oldest pending request, reporting it if it is a Produce.
func (d *Decoder) giveUp(now uint64) {
	p := d.pending[0]
	d.pending = append(d.pending[:0], d.pending[1:]...)
	if p.produce != nil {
		p.produce.EndNanos = now
		d.emit(p.produce)
	}
}

func (d *Decoder) emit(ex *Exchange) {
	d.finish(ex)
	if len(ex.Topics) > 0 {
		d.handle(ex)
	}
	d.release(ex)
}

// finish resolves topic names, drops topics with nothing to report and keys that are not a single record's.
// Dropped topics are swapped to the end, so that every slot keeps its own slices for reuse.
func (d *Decoder) finish(ex *Exchange) {
	kept := 0
	for i := range ex.Topics {
		t := &ex.Topics[i]
		if t.Records == 0 && t.Batches == 0 && t.ErrorCode == 0 {
			continue
		}
		if t.Name == "" && d.cfg.Topics != nil {
			t.Name = d.cfg.Topics.Lookup(t.ID)
		}
		if t.Records != 1 {
			t.Key, t.HasKey = nil, false
		}
		ex.Topics[kept], ex.Topics[i] = ex.Topics[i], ex.Topics[kept]
		kept++
	}
	ex.Topics = ex.Topics[:kept]
}

func (d *Decoder) newExchange() *Exchange {
	if n := len(d.free); n > 0 {
		ex := d.free[n-1]
		d.free = d.free[:n-1]
		return ex
	}
	return new(Exchange)
}

func (d *Decoder) release(ex *Exchange) {
	ex.reset()
	if len(d.free) < 4 {
		d.free = append(d.free, ex)
	}
}

// reset clears the exchange, keeping the memory of its topics and arena for the next one.
func (ex *Exchange) reset() {
	topics, a, overflow := ex.Topics[:0], ex.arena, ex.overflow
	a.reset()
	*ex = Exchange{Topics: topics, arena: a, overflow: overflow}
}

// Bounds on what one exchange lists, so that a request naming very many topics or partitions costs linear
// time: later topics are read but not reported, later partitions counted but not listed.
const (
	maxTopics     = 64
	maxPartitions = 64
)

// topic returns the summary for the topic with this name or id, adding it if new. Beyond maxTopics it
// returns a scratch summary that is not reported.
func (ex *Exchange) topic(name []byte, id [16]byte) *Topic {
	if len(ex.Topics) >= maxTopics {
		ex.overflow = Topic{Partitions: ex.overflow.Partitions[:0], skip: true}
		return &ex.overflow
	}
	for i := range ex.Topics {
		t := &ex.Topics[i]
		if t.ID == id && t.Name == string(name) {
			return t
		}
	}
	if len(ex.Topics) == cap(ex.Topics) {
		ex.Topics = append(ex.Topics, Topic{})
	} else {
		ex.Topics = ex.Topics[:len(ex.Topics)+1]
	}
	t := &ex.Topics[len(ex.Topics)-1]
	old := t.Name
	*t = Topic{ID: id, Partitions: t.Partitions[:0], Headers: t.Headers[:0], Contexts: t.Contexts[:0]}
	if t.Name = old; old != string(name) {
		t.Name = string(name) // a slot reused for the same topic keeps its name without allocating
	}
	return t
}

// arena holds the copies of record data (header values, keys, trace contexts) an exchange keeps. Slices
// handed out stay valid until reset: blocks never grow in place beyond their capacity.
type arena struct {
	blocks [][]byte
	cur    int
}

const arenaBlock = 4096

func (a *arena) copy(b []byte) []byte {
	if len(b) > arenaBlock/4 {
		return append([]byte(nil), b...)
	}
	for ; a.cur < len(a.blocks); a.cur++ {
		if blk := a.blocks[a.cur]; cap(blk)-len(blk) >= len(b) {
			n := len(blk)
			a.blocks[a.cur] = append(blk, b...)
			return a.blocks[a.cur][n : n+len(b) : n+len(b)]
		}
	}
	a.blocks = append(a.blocks, append(make([]byte, 0, arenaBlock), b...))
	return a.blocks[a.cur][:len(b):len(b)]
}

func (a *arena) reset() {
	for i := range a.blocks {
		a.blocks[i] = a.blocks[i][:0]
	}
	a.cur = 0
}

func (t *Topic) addPartition(p int32) {
	if len(t.Partitions) >= maxPartitions {
		return
	}
	for _, q := range t.Partitions {
		if q == p {
			return
		}
	}
	t.Partitions = append(t.Partitions, p)
}
