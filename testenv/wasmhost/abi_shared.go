package wasmhost

// The ABI's metrics, shared data and shared queues.

func (h *Host) defineMetric(p []uint64) status {
	kind := MetricType(p[0])
	if kind > MetricHistogram {
		return statusBadArgument
	}
	name, ok := h.read(p[1], p[2])
	if !ok {
		return statusInvalidMemoryAccess
	}
	id, ok := h.metricIDs[string(name)]
	if !ok {
		h.metrics = append(h.metrics, metric{name: string(name), kind: kind})
		id = uint32(len(h.metrics))
		h.metricIDs[string(name)] = id
	}
	return h.returnU32(p[3], id)
}

func (h *Host) metric(id uint64) *metric {
	if id == 0 || id > uint64(len(h.metrics)) {
		return nil
	}
	return &h.metrics[id-1]
}

// incrementMetric follows Envoy: counters take positive offsets only, gauges any, histograms none.
func (h *Host) incrementMetric(p []uint64) status {
	m := h.metric(uint64(uint32(p[0])))
	if m == nil {
		return statusNotFound
	}
	offset := int64(p[1])
	switch {
	case m.kind == MetricGauge, m.kind == MetricCounter && offset > 0:
		m.value += offset
		return statusOK
	}
	return statusBadArgument
}

// recordMetric adds to a counter, sets a gauge and records a histogram sample, as Envoy does.
func (h *Host) recordMetric(p []uint64) status {
	m := h.metric(uint64(uint32(p[0])))
	if m == nil {
		return statusNotFound
	}
	switch m.kind {
	case MetricCounter:
		m.value += int64(p[1])
	case MetricGauge:
		m.value = int64(p[1])
	case MetricHistogram:
		m.samples = append(m.samples, p[1])
	}
	return statusOK
}

func (h *Host) getMetric(p []uint64) status {
	m := h.metric(uint64(uint32(p[0])))
	if m == nil {
		return statusNotFound
	}
	if m.kind == MetricHistogram {
		return statusBadArgument
	}
	return h.returnU64(p[1], uint64(m.value))
}

func (h *Host) getSharedData(p []uint64) status {
	key, ok := h.read(p[0], p[1])
	if !ok {
		return statusInvalidMemoryAccess
	}
	h.shared.mu.Lock()
	v, found := h.shared.data[string(key)]
	h.shared.mu.Unlock()
	if !found {
		return statusNotFound
	}
	if st := h.returnBytes(v.value, p[2], p[3]); st != statusOK {
		return st
	}
	return h.returnU32(p[4], v.cas)
}

func (h *Host) setSharedData(p []uint64) status {
	key, ok1 := h.read(p[0], p[1])
	value, ok2 := h.read(p[2], p[3])
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	if !h.shared.Set(string(key), value, uint32(p[4])) {
		return statusCasMismatch
	}
	return statusOK
}

func (h *Host) registerSharedQueue(p []uint64) status {
	name, ok := h.read(p[0], p[1])
	if !ok {
		return statusInvalidMemoryAccess
	}
	if h.activeRoot == nil {
		return statusBadArgument
	}
	return h.returnU32(p[2], h.shared.register(h, h.activeRoot, string(name)))
}

func (h *Host) resolveSharedQueue(p []uint64) status {
	vmID, ok1 := h.read(p[0], p[1])
	name, ok2 := h.read(p[2], p[3])
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	id, ok := h.shared.resolve(string(vmID), string(name))
	if !ok {
		return statusNotFound
	}
	return h.returnU32(p[4], id)
}

func (h *Host) dequeueSharedQueue(p []uint64) status {
	item, st := h.shared.dequeue(uint32(p[0]))
	if st != statusOK {
		return st
	}
	return h.returnBytes(item, p[1], p[2])
}

func (h *Host) enqueueSharedQueue(p []uint64) status {
	item, ok := h.read(p[1], p[2])
	if !ok {
		return statusInvalidMemoryAccess
	}
	if !h.shared.enqueue(uint32(p[0]), item) {
		return statusNotFound
	}
	return statusOK
}
