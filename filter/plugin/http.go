package plugin

import (
	"encoding/binary"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshtrace/meshtrace/filter/extract"
	"github.com/meshtrace/meshtrace/filter/policy"
	"github.com/meshtrace/meshtrace/filter/span"
	tc "github.com/meshtrace/meshtrace/filter/tracecontext"
)

// maxAttrValue bounds the request-derived values (path, user agent, ...) copied into span attributes.
const maxAttrValue = 1024

// maxHTTPAttrs is the number of non-tag attributes an HTTP span can carry.
const maxHTTPAttrs = 16

// viaUpstream is Envoy's response code details for a response that came from the upstream.
const viaUpstream = "via_upstream"

// httpContext records the span of one HTTP stream. It never pauses, delays or fails the stream.
type httpContext struct {
	types.DefaultHttpContext
	root    *rootContext
	span    span.Span
	active  bool        // a span is being recorded
	headers [][2]string // request headers, valid during OnHttpRequestHeaders
	baggage tc.Baggage
	// external: the request goes to a host of the policy's egress.hosts, outside the mesh; the filter then
	// adds no envoy_header copies and no propagated baggage members to it, and removes any it carries.
	external bool
	// clientForwarded: client.address came from X-Forwarded-For, so the peer address does not name it.
	clientForwarded bool
}

// OnHttpRequestHeaders joins or starts the trace, evaluates the tag rules and rewrites the propagation
// headers so the next hop becomes a child of this stream's span. In envoy mode it only evaluates the tag
// rules: Envoy's tracer records the span and owns the trace context headers.
func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	r := h.root
	envoyMode := r.policy.Trace.Mode == policy.TraceModeEnvoy
	if envoyMode && len(r.policy.Tags) == 0 {
		return types.ActionContinue
	}
	var start uint64
	if !envoyMode {
		start = hostNow()
	}
	headers, err := proxywasm.GetHttpRequestHeaders()
	if err != nil {
		return types.ActionContinue
	}
	h.headers = headers
	defer func() { h.headers = nil }()
	if len(r.policy.Egress.Hosts) > 0 {
		host, _ := splitHostPort(h.header(":authority"))
		h.external = r.policy.Egress.LeavesMesh(strings.ToLower(host))
	}
	if envoyMode {
		h.tagOnly(true)
		return types.ActionContinue
	}
	dir := r.streamDirection()
	parent, joined := h.parentContext()
	if !joined && !r.startNew(dir) {
		h.tagOnly(false) // no span, no tags; but the trust boundary holds
		return types.ActionContinue
	}
	s := &h.span
	s.StartUnixNano = start
	s.Kind = spanKind(dir)
	s.SpanID = spanID(r.ids.next())
	s.Flags = uint32(tc.FlagSampled)
	if joined {
		s.TraceID, s.ParentSpanID, s.TraceState, s.Flags = parent.TraceID, parent.SpanID, parent.TraceState, uint32(parent.Flags)
	} else {
		s.TraceID = traceID(r.ids.next(), r.ids.next())
	}
	h.active = true
	h.requestAttributes(dir)
	h.applyTags(true)
	h.propagate(parent, joined)
	h.propagateBaggage()
	return types.ActionContinue
}

// tagOnly runs the tag rules of a stream without a span: with evaluate (envoy mode) for their envoy_header
// copies and baggage; without (a filter-mode stream that is not traced) only to enforce the trust boundary,
// removing the client's envoy_header copies and, when baggage is not trusted, its propagated members.
func (h *httpContext) tagOnly(evaluate bool) {
	if len(h.root.policy.Tags) == 0 {
		return
	}
	s := &h.span
	s.Attrs = h.root.takeAttrs()
	h.applyTags(evaluate)
	h.propagateBaggage()
	h.root.putAttrs(s.Attrs)
	s.Attrs = nil
}

