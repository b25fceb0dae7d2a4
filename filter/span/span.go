// Package span is the filter's in-memory span model: what the HTTP and network contexts record and what the
// OTLP encoder writes. It is deliberately small and allocation-friendly so it compiles well under TinyGo.
package span

// Kind is the OTLP span kind (the numeric values are OTLP's SpanKind enum).
type Kind int32

// Span kinds, numbered as in opentelemetry.proto.trace.v1.Span.SpanKind.
const (
	KindUnspecified Kind = 0
	KindInternal    Kind = 1
	KindServer      Kind = 2
	KindClient      Kind = 3
	KindProducer    Kind = 4
	KindConsumer    Kind = 5
)

// StatusCode is the OTLP status code (numbered as in opentelemetry.proto.trace.v1.Status.StatusCode).
type StatusCode int32

// Status codes.
const (
	StatusUnset StatusCode = 0
	StatusOK    StatusCode = 1
	StatusError StatusCode = 2
)

// ValueType tells which field of an Attr holds its value.
type ValueType uint8

// Attribute value types.
const (
	TypeString ValueType = iota
	TypeInt
	TypeBool
)

// Attr is one span or resource attribute.
type Attr struct {
	Key  string
	Type ValueType
	Str  string
	Int  int64
	Bool bool
}

// String returns a string attribute.
func String(key, value string) Attr { return Attr{Key: key, Type: TypeString, Str: value} }

// Int returns an integer attribute.
func Int(key string, value int64) Attr { return Attr{Key: key, Type: TypeInt, Int: value} }

// Bool returns a boolean attribute.
func Bool(key string, value bool) Attr { return Attr{Key: key, Type: TypeBool, Bool: value} }

// TraceID is a W3C / OTLP 16-byte trace id.
type TraceID [16]byte

// SpanID is a W3C / OTLP 8-byte span id.
type SpanID [8]byte

// IsZero reports whether the trace id is all zeros (invalid per W3C).
func (t TraceID) IsZero() bool { return t == TraceID{} }

// IsZero reports whether the span id is all zeros (invalid per W3C).
func (s SpanID) IsZero() bool { return s == SpanID{} }

// Link points from a span to another span context (used by Kafka consumer spans).
type Link struct {
	TraceID    TraceID
	SpanID     SpanID
	TraceState string
	Attrs      []Attr
}

// Span is one finished span, ready to export.
type Span struct {
	TraceID       TraceID
	SpanID        SpanID
	ParentSpanID  SpanID // zero for a root span
	TraceState    string
	Flags         uint32 // W3C trace flags (bit 0 = sampled)
	Name          string
	Kind          Kind
	StartUnixNano uint64
	EndUnixNano   uint64
	Attrs         []Attr
	Links         []Link
	Status        StatusCode
	StatusMessage string
}
