package wasmhost

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// rootContextID is the id of the first root (plugin) context of a Host.
const rootContextID = 1

// Host is one plugin instance: a VM with its root contexts and their stream contexts, driven
// synchronously by the test. It is not safe for concurrent use (like one Envoy worker's VM).
type Host struct {
	ctx    context.Context // carries the Host to the host functions
	module api.Module
	mem    api.Memory
	fn     [numGuestFns]api.Function
	owned  *Module // closed with the Host when Load compiled it

	cfg    Config
	shared *Shared
	now    func() time.Time

	stack      [8]uint64         // params and results of calls into the guest
	allocStack [1]uint64         // proxy_on_memory_allocate, called from inside host functions
	scratch    []byte            // serialisation buffer reused across host calls
	keys       map[string]string // interned header names

	err        error   // first guest failure; the instance is unusable afterwards
	output     tail    // end of the guest's stdout and stderr, where Go and TinyGo print panics
	roots      []*Root // roots[0] is the root created by Load
	nextID     uint32
	streams    map[uint32]*stream
	active     *stream // the stream context host calls act on; nil when a root context is effective
	activeRoot *Root   // the effective root context (the stream's root while a stream is active)
	logs       []LogEntry

	metrics   []metric
	metricIDs map[string]uint32

	nextCallID uint32
	pending    map[uint32]pendingCall
	ready      []callResult
	callResp   *HTTPCallResponse // the response being delivered, read by the buffer and map calls

	queueReady []queueEvent // queues with new items, guarded by shared.mu (other hosts enqueue)
}

type metric struct {
	name    string
	kind    MetricType
	value   int64
	samples []uint64
}

type pendingCall struct {
	req  HTTPCallRequest
	root *Root // receives proxy_on_http_call_response
}

type callResult struct {
	pendingCall
	resp HTTPCallResponse
}

type queueEvent struct {
	root *Root
	id   uint32
}

type hostKey struct{}

func hostFrom(ctx context.Context) *Host { return ctx.Value(hostKey{}).(*Host) }