// parentContext reads the incoming trace context: with trace.b3, B3 single then multi first (Envoy's Zipkin
// tracer rewrites only those, so behind it they name the previous hop's span while traceparent may still
// name the filter's original id there); then W3C traceparent.
func (h *httpContext) parentContext() (tc.SpanContext, bool) {
	if h.root.policy.Trace.B3 {
		if c, ok := b3Context(h.header); ok {
			return c, true
		}
	}
	if c, ok := tc.ParseTraceparent(h.header(tc.HeaderTraceparent)); ok {
		c.TraceState = tc.SanitizeTracestate(h.header(tc.HeaderTracestate))
		return c, true
	}
	return tc.SpanContext{}, false
}

// b3Context parses the B3 single header, else the multi headers, read with get.
func b3Context(get func(string) string) (tc.SpanContext, bool) {
	if v := get(tc.HeaderB3); v != "" {
		return tc.ParseB3Single(v)
	}
	return tc.ParseB3Multi(get(tc.HeaderB3TraceID), get(tc.HeaderB3SpanID), get(tc.HeaderB3Sampled), get(tc.HeaderB3Flags))
}

// tracerContext returns the trace context Envoy's own tracer injected into the request after the filter
// ran, when it differs from the one the filter wrote: the router rewrites the request's traceparent
// (OpenTelemetry tracer) or B3 headers (Zipkin tracer) in place, and the log phase reads them back (e). The
// filter's span then takes those ids, so it is the very span the next hop names as its parent, in the
// tracer's trace: one connected trace per request whatever the tracer samples or where it sends its spans.
func (h *httpContext) tracerContext(e *streamEnd) (tc.SpanContext, bool) {
	s := &h.span
	differs := func(c tc.SpanContext) bool { return c.TraceID != s.TraceID || c.SpanID != s.SpanID }
	if c, ok := tc.ParseTraceparent(e.traceparent); ok && differs(c) {
		return c, true
	}
	if !h.root.policy.Trace.B3 {
		return tc.SpanContext{}, false
	}
	var c tc.SpanContext
	ok := false
	if e.b3 != "" {
		c, ok = tc.ParseB3Single(e.b3)
	} else if e.b3SpanID != "" {
		c, ok = tc.ParseB3Multi(e.b3TraceID, e.b3SpanID, e.b3Sampled, e.b3Flag)
	}
	if ok && differs(c) {
		return c, true
	}
	return tc.SpanContext{}, false
}

// requestAttributes names the span ("{method} {route}", or the method alone when no route of the policy
// matches) and records the OTel HTTP request attributes.
func (h *httpContext) requestAttributes(dir policy.Direction) {
	s := &h.span
	method := h.header(":method")
	s.Name = method
	if s.Name == "" {
		s.Name = "HTTP"
	}
	path := h.header(":path")
	path, _, _ = strings.Cut(path, "?")
	s.Attrs = append(h.root.takeAttrs(),
		span.String("http.request.method", method),
		span.String("url.path", clip(path)),
	)
	// The route, when a template of the policy matches, names the span ("GET /api/orders/{id}", the name
	// built at parse time); never the path itself, whose cardinality would flood the operation lists.
	if rt := h.root.policy.Route(path); rt != nil {
		s.Name = rt.SpanName(method)
		s.Attrs = append(s.Attrs, span.String("http.route", rt.Template))
	}
	if v := h.header(":scheme"); v != "" {
		s.Attrs = append(s.Attrs, span.String("url.scheme", v))
	}
	if host, port := splitHostPort(h.header(":authority")); host != "" {
		s.Attrs = append(s.Attrs, span.String("server.address", clip(host)))
		if port > 0 {
			s.Attrs = append(s.Attrs, span.Int("server.port", port))
		}
	}
	if v := h.header("user-agent"); v != "" {
		s.Attrs = append(s.Attrs, span.String("user_agent.original", clip(v)))
	}
	// The client is the first X-Forwarded-For hop, else the peer (source.address), which the log phase
	// reads with the rest of the stream's end.
	h.clientForwarded = false
	if dir != policy.DirectionOutbound {
		if xff := h.header("x-forwarded-for"); xff != "" {
			first, _, _ := strings.Cut(xff, ",")
			if client := strings.TrimSpace(first); client != "" {
				s.Attrs = append(s.Attrs, span.String("client.address", clip(client)))
				h.clientForwarded = true
			}
		}
	}
}

