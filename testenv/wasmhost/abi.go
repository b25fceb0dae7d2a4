package wasmhost

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// status is a proxy-wasm WasmResult.
type status uint32

const (
	statusOK                  status = 0
	statusNotFound            status = 1
	statusBadArgument         status = 2
	statusInvalidMemoryAccess status = 6
	statusEmpty               status = 7
	statusCasMismatch         status = 8
	statusUnimplemented       status = 12
)

// Map and buffer types of the ABI (proxy_map_type_t, proxy_buffer_type_t).
const (
	mapRequestHeaders   = 0
	mapRequestTrailers  = 1
	mapResponseHeaders  = 2
	mapResponseTrailers = 3
	mapCallHeaders      = 6
	mapCallTrailers     = 7

	bufRequestBody   = 0
	bufResponseBody  = 1
	bufDownstream    = 2
	bufUpstream      = 3
	bufCallBody      = 4
	bufVMConfig      = 6
	bufPluginConfig  = 7
	numStreamBuffers = 4
)

// hostFunc is one function of the "env" module. Every parameter and result is i32 unless listed in i64.
type hostFunc struct {
	params int
	i64    []int // indexes of i64 parameters
	fn     func(h *Host, p []uint64) status
}

// hostFuncs is the proxy-wasm ABI as imported by the proxy-wasm Go SDK, plus
// proxy_get_current_time_nanoseconds. Pointers and sizes are i32; every function returns a WasmResult.
var hostFuncs = map[string]hostFunc{
	"proxy_log":                          {3, nil, (*Host).log},
	"proxy_get_current_time_nanoseconds": {1, nil, (*Host).currentTime},
	"proxy_set_tick_period_milliseconds": {1, nil, (*Host).setTickPeriod},
	"proxy_set_effective_context":        {1, nil, (*Host).setEffectiveContext},
	"proxy_done":                         {0, nil, (*Host).done},
	"proxy_get_property":                 {4, nil, (*Host).getProperty},
	"proxy_set_property":                 {4, nil, (*Host).setProperty},
	"proxy_get_header_map_value":         {5, nil, (*Host).getHeaderMapValue},
	"proxy_add_header_map_value":         {5, nil, (*Host).addHeaderMapValue},
	"proxy_replace_header_map_value":     {5, nil, (*Host).replaceHeaderMapValue},
	"proxy_remove_header_map_value":      {3, nil, (*Host).removeHeaderMapValue},
	"proxy_get_header_map_pairs":         {3, nil, (*Host).getHeaderMapPairs},
	"proxy_set_header_map_pairs":         {3, nil, (*Host).setHeaderMapPairs},
	"proxy_get_buffer_bytes":             {5, nil, (*Host).getBufferBytes},
	"proxy_set_buffer_bytes":             {5, nil, (*Host).setBufferBytes},
	"proxy_continue_stream":              {1, nil, (*Host).continueStream},
	"proxy_close_stream":                 {1, nil, (*Host).closeStream},
	"proxy_send_local_response":          {8, nil, (*Host).sendLocalResponse},
	"proxy_http_call":                    {10, nil, (*Host).httpCall},
	"proxy_call_foreign_function":        {6, nil, func(*Host, []uint64) status { return statusNotFound }},
	"proxy_define_metric":                {4, nil, (*Host).defineMetric},
	"proxy_increment_metric":             {2, []int{1}, (*Host).incrementMetric},
	"proxy_record_metric":                {2, []int{1}, (*Host).recordMetric},
	"proxy_get_metric":                   {2, nil, (*Host).getMetric},
	"proxy_get_shared_data":              {5, nil, (*Host).getSharedData},
	"proxy_set_shared_data":              {5, nil, (*Host).setSharedData},
	"proxy_register_shared_queue":        {3, nil, (*Host).registerSharedQueue},
	"proxy_resolve_shared_queue":         {5, nil, (*Host).resolveSharedQueue},
	"proxy_dequeue_shared_queue":         {3, nil, (*Host).dequeueSharedQueue},
	"proxy_enqueue_shared_queue":         {3, nil, (*Host).enqueueSharedQueue},
}

