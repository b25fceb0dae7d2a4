package wasmhost

import "sync"

// Shared is the shared key-value store and the shared queues of a set of VMs (Envoy keeps them per
// vm_id). It is safe for concurrent use. The zero value is not usable; call NewShared.
type Shared struct {
	mu     sync.Mutex
	data   map[string]sharedValue
	queues []*sharedQueue    // queue id - 1 indexes this slice
	names  map[string]uint32 // "vm_id\x00name" -> queue id
}

type sharedValue struct {
	value []byte
	cas   uint32
}

type sharedQueue struct {
	owner *Host // the VM and root context that registered the queue last: they get proxy_on_queue_ready
	root  *Root
	items [][]byte
}

// NewShared returns an empty store.
func NewShared() *Shared {
	return &Shared{data: map[string]sharedValue{}, names: map[string]uint32{}}
}

// Get returns a copy of the value stored under key and its CAS token.
func (s *Shared) Get(key string) (value []byte, cas uint32, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	return append([]byte(nil), v.value...), v.cas, ok
}

// Set stores value under key. A non-zero cas must match the current token (proxy_set_shared_data
// semantics); it reports false on a mismatch.
func (s *Shared) Set(key string, value []byte, cas uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.data[key]
	if cas != 0 && ok && old.cas != cas {
		return false
	}
	s.data[key] = sharedValue{value: append([]byte(nil), value...), cas: old.cas + 1}
	return true
}

// QueueLen returns the number of items waiting in the queue registered as name by vm id vmID
// (the host's vm id is empty), or -1 when there is no such queue.
func (s *Shared) QueueLen(vmID, name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.names[vmID+"\x00"+name]
	if !ok {
		return -1
	}
	return len(s.queues[id-1].items)
}

// register creates the queue name, or takes it over as Envoy does when another root registers it.
func (s *Shared) register(owner *Host, root *Root, name string) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := "\x00" + name
	if id, ok := s.names[key]; ok {
		s.queues[id-1].owner, s.queues[id-1].root = owner, root
		return id
	}
	s.queues = append(s.queues, &sharedQueue{owner: owner, root: root})
	id := uint32(len(s.queues))
	s.names[key] = id
	return id
}

func (s *Shared) resolve(vmID, name string) (uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.names[vmID+"\x00"+name]
	return id, ok
}

// enqueue appends a copy of item and schedules proxy_on_queue_ready on the owner's next Flush.
func (s *Shared) enqueue(id uint32, item []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == 0 || int(id) > len(s.queues) {
		return false
	}
	q := s.queues[id-1]
	q.items = append(q.items, append([]byte(nil), item...))
	q.owner.queueReady = append(q.owner.queueReady, queueEvent{q.root, id})
	return true
}

// dequeue pops the oldest item: NotFound for an unknown queue, Empty for an empty one.
func (s *Shared) dequeue(id uint32) ([]byte, status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == 0 || int(id) > len(s.queues) {
		return nil, statusNotFound
	}
	q := s.queues[id-1]
	if len(q.items) == 0 {
		return nil, statusEmpty
	}
	item := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	return item, statusOK
}
