package flatten

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Limits bounds what one export request may hold. FromProtobuf and Spans enforce the same limits in the same
// order, while walking the request and before building anything they bound (a string, a map, a slice), so that
// what flattening allocates stays proportional to the size of the request body, whatever the body holds.
// A request that exceeds a limit is refused as a whole with a *LimitError; it is not a partial success.
//
// A zero field takes its value from DefaultLimits, so the zero Limits is DefaultLimits; a negative field means
// no limit. The defaults are far above what instrumented applications send: OpenTelemetry SDKs keep at most 128
// attributes per span, 128 events and 128 links (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, OTEL_SPAN_EVENT_COUNT_LIMIT,
// OTEL_SPAN_LINK_COUNT_LIMIT) and export at most 512 spans per request (OTEL_BSP_MAX_EXPORT_BATCH_SIZE).
type Limits struct {
	// MaxSpans is the most spans in one request, valid or not (default 65,536: 128 times the SDK batch, 8 times
	// the OpenTelemetry Collector's default batch of 8,192). It is checked before anything else, so a request
	// with too many spans is refused without flattening any of them; receivers may answer it with 413.
	MaxSpans int
	// MaxAttributes is the most attributes of one span, and separately of each of its events and links (default
	// 1,024; SDKs keep at most 128). Every key-value pair counts, at any depth: a pair whose value is a key-value
	// list counts once, and so does each pair of the list, whether the list is flattened into dotted keys or sits
	// in an array.
	MaxAttributes int
	// MaxResourceAttributes is the most attributes of one resource, counted as MaxAttributes counts (default
	// 1,024; resource detectors set a few dozen). The occurrences of a resource merged by protobuf count together.
	MaxResourceAttributes int
	// MaxEvents is the most events of one span (default 1,024; SDKs keep at most 128).
	MaxEvents int
	// MaxLinks is the most links of one span (default 1,024; SDKs keep at most 128).
	MaxLinks int
	// MaxKeyBytes is the longest attribute key in bytes, including the dotted prefix a key gets when its
	// key-value list is flattened ("http.request.header" + "." + "accept") (default 1,024; semantic-convention
	// keys are under 64 bytes).
	MaxKeyBytes int
	// MaxValueBytes is the longest string in bytes: attribute values (array elements included), span names,
	// status messages, event names and instrumentation scope names (default 65,536; SDKs do not truncate values
	// unless OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT is set, and a value this long is no longer useful to search).
	// Bytes values count the length of their base64 form, which is what the document holds.
	MaxValueBytes int
	// MaxArrayElements is the most elements of one array value (default 1,024).
	MaxArrayElements int
	// MaxDepth is the deepest nesting of array and key-value list values: the value of an attribute is at depth
	// 0, the elements of an array attribute (or the pairs of a key-value list attribute) at depth 1 (default 8;
	// instrumentation sends flat values, or one level of list).
	MaxDepth int
}

// DefaultLimits are the limits a zero Limits field stands for; see Limits for why they are what they are.
var DefaultLimits = Limits{
	MaxSpans:              65_536,
	MaxAttributes:         1_024,
	MaxResourceAttributes: 1_024,
	MaxEvents:             1_024,
	MaxLinks:              1_024,
	MaxKeyBytes:           1_024,
	MaxValueBytes:         65_536,
	MaxArrayElements:      1_024,
	MaxDepth:              8,
}

// noLimit is what a negative field resolves to: larger than anything a request can hold, small enough that
// adding one does not overflow.
const noLimit = math.MaxInt32

// noLimits are the limits of Attributes and Value, which flatten trusted data.
var noLimits = Limits{-1, -1, -1, -1, -1, -1, -1, -1, -1}.resolve()

