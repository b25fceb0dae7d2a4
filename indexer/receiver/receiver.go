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
	"google.golang.org/protobuf/proto"

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

func (e *DecodeError) Error() string { return "cannot decode request: " + e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// Decode decodes an ExportTraceServiceRequest body; failures are *DecodeError.
func (r *Receiver) Decode(enc Encoding, body []byte) (*coltracepb.ExportTraceServiceRequest, error) {
	if enc == JSON {
		d := r.decoders.Get().(*otlpjson.Decoder)
		defer r.decoders.Put(d)
		req, err := d.Decode(body)
		if err != nil {
			return nil, &DecodeError{Err: err}
		}
		return req, nil
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		return nil, &DecodeError{Err: fmt.Errorf("invalid protobuf: %w", err)}
	}
	return req, nil
}

// export flattens a request and waits for the consumer to store it. The partial success is nil when every
// span was accepted.
func (r *Receiver) export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTracePartialSuccess, error) {
	docs, rej := flatten.Spans(make([]document.Span, 0, flatten.Count(req.ResourceSpans)), req.ResourceSpans)
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
