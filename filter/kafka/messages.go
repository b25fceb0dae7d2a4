package kafka

// Versions the decoder reads, and where each API turns flexible (compact encodings and tagged fields).
const (
	minProduce      = 3 // record batches (magic v2) start with Produce v3
	maxProduce      = 13
	flexibleProduce = 9
	produceTopicIDs = 13

	minFetch      = 4
	maxFetch      = 18
	flexibleFetch = 12
	fetchTopicIDs = 13

	minMetadataIDs   = 10 // topic ids appear in Metadata v10
	maxMetadata      = 13
	flexibleMetadata = 9
)

// readProduceRequest reads a Produce request body (after the request header) into ex.
func (d *Decoder) readProduceRequest(r *reader, ex *Exchange) {
	v := ex.APIVersion
	flex := v >= flexibleProduce
	r.str(flex) // transactional id, not reported
	ex.Acks = r.int16()
	r.int32() // timeout
	topics := r.arrayLen(flex)
	for i := 0; i < topics && r.err == nil; i++ {
		t := ex.topic(r.topicRef(v >= produceTopicIDs, flex))
		parts := r.arrayLen(flex)
		for j := 0; j < parts && r.err == nil; j++ {
			t.addPartition(r.int32())
			d.readRecordSet(t, r.records(flex, ex.Truncated))
			r.tags(flex)
		}
		r.tags(flex)
	}
}

// readProduceResponse reads a Produce response body (after the response header), noting per topic the first
// error code and the lowest base offset.
func (d *Decoder) readProduceResponse(r *reader, ex *Exchange) {
	v := ex.APIVersion
	flex := v >= flexibleProduce
	topics := r.arrayLen(flex)
	for i := 0; i < topics && r.err == nil; i++ {
		t := ex.topic(r.topicRef(v >= produceTopicIDs, flex))
		parts := r.arrayLen(flex)
		for j := 0; j < parts && r.err == nil; j++ {
			r.int32() // partition
			code := r.int16()
			base := r.int64()
			if t.ErrorCode == 0 {
				t.ErrorCode = code
			}
			if code == 0 && base >= 0 && (t.FirstOffset == 0 || base < t.FirstOffset) {
				t.FirstOffset = base
			}
			r.int64() // log append time (v2+, always here since v3)
			if v >= 5 {
				r.int64() // log start offset
			}
			if v >= 8 {
				errs := r.arrayLen(flex)
				for k := 0; k < errs && r.err == nil; k++ {
					r.int32() // batch index
					r.str(flex)
					r.tags(flex)
				}
				r.str(flex) // error message
			}
			r.tags(flex)
		}
		r.tags(flex)
	}
}

// readFetchResponse reads a Fetch response body (after the response header) into ex.
func (d *Decoder) readFetchResponse(r *reader, ex *Exchange, truncated bool) {
	v := ex.APIVersion
	flex := v >= flexibleFetch
	r.int32() // throttle time
	var topErr int16
	if v >= 7 {
		topErr = r.int16()
		r.int32() // session id
	}
	topics := r.arrayLen(flex)
	for i := 0; i < topics && r.err == nil; i++ {
		t := ex.topic(r.topicRef(v >= fetchTopicIDs, flex))
		parts := r.arrayLen(flex)
		for j := 0; j < parts && r.err == nil; j++ {
			part := r.int32()
			code := r.int16()
			r.int64() // high watermark
			r.int64() // last stable offset (v4+)
			if v >= 5 {
				r.int64() // log start offset
			}
			aborted := r.arrayLen(flex)
			for k := 0; k < aborted && r.err == nil; k++ {
				r.int64() // producer id
				r.int64() // first offset
				r.tags(flex)
			}
			if v >= 11 {
				r.int32() // preferred read replica
			}
			before, oldest := t.Batches, t.OldestTimestamp
			d.readRecordSet(t, r.records(flex, truncated))
			if t.Batches > before {
				t.addPartition(part)
			}
			if t.OldestTimestamp != oldest {
				t.OldestPartition = part
			}
			if t.ErrorCode == 0 {
				t.ErrorCode = code
			}
			r.tags(flex)
		}
		r.tags(flex)
	}
	if topErr != 0 {
		for i := range ex.Topics {
			if ex.Topics[i].ErrorCode == 0 {
				ex.Topics[i].ErrorCode = topErr
			}
		}
	}
}

// readMetadataResponse reads the topic names and ids of a Metadata response (v10+) into the shared
// TopicNames.
func (d *Decoder) readMetadataResponse(r *reader, v int16) {
	flex := v >= flexibleMetadata
	r.int32() // throttle time
	brokers := r.arrayLen(flex)
	for i := 0; i < brokers && r.err == nil; i++ {
		r.int32()   // node id
		r.str(flex) // host
		r.int32()   // port
		r.str(flex) // rack
		r.tags(flex)
	}
	r.str(flex) // cluster id
	r.int32()   // controller id
	topics := r.arrayLen(flex)
	for i := 0; i < topics && r.err == nil; i++ {
		r.int16() // error code
		name := r.str(flex)
		id := r.uuid()
		r.int8() // is internal
		parts := r.arrayLen(flex)
		for j := 0; j < parts && r.err == nil; j++ {
			r.int16()                // error code
			r.int32()                // partition
			r.int32()                // leader
			r.int32()                // leader epoch (v7+)
			for k := 0; k < 3; k++ { // replicas, isr, offline replicas (v5+)
				n := r.arrayLen(flex)
				r.skip(4 * max(n, 0))
			}
			r.tags(flex)
		}
		r.int32() // topic authorized operations (v8+)
		r.tags(flex)
		if r.err == nil && len(name) > 0 && id != ([16]byte{}) {
			d.cfg.Topics.Put(id, string(name))
		}
	}
}

// recordSet is a records field; cut reports that the frame's truncation cut it short.
type recordSet struct {
	b   []byte
	cut bool
}

// records reads a records field. In a truncated frame a field running past the end yields what is there.
func (r *reader) records(flexible, truncated bool) recordSet {
	if !truncated {
		return recordSet{b: r.bytes(flexible)}
	}
	var n int
	if flexible {
		n = int(r.uvarint()) - 1
	} else {
		n = int(r.int32())
	}
	if r.err != nil || n < 0 {
		return recordSet{}
	}
	if n > r.remaining() {
		return recordSet{b: r.take(r.remaining()), cut: true}
	}
	return recordSet{b: r.take(n)}
}