// envModule builds the "env" host module: the ABI above, and for any other "env" import of the plugin a
// stub that logs the call and returns Unimplemented, so a plugin built with another SDK still loads.
func envModule(rt wazero.Runtime, imports []api.FunctionDefinition) wazero.HostModuleBuilder {
	b := rt.NewHostModuleBuilder("env")
	for name, f := range hostFuncs {
		params := make([]api.ValueType, f.params)
		for i := range params {
			params[i] = api.ValueTypeI32
			if slices.Contains(f.i64, i) {
				params[i] = api.ValueTypeI64
			}
		}
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
			// wazero leaves the upper half of an i32 on the stack unspecified.
			for i, t := range params {
				if t == api.ValueTypeI32 {
					stack[i] = uint64(uint32(stack[i]))
				}
			}
			stack[0] = uint64(f.fn(hostFrom(ctx), stack))
		}), params, []api.ValueType{api.ValueTypeI32}).Export(name)
	}
	for _, imp := range imports {
		mod, name, _ := imp.Import()
		if _, ok := hostFuncs[name]; mod != "env" || ok {
			continue
		}
		results := imp.ResultTypes()
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
			h := hostFrom(ctx)
			h.logs = append(h.logs, LogEntry{LogError, "wasmhost: unimplemented host function " + name})
			if len(results) > 0 {
				stack[0] = uint64(statusUnimplemented)
			}
		}), imp.ParamTypes(), results).Export(name)
	}
	return b
}

// read returns a view of guest memory; it is invalid after anything that may grow the memory.
func (h *Host) read(ptr, size uint64) ([]byte, bool) {
	return h.mem.Read(uint32(ptr), uint32(size))
}

// alloc reserves size bytes in the guest with its malloc export, else proxy_on_memory_allocate (as Envoy
// does; see bindExports). A guest failure aborts the running guest call (wazero turns the panic into the
// error of the outer call).
func (h *Host) alloc(size int) uint32 {
	h.allocStack[0] = uint64(size)
	if err := h.fn[fnAlloc].CallWithStack(h.ctx, h.allocStack[:]); err != nil {
		panic(fmt.Errorf("guest allocation: %w", err))
	}
	return uint32(h.allocStack[0])
}

// returnBytes copies data into fresh guest memory and stores its address and size at ptrPtr and sizePtr,
// writing a null pointer for empty data as Envoy does.
func (h *Host) returnBytes(data []byte, ptrPtr, sizePtr uint64) status {
	var p uint32
	if len(data) > 0 {
		if p = h.alloc(len(data)); p == 0 || !h.mem.Write(p, data) {
			return statusInvalidMemoryAccess
		}
	}
	return h.returnPointer(p, len(data), ptrPtr, sizePtr)
}

func (h *Host) returnString(data string, ptrPtr, sizePtr uint64) status {
	var p uint32
	if len(data) > 0 {
		if p = h.alloc(len(data)); p == 0 || !h.mem.WriteString(p, data) {
			return statusInvalidMemoryAccess
		}
	}
	return h.returnPointer(p, len(data), ptrPtr, sizePtr)
}