// resolve replaces zero fields by their defaults and negative ones by noLimit.
func (l Limits) resolve() Limits {
	field := func(v, def int) int {
		switch {
		case v == 0:
			v = def
		case v < 0:
			return noLimit
		}
		if v < 0 || v > noLimit { // a negative default
			return noLimit
		}
		return v
	}
	d := DefaultLimits
	return Limits{
		MaxSpans:              field(l.MaxSpans, d.MaxSpans),
		MaxAttributes:         field(l.MaxAttributes, d.MaxAttributes),
		MaxResourceAttributes: field(l.MaxResourceAttributes, d.MaxResourceAttributes),
		MaxEvents:             field(l.MaxEvents, d.MaxEvents),
		MaxLinks:              field(l.MaxLinks, d.MaxLinks),
		MaxKeyBytes:           field(l.MaxKeyBytes, d.MaxKeyBytes),
		MaxValueBytes:         field(l.MaxValueBytes, d.MaxValueBytes),
		MaxArrayElements:      field(l.MaxArrayElements, d.MaxArrayElements),
		MaxDepth:              field(l.MaxDepth, d.MaxDepth),
	}
}

// LimitError is a request refused because it exceeds one of its Limits. The whole request is refused: receivers
// answer it as a bad request (HTTP 400, gRPC InvalidArgument), or as too large when TooLarge says so.
type LimitError struct {
	// Path is where in the request the limit was exceeded, in OTLP/JSON field names, for example
	// `resourceSpans[0].scopeSpans[0].spans[3].attributes["http.request.body"]`; it is empty for MaxSpans,
	// which is about the whole request.
	Path string
	// Limit is the name of the Limits field that was exceeded, such as "MaxAttributes".
	Limit string
	// Max is the value of that limit.
	Max int
	// Got is what the request holds: a size in bytes, a count, or a depth. Counting stops at the first item
	// over the limit where a count is not known beforehand (attributes of nested key-value lists), so Got is then
	// Max+1, a lower bound.
	Got int
}

// Error renders the error as "path: what exceeds the limit of max (Limit)".
func (e *LimitError) Error() string {
	var what string
	switch e.Limit {
	case "MaxSpans":
		what = strconv.Itoa(e.Got) + " spans exceed"
	case "MaxAttributes", "MaxResourceAttributes":
		what = strconv.Itoa(e.Got) + " attributes exceed"
	case "MaxEvents":
		what = strconv.Itoa(e.Got) + " events exceed"
	case "MaxLinks":
		what = strconv.Itoa(e.Got) + " links exceed"
	case "MaxArrayElements":
		what = strconv.Itoa(e.Got) + " array elements exceed"
	case "MaxKeyBytes":
		what = "a key of " + strconv.Itoa(e.Got) + " bytes exceeds"
	case "MaxValueBytes":
		what = "a value of " + strconv.Itoa(e.Got) + " bytes exceeds"
	case "MaxDepth":
		what = "values nested " + strconv.Itoa(e.Got) + " deep exceed"
	default:
		what = strconv.Itoa(e.Got) + " exceeds"
	}
	msg := fmt.Sprintf("%s the limit of %d (%s)", what, e.Max, e.Limit)
	if e.Path == "" {
		return msg
	}
	return e.Path + ": " + msg
}

// TooLarge reports whether the request was refused for its size as a whole (MaxSpans) rather than for what one
// of its spans holds: receivers may answer HTTP 413 (or gRPC ResourceExhausted) instead of 400, inviting the
// client to send smaller batches.
func (e *LimitError) TooLarge() bool { return e.Limit == "MaxSpans" }

// where locates a limit violation; it is rendered only when a limit is exceeded, so that valid requests build
// no path strings.
type where struct {
	rs, ss, sp int    // resourceSpans, scopeSpans and spans indices; ss and sp are -1 above their level
	field      string // "resource.attributes", "scope.name", "name", "attributes", "events", ...
	sub        int    // index of the event or link field names, or -1
	tail       string // field of that event or link: "name", "attributes"
	key        string // flattened key of the attribute whose value is at fault, when keyed
	keyed      bool
}

func (w where) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "resourceSpans[%d]", w.rs)
	if w.ss >= 0 {
		fmt.Fprintf(&b, ".scopeSpans[%d]", w.ss)
	}
	if w.sp >= 0 {
		fmt.Fprintf(&b, ".spans[%d]", w.sp)
	}
	if w.field != "" {
		b.WriteString("." + w.field)
	}
	if w.sub >= 0 {
		fmt.Fprintf(&b, "[%d]", w.sub)
	}
	if w.tail != "" {
		b.WriteString("." + w.tail)
	}
	if w.keyed {
		fmt.Fprintf(&b, "[%q]", w.key)
	}
	return b.String()
}

