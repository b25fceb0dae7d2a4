package kafka

// TopicNames maps topic ids to names, learnt from Metadata responses. Newer clients name topics only by id in
// Produce and Fetch (v13+), and usually ask for metadata on a different connection, so one TopicNames is shared
// by all decoders of a process. It is not safe for concurrent use (proxy-wasm plugins are single-threaded).
type TopicNames struct {
	max   int
	names map[[16]byte]string
}

// NewTopicNames returns an empty map holding at most limit ids (at least 1); when full it starts over.
func NewTopicNames(limit int) *TopicNames {
	return &TopicNames{max: max(limit, 1), names: make(map[[16]byte]string)}
}

// Put records the name of a topic id.
func (n *TopicNames) Put(id [16]byte, name string) {
	if old, ok := n.names[id]; ok && old == name {
		return
	}
	if len(n.names) >= n.max {
		clear(n.names)
	}
	n.names[id] = name
}

// Lookup returns the name of a topic id, or "" if unknown.
func (n *TopicNames) Lookup(id [16]byte) string { return n.names[id] }
