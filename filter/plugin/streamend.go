package plugin

import (
	"encoding/binary"
	"errors"
	"strconv"
	"unsafe"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/meshtrace/meshtrace/filter/span"
	tc "github.com/meshtrace/meshtrace/filter/tracecontext"
)

// streamEnd is what the log phase reads from Envoy about a finished HTTP stream. Empty strings and zero
// numbers stand for values Envoy does not have.
type streamEnd struct {
	code     int64  // response.code
	flags    uint64 // response.flags
	details  string // response.code_details
	cluster  string // xds.cluster_name
	peer     string // source.address (server spans)
	upstream string // upstream.address (client spans)
	// The request's trace context headers as they are after the router ran: Envoy's tracer, when on,
	// rewrites them in place (see tracerContext). The B3 ones only with trace.b3.
	traceparent                                string
	b3, b3TraceID, b3SpanID, b3Sampled, b3Flag string
}

// endExpr is a CEL expression that evaluates, in one expr_evaluate call (an Envoy foreign function),
// to a map of everything streamEnd holds for a stream of one kind, so that the log phase makes one host
// call where reading each property and header makes six or seven (docs/filter.md prices both). Envoy
// serializes a CEL map as proxy-wasm pairs; a value that Envoy does not have (no upstream, no response)
// fails the whole evaluation, and the stream is then read one value at a time. An Envoy built without
// the CEL parser, or one that serializes maps otherwise, disables the expression at its first use.
type endExpr struct {
	state  exprState
	token  []byte // expr_create's token
	keys   []string
	logged bool // its first use was logged
}

type exprState uint8

const (
	exprUntried exprState = iota
	exprReady
	exprUnavailable
)

// Keys of the expression's map, one letter each to keep the serialized pairs short.
const (
	keyCode     = "c"
	keyFlags    = "f"
	keyDetails  = "d"
	keyCluster  = "k"
	keyPeer     = "s"
	keyUpstream = "u"
	keyTP       = "t"
	keyB3       = "b"
	keyB3Trace  = "bt"
	keyB3Span   = "bs"
	keyB3Sample = "bp"
	keyB3Flags  = "bf"
)

// endExprSource returns the expression for a stream of kind, and the keys of its map. The B3 headers are
// optional (they arrive only from Zipkin-instrumented clients), so they are read under `in` guards.
func endExprSource(kind span.Kind, b3 bool) (string, []string) {
	src := "{'c': response.code, 'f': response.flags, 'd': response.code_details, 'k': xds.cluster_name, "
	keys := []string{keyCode, keyFlags, keyDetails, keyCluster}
	if kind == span.KindClient {
		src += "'u': upstream.address, "
		keys = append(keys, keyUpstream)
	} else {
		src += "'s': source.address, "
		keys = append(keys, keyPeer)
	}
	src += "'t': request.headers['" + tc.HeaderTraceparent + "']"
	keys = append(keys, keyTP)
	if b3 {
		for _, h := range []struct{ key, name string }{
			{keyB3, tc.HeaderB3}, {keyB3Trace, tc.HeaderB3TraceID}, {keyB3Span, tc.HeaderB3SpanID},
			{keyB3Sample, tc.HeaderB3Sampled}, {keyB3Flags, tc.HeaderB3Flags},
		} {
			src += ", '" + h.key + "': ('" + h.name + "' in request.headers ? request.headers['" + h.name + "'] : '')"
			keys = append(keys, h.key)
		}
	}
	return src + "}", keys
}

// errEndFormat is a result of expr_evaluate that is not the proxy-wasm pairs of the expected keys.
var errEndFormat = errors.New("expr_evaluate result is not the expected map")