// applyTags evaluates the policy's tag rules (when evaluate; otherwise every rule has no value): span
// attribute, Envoy header copy. The Envoy header belongs to the filter: a copy the client sent is removed,
// then the rule's value (if any) is set, so Envoy's custom tags never read a client-chosen value.
func (h *httpContext) applyTags(evaluate bool) {
	tags := h.root.policy.Tags
	if len(tags) == 0 {
		return
	}
	h.baggage.Parse(h.header(tc.HeaderBaggage))
	for i := range tags {
		t := &tags[i]
		v, ok := "", false
		if evaluate {
			v, ok = tagValue(t, h)
		}
		if ok {
			h.span.Attrs = append(h.span.Attrs, span.String(t.Attribute, v))
		}
		if t.EnvoyHeader == "" {
			continue
		}
		if _, sent := h.lookup(t.EnvoyHeader); sent {
			// Removed first even when a value follows: a client may have sent several copies.
			if err := proxywasm.RemoveHttpRequestHeader(t.EnvoyHeader); err != nil {
				logProblem("cannot remove "+t.EnvoyHeader, err)
			}
		}
		if ok && !h.external {
			if err := proxywasm.ReplaceHttpRequestHeader(t.EnvoyHeader, v); err != nil {
				logProblem("cannot set "+t.EnvoyHeader, err)
			}
		}
	}
}

// value implements valueSource over the request headers.
func (h *httpContext) value(src policy.Source) (string, bool) {
	switch src.Kind {
	case policy.SourceHeader:
		return h.lookup(src.Name)
	case policy.SourceBaggage:
		if !h.root.trustBaggage {
			return "", false
		}
		return h.baggage.Get(src.Name)
	case policy.SourceCookie:
		return extract.Cookie(h.header("cookie"), src.Name)
	case policy.SourceQuery:
		return extract.Query(h.header(":path"), src.Name)
	case policy.SourceJWTClaim:
		return extract.JWTClaim(h.header("authorization"), src.Name)
	}
	return "", false
}

// propagate rewrites traceparent (and the B3 headers that arrived) to this stream's span.
func (h *httpContext) propagate(parent tc.SpanContext, joined bool) {
	s := &h.span
	own := tc.SpanContext{TraceID: s.TraceID, SpanID: s.SpanID, Flags: byte(s.Flags), TraceState: s.TraceState}
	r := h.root
	r.scratch = tc.AppendTraceparent(r.scratch[:0], own)
	replaceRequestHeader(tc.HeaderTraceparent, r.scratch)
	if joined && r.policy.Trace.B3 {
		if h.header(tc.HeaderB3) != "" {
			r.scratch = tc.AppendB3Single(r.scratch[:0], own)
			replaceRequestHeader(tc.HeaderB3, r.scratch)
		} else if h.header(tc.HeaderB3SpanID) != "" {
			r.scratch = tc.AppendHexSpanID(r.scratch[:0], own.SpanID)
			replaceRequestHeader(tc.HeaderB3SpanID, r.scratch)
			r.scratch = tc.AppendHexSpanID(r.scratch[:0], parent.SpanID)
			replaceRequestHeader(tc.HeaderB3ParentID, r.scratch)
		}
	}
}

