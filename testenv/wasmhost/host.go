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

// rootContextID is the id of the single root (plugin) context of a Host.
const rootContextID = 1

// Host is one plugin instance: a VM with one root context and its stream contexts, driven
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

	err          error // first guest failure; the instance is unusable afterwards
	output       tail  // end of the guest's stdout and stderr, where Go and TinyGo print panics
	rootAlive    bool
	configuring  bool // inside proxy_on_configure, where the plugin configuration is readable
	rootDone     bool // the plugin called proxy_done
	doneStarted  bool // proxy_on_done ran on the root context
	doneFinished bool // and returned true
	nextID       uint32
	streams      map[uint32]*stream
	active       *stream // the context host calls act on; nil is the root context
	tickPeriod   time.Duration
	logs         []LogEntry

	metrics   []metric
	metricIDs map[string]uint32

	nextCallID uint32
	pending    map[uint32]HTTPCallRequest
	ready      []callResult
	callResp   *HTTPCallResponse // the response being delivered, read by the buffer and map calls

	queueReady []uint32 // queues with new items, guarded by shared.mu (other hosts enqueue)
}

type metric struct {
	name    string
	kind    MetricType
	value   int64
	samples []uint64
}

type callResult struct {
	id, context uint32
	resp        HTTPCallResponse
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
		nextID:    rootContextID + 1,
		streams:   map[uint32]*stream{},
		metricIDs: map[string]uint32{},
		keys:      map[string]string{},
		pending:   map[uint32]HTTPCallRequest{},
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
	if err := h.start(); err != nil {
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
}

func (h *Host) start() error {
	if _, err := h.call(fnContextCreate, nil, rootContextID, 0); err != nil {
		return err
	}
	h.rootAlive = true
	if ok, err := h.call(fnVMStart, nil, rootContextID, uint64(len(h.cfg.VMConfig))); err != nil {
		return err
	} else if ok == 0 {
		return fmt.Errorf("wasmhost: proxy_on_vm_start returned false%s", h.problemLogs())
	}
	h.configuring = true
	ok, err := h.call(fnConfigure, nil, rootContextID, uint64(len(h.cfg.PluginConfig)))
	h.configuring = false
	if err != nil {
		return err
	}
	if ok == 0 {
		return fmt.Errorf("wasmhost: proxy_on_configure returned false%s", h.problemLogs())
	}
	return nil
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

// call runs a guest export on behalf of context s (nil: the root context) and returns its first result.
// After a trap or exit the Host is unusable and every later call returns the same error.
func (h *Host) call(f guestFn, s *stream, params ...uint64) (uint64, error) {
	if h.err != nil {
		return 0, h.err
	}
	fn := h.fn[f]
	if fn == nil {
		return 0, fmt.Errorf("wasmhost: the plugin does not export %s", f)
	}
	prev := h.active
	h.active = s
	n := copy(h.stack[:], params)
	err := fn.CallWithStack(h.ctx, h.stack[:max(n, 1)])
	h.active = prev
	if err != nil {
		h.err = fmt.Errorf("wasmhost: %s: %w%s", f, err, h.output.suffix())
		return 0, h.err
	}
	return h.stack[0], nil
}

// Err returns the guest failure (trap or exit) that made the Host unusable, if any.
func (h *Host) Err() error { return h.err }

// Done starts the shutdown of the root context with proxy_on_done, once. It reports whether the plugin
// finished at once; if not, it finishes later by calling proxy_done (see DoneCalled), typically after
// the responses to its last HTTP calls, which the test can still deliver. Envoy waits for that before
// deleting the root context.
func (h *Host) Done() (finished bool, err error) {
	if h.doneStarted {
		return h.doneFinished || h.rootDone, h.err
	}
	h.doneStarted = true
	r, err := h.call(fnDone, nil, rootContextID)
	h.doneFinished = r != 0
	return h.doneFinished, err
}

// DoneCalled reports whether the plugin called proxy_done, ending a shutdown Done left unfinished.
func (h *Host) DoneCalled() bool { return h.rootDone }

// Close ends the root context (proxy_on_done unless Done ran, then proxy_on_delete) and releases the
// instance. Calls still pending are never answered.
func (h *Host) Close(ctx context.Context) error {
	var errs []error
	if h.rootAlive && h.err == nil {
		if _, err := h.Done(); err != nil {
			errs = append(errs, err)
		} else if _, err := h.call(fnDelete, nil, rootContextID); err != nil {
			errs = append(errs, err)
		}
	}
	h.rootAlive = false
	errs = append(errs, h.module.Close(ctx))
	if h.owned != nil {
		errs = append(errs, h.owned.Close(ctx))
	}
	return errors.Join(errs...)
}

// Tick calls proxy_on_tick on the root context, whatever the tick period, then Flush.
func (h *Host) Tick() error {
	if _, err := h.call(fnTick, nil, rootContextID); err != nil {
		return err
	}
	return h.Flush()
}

// TickPeriod is the period last set with proxy_set_tick_period_milliseconds.
func (h *Host) TickPeriod() time.Duration { return h.tickPeriod }

// Flush delivers the HTTP call responses that Config.HTTPCall produced and the proxy_on_queue_ready
// notifications that are waiting. Responses to calls made while flushing wait for the next Flush.
func (h *Host) Flush() error {
	ready := h.ready
	h.ready = nil
	for i, r := range ready {
		if err := h.deliver(r.id, r.resp); err != nil {
			h.ready = append(ready[i+1:], h.ready...)
			return err
		}
	}
	queues := h.takeQueueReady()
	for _, id := range queues {
		if _, err := h.call(fnQueueReady, nil, rootContextID, uint64(id)); err != nil {
			return err
		}
	}
	return nil
}

// PendingHTTPCalls returns the calls waiting for RespondHTTPCall, oldest first.
func (h *Host) PendingHTTPCalls() []HTTPCallRequest {
	out := slices.Collect(maps.Values(h.pending))
	slices.SortFunc(out, func(a, b HTTPCallRequest) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// RespondHTTPCall delivers the response to a pending call with proxy_on_http_call_response.
func (h *Host) RespondHTTPCall(id uint32, r HTTPCallResponse) error {
	if _, ok := h.pending[id]; !ok {
		return fmt.Errorf("wasmhost: no pending HTTP call %d", id)
	}
	delete(h.pending, id)
	return h.deliver(id, r)
}

// cancelCalls drops the calls made by a deleted context, as Envoy cancels them when it destroys the
// context.
func (h *Host) cancelCalls(contextID uint32) {
	maps.DeleteFunc(h.pending, func(_ uint32, r HTTPCallRequest) bool { return r.Context == contextID })
	h.ready = slices.DeleteFunc(h.ready, func(r callResult) bool { return r.context == contextID })
}

func (h *Host) deliver(id uint32, r HTTPCallResponse) error {
	if r.Failed {
		r = HTTPCallResponse{Failed: true}
	}
	h.callResp = &r
	_, err := h.call(fnHTTPCallResponse, nil, rootContextID, uint64(id),
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

// LiveContexts counts the contexts created and not yet deleted, the root context included: an idle
// Host has one.
func (h *Host) LiveContexts() int {
	n := len(h.streams)
	if h.rootAlive {
		n++
	}
	return n
}

// Shared returns the shared data and queue store of the Host.
func (h *Host) Shared() *Shared { return h.shared }

func (h *Host) takeQueueReady() []uint32 {
	h.shared.mu.Lock()
	defer h.shared.mu.Unlock()
	q := h.queueReady
	h.queueReady = nil
	return q
}

// tail keeps the end of the guest's output for error messages.
type tail struct{ buf []byte }

const tailMax = 4 << 10

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
