// Package tracecontext parses and formats the trace propagation headers the filter joins and writes: W3C
// Trace Context (traceparent, tracestate), Zipkin B3 in its single-header and multi-header forms, and W3C
// Baggage. Every parser takes untrusted header values and reports failure instead of panicking.
package tracecontext

import (
	"encoding/hex"
	"strings"

	"github.com/meshtrace/meshtrace/filter/span"
)

// Header names (lower case, as HTTP/2 and Envoy present them).
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
	HeaderBaggage     = "baggage"
	HeaderB3          = "b3"
	HeaderB3TraceID   = "x-b3-traceid"
	HeaderB3SpanID    = "x-b3-spanid"
	HeaderB3ParentID  = "x-b3-parentspanid"
	HeaderB3Sampled   = "x-b3-sampled"
	HeaderB3Flags     = "x-b3-flags"
)

// FlagSampled is the W3C "sampled" trace flag.
const FlagSampled byte = 0x01

// maxTracestate is the longest tracestate value carried along; longer values are dropped (W3C allows
// vendors to truncate; 512 bytes is the size the specification asks implementations to propagate).
const maxTracestate = 512

// SpanContext is the propagated identity of a remote parent span.
type SpanContext struct {
	TraceID    span.TraceID
	SpanID     span.SpanID
	Flags      byte
	TraceState string
}

// Valid reports whether both ids are non-zero.
func (c SpanContext) Valid() bool { return !c.TraceID.IsZero() && !c.SpanID.IsZero() }

// Sampled reports whether the sampled flag is set.
func (c SpanContext) Sampled() bool { return c.Flags&FlagSampled != 0 }

// ParseTraceparent parses a W3C traceparent value ("00-<32 hex>-<16 hex>-<2 hex>"). Versions above 00 are
// accepted as the specification requires (the known prefix is read; the rest must start with '-'); version
// ff, upper-case hex and all-zero ids are rejected.
func ParseTraceparent(v string) (SpanContext, bool) {
	var c SpanContext
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return c, false
	}
	ver, ok := hexByte(v[0:2])
	if !ok || ver == 0xff || (ver == 0 && len(v) != 55) || (len(v) > 55 && v[55] != '-') {
		return c, false
	}
	if !decodeHex(c.TraceID[:], v[3:35]) || !decodeHex(c.SpanID[:], v[36:52]) {
		return c, false
	}
	flags, ok := hexByte(v[53:55])
	if !ok || !c.Valid() {
		return SpanContext{}, false
	}
	c.Flags = flags
	return c, true
}

// AppendTraceparent appends the version-00 traceparent for c.
func AppendTraceparent(dst []byte, c SpanContext) []byte {
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, c.TraceID[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, c.SpanID[:])
	dst = append(dst, '-')
	return append(dst, hexDigits[c.Flags>>4], hexDigits[c.Flags&0x0f])
}

// SanitizeTracestate returns v if it is a plausible tracestate to carry along (bounded length, printable
// ASCII, no more than 32 list members) and "" otherwise.
func SanitizeTracestate(v string) string {
	if len(v) > maxTracestate {
		return ""
	}
	members := 1
	for i := 0; i < len(v); i++ {
		ch := v[i]
		if ch == ',' {
			members++
		}
		if ch < 0x20 || ch > 0x7e || members > 32 {
			return ""
		}
	}
	return v
}

// ParseB3Single parses the B3 single header "{traceid}-{spanid}[-{sampling}[-{parentspanid}]]". A value that
// is only a sampling decision ("0", "1", "d") carries no context and is reported as not ok.
func ParseB3Single(v string) (SpanContext, bool) {
	var c SpanContext
	tid, rest, ok := strings.Cut(v, "-")
	if !ok || !parseB3TraceID(&c.TraceID, tid) {
		return SpanContext{}, false
	}
	sid, rest, more := strings.Cut(rest, "-")
	if len(sid) != 16 || !decodeHex(c.SpanID[:], sid) {
		return SpanContext{}, false
	}
	c.Flags = FlagSampled // B3: absent sampling state defers the decision; the filter records the span
	if more {
		sampling, parent, hasParent := strings.Cut(rest, "-")
		switch sampling {
		case "1", "d":
		case "0":
			c.Flags = 0
		default:
			return SpanContext{}, false
		}
		var p span.SpanID
		if hasParent && (len(parent) != 16 || !decodeHex(p[:], parent)) {
			return SpanContext{}, false
		}
	}
	if !c.Valid() {
		return SpanContext{}, false
	}
	return c, true
}

// ParseB3Multi parses the X-B3-TraceId, X-B3-SpanId, X-B3-Sampled and X-B3-Flags header values.
func ParseB3Multi(traceID, spanID, sampled, flags string) (SpanContext, bool) {
	var c SpanContext
	if !parseB3TraceID(&c.TraceID, traceID) || len(spanID) != 16 || !decodeHex(c.SpanID[:], spanID) || !c.Valid() {
		return SpanContext{}, false
	}
	switch sampled {
	case "0", "false":
	case "", "1", "true":
		c.Flags = FlagSampled
	default:
		return SpanContext{}, false
	}
	if flags == "1" { // debug implies sampled
		c.Flags = FlagSampled
	}
	return c, true
}

// AppendB3Single appends the B3 single header value for c ("{traceid}-{spanid}-{0|1}").
func AppendB3Single(dst []byte, c SpanContext) []byte {
	dst = hex.AppendEncode(dst, c.TraceID[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, c.SpanID[:])
	if c.Sampled() {
		return append(dst, "-1"...)
	}
	return append(dst, "-0"...)
}

// HexTraceID returns the 32-digit lower-case hex form of a trace id.
func HexTraceID(id span.TraceID) string { return hex.EncodeToString(id[:]) }

// AppendHexSpanID appends the 16-digit lower-case hex form of a span id.
func AppendHexSpanID(dst []byte, id span.SpanID) []byte { return hex.AppendEncode(dst, id[:]) }

// parseB3TraceID accepts a 16- or 32-digit trace id; a 64-bit id is left-padded with zeros.
func parseB3TraceID(dst *span.TraceID, v string) bool {
	switch len(v) {
	case 32:
		return decodeHex(dst[:], v)
	case 16:
		*dst = span.TraceID{}
		return decodeHex(dst[8:], v)
	}
	return false
}

// hexDigits are the lower-case digits hex.AppendEncode writes, for the single flags byte (AppendEncode
// would want it as a slice).
const hexDigits = "0123456789abcdef"

// decodeHex decodes lower-case hex v into dst (len(v) must be 2*len(dst)).
func decodeHex(dst []byte, v string) bool {
	if len(v) != 2*len(dst) {
		return false
	}
	for i := range dst {
		b, ok := hexByte(v[2*i : 2*i+2])
		if !ok {
			return false
		}
		dst[i] = b
	}
	return true
}

func hexByte(v string) (byte, bool) {
	hi, ok1 := nibble(v[0])
	lo, ok2 := nibble(v[1])
	return hi<<4 | lo, ok1 && ok2
}

func nibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