// parseEnd decodes an evaluated endExpr: proxy-wasm pairs (a little-endian uint32 count, then a key size
// and a value size per pair, then each key and value followed by a NUL), strings as their bytes, the two
// integers as 8 little-endian bytes. It accepts exactly the keys of the expression, each once. The
// strings share b.
func parseEnd(b []byte, keys []string) (streamEnd, error) {
	var e streamEnd
	if len(b) < 4 {
		return e, errEndFormat
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n != len(keys) || len(b) < 4+8*n {
		return e, errEndFormat
	}
	sizes, data := b[4:4+8*n], b[4+8*n:]
	var seen uint32 // one bit per key: an expression has at most 11
	for i := range n {
		ks, vs := int(binary.LittleEndian.Uint32(sizes[8*i:])), int(binary.LittleEndian.Uint32(sizes[8*i+4:]))
		if ks+vs+2 > len(data) || data[ks] != 0 || data[ks+1+vs] != 0 {
			return e, errEndFormat
		}
		key, val := data[:ks], data[ks+1:ks+1+vs]
		data = data[ks+vs+2:]
		j := indexOf(keys, key)
		if j < 0 || seen&(1<<j) != 0 {
			return e, errEndFormat
		}
		seen |= 1 << j
		if err := e.set(keys[j], val); err != nil {
			return e, err
		}
	}
	if len(data) != 0 {
		return e, errEndFormat
	}
	return e, nil
}

// set stores one evaluated value.
func (e *streamEnd) set(key string, v []byte) error {
	if key == keyCode || key == keyFlags {
		if len(v) != 8 {
			return errEndFormat
		}
		n := binary.LittleEndian.Uint64(v)
		if key == keyCode {
			e.code = int64(n)
		} else {
			e.flags = n
		}
		return nil
	}
	var s string
	if len(v) > 0 {
		s = unsafe.String(&v[0], len(v))
	}
	switch key {
	case keyDetails:
		e.details = s
	case keyCluster:
		e.cluster = s
	case keyPeer:
		e.peer = s
	case keyUpstream:
		e.upstream = s
	case keyTP:
		e.traceparent = s
	case keyB3:
		e.b3 = s
	case keyB3Trace:
		e.b3TraceID = s
	case keyB3Span:
		e.b3SpanID = s
	case keyB3Sample:
		e.b3Sampled = s
	case keyB3Flags:
		e.b3Flag = s
	}
	return nil
}

// indexOf returns the index of k among keys, or -1; k is compared in place (a conversion to string would
// allocate in the guest on every stream).
func indexOf(keys []string, k []byte) int {
	if len(k) == 0 {
		return -1
	}
	ks := unsafe.String(&k[0], len(k))
	for i, key := range keys {
		if key == ks {
			return i
		}
	}
	return -1
}

// endResultLend is the room lent to the host for the stream end expression's result (a few hundred bytes;
// a larger one is allocated as usual).
const endResultLend = 4 << 10

// readEnd reads the end of a stream of kind: with one expr_evaluate when Envoy offers it, else (and for
// a stream that lacks one of the values) one property or header at a time.
func (r *rootContext) readEnd(kind span.Kind) streamEnd {
	x := &r.endExprs[kindIndex(kind)]
	if x.state == exprUntried {
		r.createEndExpr(x, kind)
	}
	if x.state == exprReady {
		// The result goes into the lent buffer: its strings are read, and copied into the span's encoding,
		// before this stream's log phase ends.
		lendNext(endResultLend)
		b, err := proxywasm.CallForeignFunction("expr_evaluate", x.token)
		lendDone()
		if err == nil {
			e, err := parseEnd(b, x.keys)
			if err == nil {
				if !x.logged {
					x.logged = true
					proxywasm.LogInfo("meshtrace: reading the end of each stream with one expression (expr_evaluate)")
				}
				return e
			}
			// Well-formed pairs of other keys, or another serialization: this Envoy's, for good.
			x.state = exprUnavailable
			proxywasm.LogInfof("meshtrace: %v: reading the end of each stream one value at a time", err)
		}
		// An evaluation error: this stream lacks a value (no upstream, no response); read it value by value.
	}
	return r.readEndByValue(kind)
}

func kindIndex(kind span.Kind) int {
	if kind == span.KindClient {
		return 1
	}
	return 0
}

// createEndExpr compiles the stream end expression for kind with expr_create, once per root context (Envoy
// keeps the compiled expressions per root context).
func (r *rootContext) createEndExpr(x *endExpr, kind span.Kind) {
	src, keys := endExprSource(kind, r.policy.Trace.B3)
	tok, err := proxywasm.CallForeignFunction("expr_create", []byte(src))
	if err != nil || len(tok) != 4 {
		x.state = exprUnavailable
		proxywasm.LogInfof("meshtrace: Envoy's expr_create is not available (%v): reading the end of each stream one value at a time", err)
		return
	}
	x.state, x.token, x.keys = exprReady, tok, keys
}

// readEndByValue reads the end of a stream one property or header at a time. Of the B3 headers it reads
// the single one, else the span id first: without a tracer no B3 arrived and the filter wrote none, so a
// stream costs two header reads there, not five.
func (r *rootContext) readEndByValue(kind span.Kind) streamEnd {
	var e streamEnd
	if code, ok := propertyInt(pathResponseCode); ok {
		e.code = code
	} else if v, err := proxywasm.GetHttpResponseHeader(":status"); err == nil {
		// Hosts without the property: the response headers are still readable in the log phase.
		e.code, _ = strconv.ParseInt(v, 10, 64)
	}
	if flags, ok := propertyInt(pathResponseFlags); ok {
		e.flags = uint64(flags)
	}
	e.details = propertyString(pathResponseDetails)
	e.cluster = propertyString(pathClusterName)
	if kind == span.KindClient {
		e.upstream = propertyString(pathUpstreamAddress)
	} else {
		e.peer = propertyString(pathSourceAddress)
	}
	e.traceparent = requestHeader(tc.HeaderTraceparent)
	if r.policy.Trace.B3 {
		if e.b3 = requestHeader(tc.HeaderB3); e.b3 == "" {
			if e.b3SpanID = requestHeader(tc.HeaderB3SpanID); e.b3SpanID != "" {
				e.b3TraceID = requestHeader(tc.HeaderB3TraceID)
				e.b3Sampled = requestHeader(tc.HeaderB3Sampled)
				e.b3Flag = requestHeader(tc.HeaderB3Flags)
			}
		}
	}
	return e
}

// requestHeader reads a request header from the host ("" when absent or unreadable).
func requestHeader(name string) string {
	v, err := proxywasm.GetHttpRequestHeader(name)
	if err != nil {
		return ""
	}
	return v
}