func (h *Host) returnPointer(p uint32, size int, ptrPtr, sizePtr uint64) status {
	if !h.mem.WriteUint32Le(uint32(ptrPtr), p) || !h.mem.WriteUint32Le(uint32(sizePtr), uint32(size)) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

// returnU32 and returnU64 store an out-parameter at the guest address ptr.
func (h *Host) returnU32(ptr uint64, v uint32) status {
	if !h.mem.WriteUint32Le(uint32(ptr), v) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

func (h *Host) returnU64(ptr uint64, v uint64) status {
	if !h.mem.WriteUint64Le(uint32(ptr), v) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

func (h *Host) log(p []uint64) status {
	msg, ok := h.read(p[1], p[2])
	if !ok {
		return statusInvalidMemoryAccess
	}
	if LogLevel(p[0]) < h.cfg.LogLevel {
		return statusOK
	}
	h.logs = append(h.logs, LogEntry{Level: LogLevel(p[0]), Message: string(msg)})
	return statusOK
}

func (h *Host) currentTime(p []uint64) status {
	return h.returnU64(p[0], uint64(h.now().UnixNano()))
}

func (h *Host) setTickPeriod(p []uint64) status {
	if h.activeRoot == nil {
		return statusBadArgument
	}
	h.activeRoot.tickPeriod = time.Duration(p[0]) * time.Millisecond
	return statusOK
}

func (h *Host) setEffectiveContext(p []uint64) status {
	id := uint32(p[0])
	if s, ok := h.streams[id]; ok {
		h.active, h.activeRoot = s, s.root
		return statusOK
	}
	for _, r := range h.roots {
		if r.id == id && r.alive {
			h.active, h.activeRoot = nil, r
			return statusOK
		}
	}
	return statusBadArgument
}

// done is proxy_done: the effective root context finishes the shutdown proxy_on_done deferred.
func (h *Host) done([]uint64) status {
	if h.activeRoot == nil {
		return statusBadArgument
	}
	h.activeRoot.doneCalled = true
	return statusOK
}

// propertyKey turns a NUL-separated property path into the dotted key of the property maps.
func (h *Host) propertyKey(ptr, size uint64) ([]byte, bool) {
	path, ok := h.read(ptr, size)
	if !ok {
		return nil, false
	}
	h.scratch = append(h.scratch[:0], path...)
	for i, c := range h.scratch {
		if c == 0 {
			h.scratch[i] = '.'
		}
	}
	return h.scratch, true
}

func (h *Host) getProperty(p []uint64) status {
	key, ok := h.propertyKey(p[0], p[1])
	if !ok {
		return statusInvalidMemoryAccess
	}
	if h.active != nil {
		if v, ok := h.active.props[string(key)]; ok {
			return h.returnBytes(v, p[2], p[3])
		}
	}
	if h.activeRoot != nil {
		if v, ok := h.activeRoot.props[string(key)]; ok {
			return h.returnBytes(v, p[2], p[3])
		}
	}
	if v, ok := h.cfg.Properties[string(key)]; ok {
		return h.returnBytes(v, p[2], p[3])
	}
	return statusNotFound
}

func (h *Host) setProperty(p []uint64) status {
	key, ok := h.propertyKey(p[0], p[1])
	if !ok {
		return statusInvalidMemoryAccess
	}
	v, ok := h.read(p[2], p[3])
	if !ok {
		return statusInvalidMemoryAccess
	}
	if h.active == nil {
		return statusNotFound // Envoy keeps plugin-set properties in the stream's filter state
	}
	h.active.SetProperty(string(key), slices.Clone(v))
	return statusOK
}

// headerMap resolves a map type in the effective context. A map Envoy does not hold at this point (for
// example the response headers while the request is handled) is a BadArgument; in proxy_on_log a map
// that never arrived is NotFound.
func (h *Host) headerMap(t uint64) (*headerMap, status) {
	switch t {
	case mapCallHeaders, mapCallTrailers:
		if h.callResp == nil {
			return nil, statusBadArgument
		}
		if t == mapCallHeaders {
			return (*headerMap)(&h.callResp.Headers), statusOK
		}
		return (*headerMap)(&h.callResp.Trailers), statusOK
	case mapRequestHeaders, mapRequestTrailers, mapResponseHeaders, mapResponseTrailers:
		s := h.active
		switch {
		case s == nil:
			return nil, statusBadArgument
		case s.logPhase:
			if t == mapRequestTrailers || !s.seen[t] {
				return nil, statusNotFound
			}
		case !s.liveMap[t]:
			return nil, statusBadArgument
		}
		return &s.maps[t], statusOK
	}
	return nil, statusBadArgument
}

func (h *Host) getHeaderMapValue(p []uint64) status {
	m, st := h.headerMap(p[0])
	if st != statusOK {
		return st
	}
	key, ok := h.read(p[1], p[2])
	if !ok {
		return statusInvalidMemoryAccess
	}
	i := m.index(key)
	if i < 0 {
		return statusNotFound
	}
	return h.returnString((*m)[i][1], p[3], p[4])
}

func (h *Host) addHeaderMapValue(p []uint64) status {
	return h.editHeaderMap(p, func(m *headerMap, key []byte, value string) { m.add(h.intern(key), value) })
}

// intern returns key lower-cased as a string, reusing the strings of header names seen before.
func (h *Host) intern(key []byte) string {
	if s, ok := h.keys[string(key)]; ok {
		return s
	}
	s := strings.ToLower(string(key))
	if len(h.keys) < maxInterned {
		h.keys[string(key)] = s
	}
	return s
}

// maxInterned bounds the header name cache against plugins that invent names.
const maxInterned = 4096

func (h *Host) replaceHeaderMapValue(p []uint64) status {
	return h.editHeaderMap(p, (*headerMap).replace)
}

func (h *Host) editHeaderMap(p []uint64, edit func(m *headerMap, key []byte, value string)) status {
	m, st := h.headerMap(p[0])
	if st != statusOK {
		return st
	}
	key, ok := h.read(p[1], p[2])
	value, ok2 := h.read(p[3], p[4])
	if !ok || !ok2 {
		return statusInvalidMemoryAccess
	}
	edit(m, key, string(value))
	return statusOK
}

func (h *Host) removeHeaderMapValue(p []uint64) status {
	m, st := h.headerMap(p[0])
	if st != statusOK {
		return st
	}
	key, ok := h.read(p[1], p[2])
	if !ok {
		return statusInvalidMemoryAccess
	}
	m.remove(key)
	return statusOK
}

// getHeaderMapPairs follows Envoy: a map that is not available, like an empty one, is returned as a null
// pointer with status OK (the SDK reports it as NotFound).
func (h *Host) getHeaderMapPairs(p []uint64) status {
	m, st := h.headerMap(p[0])
	if st != statusOK || len(*m) == 0 {
		return h.returnPointer(0, 0, p[1], p[2])
	}
	h.scratch = appendSerialized(h.scratch[:0], *m)
	return h.returnBytes(h.scratch, p[1], p[2])
}

func (h *Host) setHeaderMapPairs(p []uint64) status {
	m, st := h.headerMap(p[0])
	if st != statusOK {
		return st
	}
	b, ok := h.read(p[1], p[2])
	if !ok {
		return statusInvalidMemoryAccess
	}
	pairs, err := appendDeserialized(nil, b)
	if err != nil {
		return statusBadArgument
	}
	m.setFrom(pairs)
	return statusOK
}

// buffer resolves a buffer type in the effective context; writable reports whether the plugin may
// change it. As in Envoy the plugin configuration is there only during proxy_on_configure, and a body or
// data buffer only while Envoy holds it (see HTTPStream); outside that window it reads as empty.
func (h *Host) buffer(t uint64) (buf []byte, writable bool, st status) {
	switch t {
	case bufVMConfig:
		return h.cfg.VMConfig, false, statusOK
	case bufPluginConfig:
		if h.activeRoot == nil || !h.activeRoot.configuring {
			return nil, false, statusNotFound
		}
		return h.activeRoot.pluginConfig, false, statusOK
	case bufCallBody:
		if h.callResp == nil {
			return nil, false, statusNotFound
		}
		return h.callResp.Body, false, statusOK
	case bufRequestBody, bufResponseBody, bufDownstream, bufUpstream:
		if s := h.active; s != nil && s.liveBuffer[t] {
			return s.buffers[t], true, statusOK
		}
		return nil, false, statusOK
	}
	return nil, false, statusNotFound
}

// getBufferBytes returns up to max bytes from start; as in Envoy an empty range is OK with nothing written.
func (h *Host) getBufferBytes(p []uint64) status {
	buf, _, st := h.buffer(p[0])
	if st != statusOK {
		return st
	}
	start, size := p[1], p[2]
	if start > uint64(len(buf)) {
		return statusBadArgument
	}
	end := min(start+size, uint64(len(buf)))
	if end == start {
		return statusOK
	}
	return h.returnBytes(buf[start:end], p[3], p[4])
}

// setBufferBytes follows Envoy: start 0 drains size bytes and prepends the data, start at or past the end
// appends; anything else is a BadArgument.
func (h *Host) setBufferBytes(p []uint64) status {
	_, writable, st := h.buffer(p[0])
	if st != statusOK {
		return st
	}
	if !writable {
		return statusBadArgument
	}
	buf := &h.active.buffers[p[0]]
	data, ok := h.read(p[3], p[4])
	if !ok {
		return statusInvalidMemoryAccess
	}
	start, size := p[1], p[2]
	switch {
	case start == 0:
		rest := (*buf)[min(size, uint64(len(*buf))):]
		*buf = slices.Concat(data, rest)
	case start >= uint64(len(*buf)):
		*buf = append(*buf, data...)
	default:
		return statusBadArgument
	}
	return statusOK
}

// continueStream follows Envoy, which does not implement resuming the upstream direction.
func (h *Host) continueStream(p []uint64) status {
	switch {
	case h.active == nil || p[0] > uint64(StreamUpstream):
		return statusBadArgument
	case p[0] == uint64(StreamUpstream):
		return statusUnimplemented
	}
	h.active.resume(StreamType(p[0]))
	return statusOK
}

func (h *Host) closeStream(p []uint64) status {
	if h.active == nil || p[0] > uint64(StreamUpstream) {
		return statusBadArgument
	}
	h.active.closed[p[0]]++
	return statusOK
}

func (h *Host) sendLocalResponse(p []uint64) status {
	if h.active == nil {
		return statusBadArgument
	}
	details, ok1 := h.read(p[1], p[2])
	body, ok2 := h.read(p[3], p[4])
	headers, ok3 := h.read(p[5], p[6])
	if !ok1 || !ok2 || !ok3 {
		return statusInvalidMemoryAccess
	}
	pairs, err := appendDeserialized(nil, headers)
	if err != nil {
		return statusBadArgument
	}
	h.active.local = &LocalReply{
		Status: uint32(p[0]), Details: string(details), Body: slices.Clone(body), Headers: pairs,
		GRPCStatus: int32(uint32(p[7])),
	}
	return statusOK
}

// httpCall registers an outgoing call. Like Envoy it rejects a negative timeout, calls without :method,
// :path or :authority and, when Config.Clusters is set, unknown clusters. The response is never delivered inside the call:
// the SDK registers its callback only after proxy_http_call returns.
func (h *Host) httpCall(p []uint64) status {
	cluster, ok1 := h.read(p[0], p[1])
	headers, ok2 := h.read(p[2], p[3])
	body, ok3 := h.read(p[4], p[5])
	trailers, ok4 := h.read(p[6], p[7])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return statusInvalidMemoryAccess
	}
	if int32(p[8]) < 0 {
		return statusBadArgument
	}
	req := HTTPCallRequest{Cluster: string(cluster), Body: slices.Clone(body), Timeout: time.Duration(p[8]) * time.Millisecond}
	var err1, err2 error
	req.Headers, err1 = appendDeserialized(nil, headers)
	req.Trailers, err2 = appendDeserialized(nil, trailers)
	if err1 != nil || err2 != nil {
		return statusBadArgument
	}
	for _, name := range [...]string{":method", ":path", ":authority"} {
		if _, ok := req.Header(name); !ok {
			return statusBadArgument
		}
	}
	if h.cfg.Clusters != nil && !slices.Contains(h.cfg.Clusters, req.Cluster) {
		return statusBadArgument
	}
	if h.activeRoot == nil {
		return statusBadArgument
	}
	h.nextCallID++
	req.ID, req.Context = h.nextCallID, h.activeRoot.id
	if h.active != nil {
		req.Context = h.active.id
	}
	call := pendingCall{req, h.activeRoot}
	if st := h.returnU32(p[9], req.ID); st != statusOK {
		return st
	}
	if h.cfg.HTTPCall != nil {
		if resp, ok := h.cfg.HTTPCall(req); ok {
			h.ready = append(h.ready, callResult{call, resp})
			return statusOK
		}
	}
	h.pending[req.ID] = call
	return statusOK
}