// propagateBaggage writes the values of propagated tags (from the span's attributes) into the baggage
// header. When baggage is not trusted, the members of propagated tags that arrived are dropped first, so
// only this proxy's own values go on; so is an incoming header over the W3C limits (it cannot be checked
// member by member). The header is rewritten only when it changes.
func (h *httpContext) propagateBaggage() {
	r := h.root
	changed := false
	if !r.trustBaggage && r.propagates {
		if raw := h.header(tc.HeaderBaggage); len(raw) > tc.MaxBaggageBytes || len(h.baggage.Members) >= tc.MaxBaggageMembers {
			changed = true
		}
	}
	for i := range r.policy.Tags {
		t := &r.policy.Tags[i]
		if !t.Propagate {
			continue
		}
		if !r.trustBaggage || h.external {
			changed = h.baggage.Delete(t.Attribute) || changed
		}
		if h.external {
			continue
		}
		if v, ok := attrValue(h.span.Attrs, t.Attribute); ok {
			if old, had := h.baggage.Get(t.Attribute); !had || old != v {
				changed = h.baggage.Set(t.Attribute, v) || changed
			}
		}
	}
	if !changed {
		return
	}
	if len(h.baggage.Members) == 0 {
		if err := proxywasm.RemoveHttpRequestHeader(tc.HeaderBaggage); err != nil {
			logProblem("cannot remove "+tc.HeaderBaggage, err)
		}
		return
	}
	r.scratch = h.baggage.AppendTo(r.scratch[:0])
	replaceRequestHeader(tc.HeaderBaggage, r.scratch)
}

// OnHttpStreamDone (the log phase) finishes the span with what Envoy knows about the stream and submits it,
// then gives the context back to the root for the next stream: the SDK makes no call into an HTTP context
// after this one (proxy_on_done and proxy_on_delete only drop its id), and a context made per stream was
// two guest allocations (it and its baggage members) of a handful per request.
func (h *httpContext) OnHttpStreamDone() {
	if h.active {
		h.finish()
	}
	h.root.releaseHTTP(h)
}

// finish finishes and submits the stream's span.
func (h *httpContext) finish() {
	h.active = false
	s := &h.span
	s.EndUnixNano = hostNow()
	e := h.root.readEnd(s.Kind)
	if c, ok := h.tracerContext(&e); ok {
		s.TraceID, s.SpanID = c.TraceID, c.SpanID
		h.root.noteTracer()
	}
	code := e.code
	if code > 0 {
		s.Attrs = append(s.Attrs, span.Int("http.response.status_code", code))
	}
	if e.cluster != "" {
		s.Attrs = append(s.Attrs, span.String("envoy.upstream.cluster", e.cluster))
	}
	peer := e.peer
	if s.Kind == span.KindClient {
		peer = e.upstream
	} else if peer != "" && !h.clientForwarded {
		host, _ := splitHostPort(peer)
		s.Attrs = append(s.Attrs, span.String("client.address", clip(host)))
	}
	if addr, port := splitHostPort(peer); addr != "" {
		s.Attrs = append(s.Attrs, span.String("network.peer.address", addr))
		if port > 0 {
			s.Attrs = append(s.Attrs, span.Int("network.peer.port", port))
		}
	}
	if e.flags != 0 {
		s.Attrs = append(s.Attrs, span.String("envoy.response_flags", responseFlags(e.flags)))
	}
	details := e.details
	local := details != "" && details != viaUpstream
	if local {
		s.Attrs = append(s.Attrs, span.String("envoy.response_code_details", details))
	}
	switch {
	case code >= 500:
		s.Status = span.StatusError
	case local:
		s.Status, s.StatusMessage = span.StatusError, details
	case code >= 400 && s.Kind == span.KindClient:
		s.Status = span.StatusError
	}
	h.root.submit(s)
	h.root.putAttrs(s.Attrs)
	s.Attrs = nil
}

// header returns the first request header called name ("" when absent).
func (h *httpContext) header(name string) string {
	v, _ := h.lookup(name)
	return v
}

func (h *httpContext) lookup(name string) (string, bool) {
	for _, kv := range h.headers {
		if kv[0] == name {
			return kv[1], true
		}
	}
	return "", false
}

func attrValue(attrs []span.Attr, key string) (string, bool) {
	for i := range attrs {
		if attrs[i].Key == key {
			return attrs[i].Str, true
		}
	}
	return "", false
}

func spanID(v uint64) span.SpanID {
	var id span.SpanID
	binary.BigEndian.PutUint64(id[:], v)
	return id
}

func traceID(hi, lo uint64) span.TraceID {
	var id span.TraceID
	binary.BigEndian.PutUint64(id[:8], hi)
	binary.BigEndian.PutUint64(id[8:], lo)
	return id
}