// Load instantiates the module, creates the root context and runs proxy_on_vm_start and
// proxy_on_configure. If either reports failure the error carries the plugin's warn and error logs.
func (m *Module) Load(ctx context.Context, cfg Config) (*Host, error) {
	h := &Host{
		cfg:       cfg,
		shared:    cfg.Shared,
		now:       cfg.Now,
		nextID:    rootContextID,
		streams:   map[uint32]*stream{},
		metricIDs: map[string]uint32{},
		keys:      map[string]string{},
		pending:   map[uint32]pendingCall{},
	}
	if h.shared == nil {
		h.shared = NewShared()
	}
	if h.now == nil {
		h.now = time.Now
	}
	h.ctx = context.WithValue(context.WithoutCancel(ctx), hostKey{}, h)

	mc := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(m.start...).
		WithStdout(io.MultiWriter(orDiscard(cfg.Stdout), &h.output)).
		WithStderr(io.MultiWriter(orDiscard(cfg.Stderr), &h.output)).
		WithRandSource(rand.Reader)
	for _, k := range slices.Sorted(maps.Keys(cfg.Env)) {
		mc = mc.WithEnv(k, cfg.Env[k])
	}
	if cfg.Now == nil {
		mc = mc.WithSysWalltime().WithSysNanotime()
	} else {
		mc = mc.WithWalltime(func() (int64, int32) {
			t := h.now()
			return t.Unix(), int32(t.Nanosecond())
		}, sys.ClockResolution(1)).WithNanotime(func() int64 { return h.now().UnixNano() }, sys.ClockResolution(1))
	}
	mod, err := m.rt.InstantiateModule(h.ctx, m.compiled, mc)
	if err != nil {
		return nil, fmt.Errorf("wasmhost: instantiate: %w%s", err, h.output.suffix())
	}
	h.module, h.mem = mod, mod.Memory()
	h.bindExports()
	if _, err := h.AddRoot(cfg.PluginConfig, nil); err != nil {
		return nil, errors.Join(err, mod.Close(ctx))
	}
	return h, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

func (h *Host) bindExports() {
	for f := range h.fn {
		h.fn[f] = h.module.ExportedFunction(guestFn(f).String())
	}
	// Envoy (proxy-wasm-cpp-host) allocates the buffers it hands to a plugin through the module's malloc
	// export when there is one, and only otherwise through proxy_on_memory_allocate. Doing the same lets a
	// test see what Envoy sees: TinyGo's exported malloc keeps every block until free, which the SDK never
	// calls, so a build that exports it leaks every buffer.
	if malloc := h.module.ExportedFunction("malloc"); malloc != nil {
		h.fn[fnAlloc] = malloc
	}
}

// problemLogs formats the plugin's warn-or-worse log lines for an error message.
func (h *Host) problemLogs() string {
	var b strings.Builder
	for _, l := range h.logs {
		if l.Level >= LogWarn {
			fmt.Fprintf(&b, "\n\t[%s] %s", l.Level, l.Message)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return ": plugin log:" + b.String()
}

// missingResult is what a callback the plugin does not export returns: Envoy (proxy-wasm-cpp-host,
// src/context.cc) skips the call, and proxy_on_vm_start, proxy_on_configure and proxy_on_done count as
// true; the header, body, trailer, new connection and data callbacks as Continue (0); the others return
// nothing.
var missingResult = [numGuestFns]uint64{fnVMStart: 1, fnConfigure: 1, fnDone: 1}

// call runs a guest export on behalf of root r, or of stream s under it, and returns its first result.
// After a trap or exit the Host is unusable and every later call returns the same error. A callback the
// plugin does not export is skipped with missingResult, as in Envoy; the allocator is always there
// (compile checks it).
func (h *Host) call(f guestFn, r *Root, s *stream, params ...uint64) (uint64, error) {
	if h.err != nil {
		return 0, h.err
	}
	fn := h.fn[f]
	if fn == nil {
		return missingResult[f], nil
	}
	prev, prevRoot := h.active, h.activeRoot
	h.active, h.activeRoot = s, r
	n := copy(h.stack[:], params)
	err := fn.CallWithStack(h.ctx, h.stack[:max(n, 1)])
	h.active, h.activeRoot = prev, prevRoot
	if err != nil {
		h.err = fmt.Errorf("wasmhost: %s: %w%s", f, err, h.output.suffix())
		return 0, h.err
	}
	return h.stack[0], nil
}

// Err returns the guest failure (trap or exit) that made the Host unusable, if any.
func (h *Host) Err() error { return h.err }

// Root returns the root context Load created.
func (h *Host) Root() *Root { return h.roots[0] }

// Done starts the shutdown of the first root context: see Root.Done.
func (h *Host) Done() (finished bool, err error) { return h.roots[0].Done() }

// DoneCalled reports whether the first root context called proxy_done: see Root.DoneCalled.
func (h *Host) DoneCalled() bool { return h.roots[0].DoneCalled() }

// Close ends every root context (proxy_on_done unless Done ran, then proxy_on_delete) and releases
// the instance. Calls still pending are never answered.
func (h *Host) Close(ctx context.Context) error {
	var errs []error
	for _, r := range h.roots {
		errs = append(errs, r.close())
	}
	errs = append(errs, h.module.Close(ctx))
	if h.owned != nil {
		errs = append(errs, h.owned.Close(ctx))
	}
	return errors.Join(errs...)
}

// Tick calls proxy_on_tick on every root context, whatever the tick periods, then Flush.
func (h *Host) Tick() error {
	for _, r := range h.roots {
		if err := r.tick(); err != nil {
			return err
		}
	}
	return h.Flush()
}

// TickPeriod is the period the first root context last set with proxy_set_tick_period_milliseconds.
func (h *Host) TickPeriod() time.Duration { return h.roots[0].tickPeriod }

// NewHTTPStream creates an HTTP context (proxy_on_context_create) under the first root context, with
// per-stream properties such as "response.code", "response.flags", "xds.cluster_name" or
// "upstream.address". A failure of the guest is returned by the stream's next call.
func (h *Host) NewHTTPStream(props map[string][]byte) *HTTPStream {
	return h.roots[0].NewHTTPStream(props)
}

// NewConnection creates a network context under the first root context and calls
// proxy_on_new_connection; props are per-connection properties such as "destination.port" or
// "upstream.address".
func (h *Host) NewConnection(props map[string][]byte) (*Connection, Action, error) {
	return h.roots[0].NewConnection(props)
}

// Flush delivers the HTTP call responses that Config.HTTPCall produced and the proxy_on_queue_ready
// notifications that are waiting. Responses to calls made while flushing wait for the next Flush.
func (h *Host) Flush() error {
	ready := h.ready
	h.ready = nil
	for i, r := range ready {
		if err := h.deliver(r.pendingCall, r.resp); err != nil {
			h.ready = append(ready[i+1:], h.ready...)
			return err
		}
	}
	for _, ev := range h.takeQueueReady() {
		if !ev.root.alive {
			continue
		}
		if _, err := h.call(fnQueueReady, ev.root, nil, uint64(ev.root.id), uint64(ev.id)); err != nil {
			return err
		}
	}
	return nil
}

// PendingHTTPCalls returns the calls waiting for RespondHTTPCall, oldest first.
func (h *Host) PendingHTTPCalls() []HTTPCallRequest {
	out := make([]HTTPCallRequest, 0, len(h.pending))
	for _, c := range h.pending {
		out = append(out, c.req)
	}
	slices.SortFunc(out, func(a, b HTTPCallRequest) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// RespondHTTPCall delivers the response to a pending call with proxy_on_http_call_response.
func (h *Host) RespondHTTPCall(id uint32, r HTTPCallResponse) error {
	c, ok := h.pending[id]
	if !ok {
		return fmt.Errorf("wasmhost: no pending HTTP call %d", id)
	}
	delete(h.pending, id)
	return h.deliver(c, r)
}

// cancelCalls drops the calls made by a deleted context, as Envoy cancels them when it destroys the
// context.
func (h *Host) cancelCalls(contextID uint32) {
	maps.DeleteFunc(h.pending, func(_ uint32, c pendingCall) bool { return c.req.Context == contextID })
	h.ready = slices.DeleteFunc(h.ready, func(r callResult) bool { return r.req.Context == contextID })
}

func (h *Host) deliver(c pendingCall, r HTTPCallResponse) error {
	if r.Failed {
		r = HTTPCallResponse{Failed: true}
	}
	h.callResp = &r
	_, err := h.call(fnHTTPCallResponse, c.root, nil, uint64(c.root.id), uint64(c.req.ID),
		uint64(len(r.Headers)), uint64(len(r.Body)), uint64(len(r.Trailers)))
	h.callResp = nil
	return err
}

// Metrics returns the value of every counter and gauge by name (see Histogram for histograms).
func (h *Host) Metrics() map[string]int64 {
	out := make(map[string]int64, len(h.metrics))
	for _, m := range h.metrics {
		if m.kind != MetricHistogram {
			out[m.name] = m.value
		}
	}
	return out
}

// Histogram returns the values recorded in the named histogram, and whether it is defined.
func (h *Host) Histogram(name string) ([]uint64, bool) {
	id, ok := h.metricIDs[name]
	if !ok || h.metrics[id-1].kind != MetricHistogram {
		return nil, false
	}
	return slices.Clone(h.metrics[id-1].samples), true
}

// Logs returns the plugin's proxy_log calls in order.
func (h *Host) Logs() []LogEntry { return slices.Clone(h.logs) }

// MemoryBytes is the current size of the guest's linear memory.
func (h *Host) MemoryBytes() uint64 { return uint64(h.mem.Size()) }

// LiveContexts counts the contexts created and not yet deleted, root contexts included: an idle Host
// has one.
func (h *Host) LiveContexts() int {
	n := len(h.streams)
	for _, r := range h.roots {
		if r.alive {
			n++
		}
	}
	return n
}

// Shared returns the shared data and queue store of the Host.
func (h *Host) Shared() *Shared { return h.shared }

func (h *Host) takeQueueReady() []queueEvent {
	h.shared.mu.Lock()
	defer h.shared.mu.Unlock()
	q := h.queueReady
	h.queueReady = nil
	return q
}

// tail keeps the end of the guest's output for error messages.
type tail struct{ buf []byte }

const tailMax = 4 << 10

// Write keeps the last tailMax bytes written.
func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailMax {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailMax:]...)
	}
	return len(p), nil
}

func (t *tail) suffix() string {
	s := strings.TrimSpace(string(t.buf))
	if s == "" {
		return ""
	}
	return "\nguest output:\n" + s
}

// guestFn names a guest export the host calls.
type guestFn int

const (
	fnAlloc guestFn = iota
	fnContextCreate
	fnVMStart
	fnConfigure
	fnDone
	fnLog
	fnDelete
	fnTick
	fnQueueReady
	fnHTTPCallResponse
	fnRequestHeaders
	fnRequestBody
	fnRequestTrailers
	fnResponseHeaders
	fnResponseBody
	fnResponseTrailers
	fnNewConnection
	fnDownstreamData
	fnUpstreamData
	fnDownstreamClose
	fnUpstreamClose
	numGuestFns
)

var guestFnNames = [numGuestFns]string{
	"proxy_on_memory_allocate", "proxy_on_context_create", "proxy_on_vm_start", "proxy_on_configure",
	"proxy_on_done", "proxy_on_log", "proxy_on_delete", "proxy_on_tick", "proxy_on_queue_ready",
	"proxy_on_http_call_response", "proxy_on_request_headers", "proxy_on_request_body",
	"proxy_on_request_trailers", "proxy_on_response_headers", "proxy_on_response_body",
	"proxy_on_response_trailers", "proxy_on_new_connection", "proxy_on_downstream_data",
	"proxy_on_upstream_data", "proxy_on_downstream_connection_close", "proxy_on_upstream_connection_close",
}

func (f guestFn) String() string { return guestFnNames[f] }