func spanAt(i, j, k int, field string) where {
	return where{rs: i, ss: j, sp: k, field: field, sub: -1}
}

func (w where) at(field string, sub int, tail string) where {
	w.field, w.sub, w.tail = field, sub, tail
	return w
}

func (w where) err(limit string, max, got int) *LimitError {
	return &LimitError{Path: w.String(), Limit: limit, Max: max, Got: got}
}

// checker applies the limits of one request; both walkers call it at the same points in the same order, so
// that they refuse the same requests with the same error.
type checker struct {
	lim Limits // resolved
	// The attribute set being flattened: its location, limit and the key-value pairs counted so far.
	set   where
	name  string // "MaxAttributes" or "MaxResourceAttributes"
	max   int
	pairs int
}

func (c *checker) spans(n int) error {
	if n > c.lim.MaxSpans {
		return &LimitError{Limit: "MaxSpans", Max: c.lim.MaxSpans, Got: n}
	}
	return nil
}

// count checks a count known beforehand (events, links, the top-level attributes of a set).
func (c *checker) count(at where, limit string, max, n int) error {
	if n > max {
		return at.err(limit, max, n)
	}
	return nil
}

// str checks a span name, status message, event name or scope name.
func (c *checker) str(at where, n int) error {
	if n > c.lim.MaxValueBytes {
		return at.err("MaxValueBytes", c.lim.MaxValueBytes, n)
	}
	return nil
}

// startSet starts an attribute set of n top-level pairs: it checks n, then counts pairs from zero.
func (c *checker) startSet(at where, resource bool, n int) error {
	c.set, c.name, c.max, c.pairs = at, "MaxAttributes", c.lim.MaxAttributes, 0
	if resource {
		c.name, c.max = "MaxResourceAttributes", c.lim.MaxResourceAttributes
	}
	return c.count(at, c.name, c.max, n)
}

// keepParts is how many raw pairs of a key-value list the wire walker keeps: enough for pair counting to
// reach the limit of the set, which it does before running out of them.
func (c *checker) keepParts() int { return c.max + 1 }

// pair counts one more key-value pair of the set, at any depth.
func (c *checker) pair() error {
	if c.pairs++; c.pairs > c.max {
		return c.set.err(c.name, c.max, c.pairs)
	}
	return nil
}

// key checks the flattened key prefix+key of a pair, by length only, before it is built.
func (c *checker) key(prefixLen, keyLen int) error {
	if n := prefixLen + keyLen; n > c.lim.MaxKeyBytes {
		return c.set.err("MaxKeyBytes", c.lim.MaxKeyBytes, n)
	}
	return nil
}

// inKey locates a violation inside the value of the pair with flattened key prefix+key.
func (c *checker) inKey(prefix, key string) where {
	w := c.set
	w.key, w.keyed = prefix+key, true
	return w
}

func (c *checker) checkValue(prefix, key string, n int) error {
	if n > c.lim.MaxValueBytes {
		return c.inKey(prefix, key).err("MaxValueBytes", c.lim.MaxValueBytes, n)
	}
	return nil
}

func (c *checker) checkBytes(prefix, key string, n int) error {
	return c.checkValue(prefix, key, base64.StdEncoding.EncodedLen(n))
}

// nest checks an array or key-value list whose elements are at depth.
func (c *checker) nest(prefix, key string, depth int) error {
	if depth > c.lim.MaxDepth {
		return c.inKey(prefix, key).err("MaxDepth", c.lim.MaxDepth, depth)
	}
	return nil
}

func (c *checker) array(prefix, key string, n int) error {
	if n > c.lim.MaxArrayElements {
		return c.inKey(prefix, key).err("MaxArrayElements", c.lim.MaxArrayElements, n)
	}
	return nil
}
