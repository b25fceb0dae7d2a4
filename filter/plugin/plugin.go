// Package plugin is the proxy-wasm side of the filter: the VM and root (plugin) context, which loads the
// tagging policy, knows the workload's identity and owns the span exporter, and the stream contexts that
// record one span per HTTP stream (and, through newConnection, per TCP connection).
package plugin

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshtrace/meshtrace/filter/policy"
	"github.com/meshtrace/meshtrace/filter/span"
)

// Version is the filter version reported as the instrumentation scope version.
const Version = "0.1.0"

// ScopeName is the instrumentation scope of every exported span.
const ScopeName = "meshtrace-filter"

// NewVMContext returns the VM context to hand to proxywasm.SetVMContext.
func NewVMContext() types.VMContext { return &vmContext{} }

type vmContext struct {
	types.DefaultVMContext
}

// NewPluginContext creates the root context of one plugin configuration.
func (*vmContext) NewPluginContext(contextID uint32) types.PluginContext {
	return &rootContext{contextID: contextID}
}

// rootContext is the per-plugin state shared by all stream contexts of a VM.
type rootContext struct {
	types.DefaultPluginContext
	contextID uint32
	policy    *policy.Policy
	direction policy.Direction // resolved at start (never client); DirectionAuto: read per stream
	// trustBaggage: incoming baggage is read by tag rules and its propagated members forwarded.
	trustBaggage bool
	propagates   bool // some tag rule has propagate
	ids          idSource
	exporter     *exporter
	kind         pluginKind     // HTTP or network filter, resolved on the first stream (see tcp.go)
	scratch      []byte         // header values being written to the host (a VM runs one callback at a time)
	freeAttrs    [][]span.Attr  // attribute slices of submitted HTTP spans, for reuse
	freeHTTP     []*httpContext // contexts of finished HTTP streams, for reuse
	tracerSeen   bool           // Envoy's tracer was seen injecting its context (logged once)
	endExprs     [2]endExpr     // the stream end expressions, server and client kind (see readEnd)
}

// noteTracer logs, once per plugin, that Envoy's own tracer rewrites the trace context after the filter and
// that the filter's spans therefore take the tracer's ids.
func (r *rootContext) noteTracer() {
	if r.tracerSeen {
		return
	}
	r.tracerSeen = true
	proxywasm.LogInfo("meshtrace: Envoy's tracer rewrites the trace context after this filter: its HTTP spans take the tracer's trace and span ids, so each request stays one trace (send Envoy's own spans elsewhere, or use trace.mode envoy)")
}

