package kafka

// Bounds on what GroupNames keeps: longer client ids or group ids are not recorded (Kafka does not cap them,
// but real ones are short; a clipped group name would misname the group).
const (
	MaxClientIDLen = 255
	MaxGroupIDLen  = 255
)

// API keys of the consumer group requests whose group id the decoder reads (the first field of each body).
const (
	APIOffsetCommit           int16 = 8
	APIOffsetFetch            int16 = 9
	APIJoinGroup              int16 = 11
	APIHeartbeat              int16 = 12
	APILeaveGroup             int16 = 13
	APISyncGroup              int16 = 14
	APISaslHandshake          int16 = 17
	APISaslAuthenticate       int16 = 36
	APIConsumerGroupHeartbeat int16 = 68
)

// GroupNames maps client ids to the consumer group their client last named, learnt from the group requests
// (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ConsumerGroupHeartbeat). A consumer
// sends those to its group coordinator, usually on another connection than its Fetch requests, but every
// connection of one client carries the same client id: so one GroupNames is shared by all decoders of a
// process, and Fetch exchanges are given the group of their client id. It keeps at most its capacity of client
// ids, dropping the least recently named. It is not safe for concurrent use (proxy-wasm plugins are
// single-threaded).
type GroupNames struct {
	index   map[string]int32
	entries []groupEntry
	head    int32 // most recently used, -1 if empty
	tail    int32 // least recently used
	max     int
}

type groupEntry struct {
	client, group string
	prev, next    int32
}

// NewGroupNames returns an empty map holding at most capacity client ids (at least 1).
func NewGroupNames(capacity int) *GroupNames {
	return &GroupNames{index: make(map[string]int32), head: -1, tail: -1, max: max(capacity, 1)}
}

// Len returns the number of client ids held.
func (g *GroupNames) Len() int { return len(g.entries) }

// Put records that the client with this id is in this group. Empty or over-long ids are ignored.
func (g *GroupNames) Put(clientID, group []byte) {
	if len(clientID) == 0 || len(group) == 0 || len(clientID) > MaxClientIDLen || len(group) > MaxGroupIDLen {
		return
	}
	if i, ok := g.index[string(clientID)]; ok { // no allocation: the compiler converts in place for lookups
		e := &g.entries[i]
		if e.group != string(group) {
			e.group = string(group)
		}
		g.touch(i)
		return
	}
	var i int32
	if len(g.entries) < g.max {
		i = int32(len(g.entries))
		g.entries = append(g.entries, groupEntry{prev: -1, next: -1})
	} else {
		i = g.tail // reuse the least recently used slot
		g.unlink(i)
		delete(g.index, g.entries[i].client)
	}
	g.entries[i].client, g.entries[i].group = string(clientID), string(group)
	g.index[g.entries[i].client] = i
	g.pushFront(i)
}

// Lookup returns the group of a client id, or "" if unknown.
func (g *GroupNames) Lookup(clientID string) string {
	if i, ok := g.index[clientID]; ok {
		return g.entries[i].group
	}
	return ""
}

func (g *GroupNames) touch(i int32) {
	if g.head == i {
		return
	}
	g.unlink(i)
	g.pushFront(i)
}

func (g *GroupNames) unlink(i int32) {
	e := &g.entries[i]
	if e.prev >= 0 {
		g.entries[e.prev].next = e.next
	} else {
		g.head = e.next
	}
	if e.next >= 0 {
		g.entries[e.next].prev = e.prev
	} else {
		g.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (g *GroupNames) pushFront(i int32) {
	e := &g.entries[i]
	e.prev, e.next = -1, g.head
	if g.head >= 0 {
		g.entries[g.head].prev = i
	}
	g.head = i
	if g.tail < 0 {
		g.tail = i
	}
}

// groupFlexible is the first flexible version of each group request (compact strings, tagged fields).
func groupFlexible(key int16) (int16, bool) {
	switch key {
	case APIOffsetCommit:
		return 8, true
	case APIOffsetFetch:
		return 6, true
	case APIJoinGroup:
		return 6, true
	case APIHeartbeat, APILeaveGroup, APISyncGroup:
		return 4, true
	case APIConsumerGroupHeartbeat:
		return 0, true
	}
	return 0, false
}

// readGroupID reads the group id of a group request body, after the client id of the request header. It
// returns nil if the request is not one that names a group or cannot be read.
func readGroupID(r *reader, key, version int16) []byte {
	flexFrom, ok := groupFlexible(key)
	if !ok {
		return nil
	}
	flex := version >= flexFrom
	r.tags(flex) // request header v2 tagged fields
	if key == APIOffsetFetch && version >= 8 {
		if n := r.arrayLen(flex); n < 1 {
			return nil // v8+ lists groups: the first names the client's group
		}
	}
	id := r.str(flex)
	if r.err != nil {
		return nil
	}
	return id
}
