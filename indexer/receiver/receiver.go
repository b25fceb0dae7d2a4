// Package receiver accepts OTLP trace exports (OTLP/HTTP POST /v1/traces with protobuf or JSON bodies,
// optionally gzip-compressed, and OTLP/gRPC TraceService/Export), turns them into span documents and hands
// them to a pipeline.Consumer.
//
// Answers follow the OTLP specification: success, with partial_success naming how many spans were rejected and
// why; 400 for a body that cannot be decoded; 413 above the size limit; 429 (queue full) or 503 (store failing)
// with Retry-After when the indexer is backlogged. A success is sent only after the consumer has stored the
// spans.
package receiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/flatten"
	"github.com/meshtrace/meshtrace/indexer/otlpjson"
	"github.com/meshtrace/meshtrace/indexer/pipeline"
)

// DefaultMaxBodyBytes is the default request size limit, applied to the body as sent and once decompressed.
const DefaultMaxBodyBytes = 16 << 20

// Encoding is the encoding of an OTLP request body.
type Encoding int

// Encodings.
const (
	Protobuf Encoding = iota // application/x-protobuf
	JSON                     // application/json
)

// Config sets up a Receiver.
type Config struct {
	MaxBodyBytes int64 // default DefaultMaxBodyBytes
	Logger       *slog.Logger
}

// Receiver decodes OTLP trace exports and feeds a Consumer. It serves OTLP/HTTP (ServeHTTP) and OTLP/gRPC
// (Export, see RegisterGRPC). Create it with New.
type Receiver struct {
	coltracepb.UnimplementedTraceServiceServer
	consumer pipeline.Consumer
	cfg      Config
	decoders sync.Pool // *otlpjson.Decoder
}

// New returns a Receiver that hands span documents to c.
func New(c pipeline.Consumer, cfg Config) *Receiver {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Receiver{consumer: c, cfg: cfg, decoders: sync.Pool{New: func() any { return new(otlpjson.Decoder) }}}
}

// DecodeError is an undecodable request body.
type DecodeError struct{ Err error }

// Error says what could not be decoded.
func (e *DecodeError) Error() string { return "cannot decode request: " + e.Err.Error() }

// Unwrap returns the decoder's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// Documents decodes an OTLP/HTTP body into span documents; failures are *DecodeError. Protobuf bodies are
// flattened straight from the wire (flatten.FromProtobuf); JSON bodies are decoded into the OTLP types, then
// flattened.
func (r *Receiver) Documents(enc Encoding, body []byte) ([]document.Span, flatten.Rejected, error) {
	if enc == Protobuf {
		docs, rej, err := flatten.FromProtobuf(nil, body)
		if err != nil {
			return nil, rej, &DecodeError{Err: fmt.Errorf("invalid protobuf: %w", err)}
		}
		return docs, rej, nil
	}
	d := r.decoders.Get().(*otlpjson.Decoder)
	req, err := d.Decode(body)
	r.decoders.Put(d)
	if err != nil {
		return nil, flatten.Rejected{}, &DecodeError{Err: err}
	}
	docs, rej := flatten.Spans(make([]document.Span, 0, flatten.Count(req.ResourceSpans)), req.ResourceSpans)
	return docs, rej, nil
}

// export waits for the consumer to store docs. The partial success is nil when every span was accepted.
func (r *Receiver) export(ctx context.Context, docs []document.Span, rej flatten.Rejected) (*coltracepb.ExportTracePartialSuccess, error) {
	if err := r.consumer.Consume(ctx, docs); err != nil {
		return nil, err
	}
	if rej.Count == 0 {
		return nil, nil
	}
	r.cfg.Logger.Debug("rejected spans", "count", rej.Count, "first", rej.Message)
	return &coltracepb.ExportTracePartialSuccess{RejectedSpans: rej.Count, ErrorMessage: rej.Summary()}, nil
}

// overload returns the consumer's refusal, if err is one.
func overload(err error) (*pipeline.OverloadError, bool) {
	var oe *pipeline.OverloadError
	ok := errors.As(err, &oe)
	return oe, ok
}