// OnPluginStart loads and validates the policy. An invalid policy fails the start with one log line that
// names the field and the reason.
func (r *rootContext) OnPluginStart(int) types.OnPluginStartStatus {
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil && err != types.ErrorStatusNotFound {
		proxywasm.LogCriticalf("meshtrace: cannot read plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p, err := policy.Parse(data)
	if err != nil {
		proxywasm.LogCriticalf("meshtrace: invalid policy: %v", err)
		return types.OnPluginStartStatusFailed
	}
	r.policy = p
	// auto and client resolve here, once: at an Istio gateway (whose listeners say outbound, yet it is the
	// edge) both run as gateway; elsewhere client runs as outbound and auto stays, read per stream.
	r.direction = p.Direction
	if r.direction.NeedsNode() {
		r.direction = r.direction.Resolve(istioGateway())
	}
	r.trustBaggage = p.TrustsBaggageAt(r.direction)
	for i := range p.Tags {
		r.propagates = r.propagates || p.Tags[i].Propagate
	}
	r.ids.seed()
	res := resourceFor(p.Service)
	r.exporter = newExporter(p.Export, res, r.ids.next())
	if err := proxywasm.SetTickPeriodMilliSeconds(uint32(p.Export.FlushIntervalMS)); err != nil {
		proxywasm.LogWarnf("meshtrace: cannot set tick period: %v", err)
	}
	// Whether Envoy's own tracer is on cannot be told from here (proxy-wasm exposes no attribute for the
	// connection manager's tracing configuration), so filter mode next to an active tracer is not warned
	// about: see docs/filter.md.
	proxywasm.LogInfof("meshtrace: started for service %q with %d tag rules, %d routes, direction %s, trace mode %s, baggage trusted: %t",
		serviceName(res), len(p.Tags), len(p.Routes), r.direction, p.Trace.Mode, r.trustBaggage)
	return types.OnPluginStartStatusOK
}

// OnTick sends what is buffered and retries failed exports.
func (r *rootContext) OnTick() { r.exporter.tick(hostNow()) }

// OnQueueReady runs a flush requested by a stream whose span filled the batch.
func (r *rootContext) OnQueueReady(queueID uint32) { r.exporter.queueReady(queueID) }

// NewHttpContext starts the span of a new HTTP stream. A network filter has none: the SDK makes every
// stream an HTTP stream when this returns a context, so it must return nil for connections.
func (r *rootContext) NewHttpContext(contextID uint32) types.HttpContext {
	if r.isNetworkFilter() {
		return nil
	}
	if n := len(r.freeHTTP); n > 0 {
		h := r.freeHTTP[n-1]
		r.freeHTTP = r.freeHTTP[:n-1]
		return h
	}
	return &httpContext{root: r}
}

// maxPooled bounds each of the root's free lists (stream contexts, attribute slices): they hold what the
// most streams open at once used, up to this many, so that a burst of concurrent streams does not pin its
// memory for the life of the VM.
const maxPooled = 1024

// releaseHTTP keeps the context of a finished stream for NewHttpContext, emptied; its baggage members'
// memory is kept. At most maxPooled are kept.
func (r *rootContext) releaseHTTP(h *httpContext) {
	if len(r.freeHTTP) >= maxPooled {
		return
	}
	b := h.baggage
	clear(b.Members)
	b.Members = b.Members[:0]
	*h = httpContext{root: r, baggage: b}
	r.freeHTTP = append(r.freeHTTP, h)
}

// NewTcpContext returns the network tracing context of a new TCP connection (see tcp.go).
func (r *rootContext) NewTcpContext(contextID uint32) types.TcpContext {
	return newConnection(r, contextID)
}

// submit hands a finished span to the exporter. Stream contexts of every kind call it.
func (r *rootContext) submit(s *span.Span) { r.exporter.submit(s) }

// takeAttrs returns an empty attribute slice with room for every attribute an HTTP span can get, reusing
// one of a submitted span when there is one: allocations are costly in a Wasm guest.
func (r *rootContext) takeAttrs() []span.Attr {
	if n := len(r.freeAttrs); n > 0 {
		a := r.freeAttrs[n-1]
		r.freeAttrs = r.freeAttrs[:n-1]
		return a
	}
	return make([]span.Attr, 0, maxHTTPAttrs+len(r.policy.Tags))
}

// putAttrs keeps the attribute slice of a submitted span (already encoded) for takeAttrs, at most maxPooled
// of them.
func (r *rootContext) putAttrs(a []span.Attr) {
	if len(r.freeAttrs) >= maxPooled {
		return
	}
	clear(a) // drop references to request data
	r.freeAttrs = append(r.freeAttrs, a[:0])
}

// startNew reports whether a stream without incoming trace context starts a new trace.
func (r *rootContext) startNew(dir policy.Direction) bool {
	if r.policy.Trace.StartNew != nil {
		return *r.policy.Trace.StartNew
	}
	return dir != policy.DirectionOutbound
}

// streamDirection resolves the direction of the current stream: the one fixed at start, or, for auto
// only, Envoy's listener_direction read from the stream.
func (r *rootContext) streamDirection() policy.Direction {
	if r.direction != policy.DirectionAuto {
		return r.direction
	}
	v, ok := propertyInt(pathListenerDirection)
	if !ok {
		v, _ = propertyInt(pathLegacyDirection)
	}
	switch v {
	case 1:
		return policy.DirectionInbound
	case 2:
		return policy.DirectionOutbound
	}
	return policy.DirectionAuto
}

// spanKind maps a direction to the kind of the span the proxy records for it.
func spanKind(dir policy.Direction) span.Kind {
	if dir == policy.DirectionOutbound {
		return span.KindClient
	}
	return span.KindServer
}

// OnPluginDone sends the spans still buffered before the plugin goes away; the host is told when done.
func (r *rootContext) OnPluginDone() bool { return r.exporter == nil || r.exporter.drain() }
