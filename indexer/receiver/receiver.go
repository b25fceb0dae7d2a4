// Package receiver accepts OTLP trace exports (OTLP/HTTP POST /v1/traces with protobuf or JSON bodies,
// optionally gzip-compressed, and OTLP/gRPC TraceService/Export), validates them and appends each accepted
// request to the write-ahead log as one record: an OTLP ExportTraceServiceRequest in protobuf. A request is
// acknowledged once its record is durable, before any store has seen it, so the answer's latency is a
// decode and a group-committed fsync, whatever the store does.
//
// Answers follow the OTLP specification, mapped in one place (refusalOf) for both transports: success, with
// partial_success naming how many spans were rejected and why; 400 (gRPC INVALID_ARGUMENT) for a body that
// cannot be decoded or breaks a flatten.Limits limit; 413 above the size limit; 429 + Retry-After (gRPC
// RESOURCE_EXHAUSTED + RetryInfo) while the log is full or the in-flight byte budget is used up; 503 (gRPC
// UNAVAILABLE) when the log cannot write (disk full, a failed fsync) or the indexer is stopping: never a
// success for spans that are not on disk.
//
// Memory is bounded whatever the input: bodies are read against a global budget of in-flight bytes
// (Config.MaxInflightBytes, counted decompressed, with room for decoding), never pre-allocated from
// Content-Length, and HTTPServer and GRPCServer set timeouts on every connection.
package receiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"golang.org/x/sync/semaphore"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/indexer/flatten"
	"github.com/meshtrace/meshtrace/indexer/internal/defaults"
	"github.com/meshtrace/meshtrace/indexer/otlpjson"
	"github.com/meshtrace/meshtrace/indexer/record"
)

// Log is where accepted requests go: the write-ahead log (*wal.WAL). Append writes the parts as one record
// (their concatenation: package record's header, then the request) and returns once it is durable, or with
// the reason it is not (wal.ErrFull, wal.ErrClosed, wal.ErrTooLarge, an I/O error). Once it has returned nil
// it must not use the parts any more: the receiver reuses the buffer for later requests.
type Log interface {
	Append(ctx context.Context, record ...[]byte) error
}

// Config sets up a Receiver. DefaultConfig gives the defaults; New takes them for zero fields.
type Config struct {
	// MaxBodyBytes is the largest request, as sent and once decompressed (413 above it).
	MaxBodyBytes int64
	// MaxInflightBytes bounds the bytes all requests being read and decoded may hold together, counted
	// decompressed and multiplied by decodeFactor (protobuf) or jsonDecodeFactor (JSON) for the decoded form;
	// a request that finds it used up is answered 429. It is raised to MaxBodyBytes*decodeFactor so that one
	// largest protobuf request fits; a JSON body too large to ever fit is answered 413.
	MaxInflightBytes int64
	// Limits bound what one request may hold (spans, attributes, string sizes); see flatten.Limits.
	Limits flatten.Limits
	// FullRetryAfter is the delay suggested to clients while the log is full.
	FullRetryAfter time.Duration
	// HTTP server timeouts (see net/http.Server), and the largest request header block.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                                            int
	// gRPC: a connection is closed after MaxConnectionIdle without calls and after MaxConnectionAge (clients
	// then reconnect, which spreads them over replicas), with MaxConnectionAgeGrace for calls in progress.
	MaxConnectionIdle, MaxConnectionAge, MaxConnectionAgeGrace time.Duration
	// MaxConcurrentStreams bounds the calls in progress on one gRPC connection.
	MaxConcurrentStreams uint32
	// Tenancy decides each request's tenant (see Tenancy); nil: no tenancy, every span is of the empty tenant.
	Tenancy Tenancy
	// TenantLimits bound each tenant's ingest (the empty tenant's too); zero: none.
	TenantLimits TenantLimits
	Logger       *slog.Logger
	// Registerer receives the receiver's metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
}

// decodeFactor is the multiple of a protobuf request's decompressed size reserved from the in-flight budget
// while it is decoded: the body itself, the span documents built to validate it (flatten allocates at most
// about 7 times the body for the worst valid input, typically 2-3) and, for gRPC, the record re-encoded.
const decodeFactor = 4

// jsonDecodeFactor is the same for JSON bodies: the JSON parse tree costs up to a few hundred bytes per token,
// so OTLP/JSON from SDKs (about 9 bytes per token) needs 20-30 times its size; the decoder's token cap
// (otlpjson.Decoder.MaxTokens) bounds the rest.
const jsonDecodeFactor = 32

// DefaultConfig returns the receiver's defaults.
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:          16 << 20,
		MaxInflightBytes:      256 << 20,
		FullRetryAfter:        5 * time.Second,
		ReadHeaderTimeout:     10 * time.Second,
		ReadTimeout:           60 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           2 * time.Minute,
		MaxHeaderBytes:        64 << 10,
		MaxConnectionIdle:     5 * time.Minute,
		MaxConnectionAge:      30 * time.Minute,
		MaxConnectionAgeGrace: 30 * time.Second,
		MaxConcurrentStreams:  64,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	defaults.Set(&c.MaxBodyBytes, d.MaxBodyBytes)
	defaults.Set(&c.MaxInflightBytes, d.MaxInflightBytes)
	c.MaxInflightBytes = max(c.MaxInflightBytes, c.MaxBodyBytes*decodeFactor)
	defaults.Set(&c.FullRetryAfter, d.FullRetryAfter)
	defaults.Set(&c.ReadHeaderTimeout, d.ReadHeaderTimeout)
	defaults.Set(&c.ReadTimeout, d.ReadTimeout)
	defaults.Set(&c.WriteTimeout, d.WriteTimeout)
	defaults.Set(&c.IdleTimeout, d.IdleTimeout)
	defaults.Set(&c.MaxHeaderBytes, d.MaxHeaderBytes)
	defaults.Set(&c.MaxConnectionIdle, d.MaxConnectionIdle)
	defaults.Set(&c.MaxConnectionAge, d.MaxConnectionAge)
	defaults.Set(&c.MaxConnectionAgeGrace, d.MaxConnectionAgeGrace)
	defaults.Set(&c.MaxConcurrentStreams, d.MaxConcurrentStreams)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Receiver decodes OTLP trace exports and appends them to a Log. It serves OTLP/HTTP (ServeHTTP, HTTPServer)
// and OTLP/gRPC (Export, GRPCServer). Create it with New.
type Receiver struct {
	coltracepb.UnimplementedTraceServiceServer
	log      Log
	cfg      Config
	budget   *semaphore.Weighted
	decoders sync.Pool // *otlpjson.Decoder
	tenants  *tenants
	m        *metrics
}

// New returns a Receiver that appends accepted requests to l.
func New(l Log, cfg Config) (*Receiver, error) {
	cfg.fill()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	maxSpans := cfg.Limits.MaxSpans
	if maxSpans <= 0 {
		maxSpans = flatten.DefaultLimits.MaxSpans
	}
	return &Receiver{log: l, cfg: cfg, budget: semaphore.NewWeighted(cfg.MaxInflightBytes), m: m,
		decoders: sync.Pool{New: func() any { return new(otlpjson.Decoder) }},
		tenants:  &tenants{tenancy: cfg.Tenancy, limits: cfg.TenantLimits, maxSpans: maxSpans, maxBytes: int(cfg.MaxBodyBytes)}}, nil
}

// DecodeError is an undecodable request body, or one that breaks a limit (it then wraps *flatten.LimitError).
type DecodeError struct{ Err error }

// Error says what could not be decoded.
func (e *DecodeError) Error() string { return "cannot decode request: " + e.Err.Error() }

// Unwrap returns the decoder's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// accepted is a decoded, validated request: the record to log and what its spans became.
type accepted struct {
	record []byte
	spans  int // valid spans
	rej    flatten.Rejected
}

// decodeHTTP validates an OTLP/HTTP body; failures are *DecodeError. A protobuf body is checked straight from
// the wire by flatten.Validate (the walk the pipeline's flatten.FromProtobuf makes, building nothing) and
// logged as it is; a JSON body is decoded into the OTLP types and logged re-encoded as protobuf.
func (r *Receiver) decodeHTTP(enc encoding, body []byte) (accepted, error) {
	if enc == protobufEncoding {
		valid, rej, err := flatten.Validate(body, r.cfg.Limits)
		var le *flatten.LimitError
		if errors.As(err, &le) {
			return accepted{}, &DecodeError{Err: err}
		}
		if err != nil {
			return accepted{}, &DecodeError{Err: fmt.Errorf("invalid protobuf: %w", err)}
		}
		return accepted{record: body, spans: valid, rej: rej}, nil
	}
	d := r.decoders.Get().(*otlpjson.Decoder)
	req, err := d.Decode(body)
	r.decoders.Put(d)
	if err != nil {
		return accepted{}, &DecodeError{Err: err}
	}
	return r.decodeMessage(req)
}

// decodeMessage validates a decoded request and encodes its record.
func (r *Receiver) decodeMessage(req *coltracepb.ExportTraceServiceRequest) (accepted, error) {
	docs, rej, err := flatten.Spans(nil, req.ResourceSpans, r.cfg.Limits)
	if err != nil {
		return accepted{}, &DecodeError{Err: err}
	}
	a := accepted{spans: len(docs), rej: rej}
	if a.spans > 0 {
		if a.record, err = proto.Marshal(req); err != nil {
			return accepted{}, &DecodeError{Err: err}
		}
	}
	return a, nil
}

// export logs an accepted request of tenant tn, within the tenant's limits. The partial success is nil when
// every span was accepted. A request whose spans were all rejected is not logged.
func (r *Receiver) export(ctx context.Context, tn string, a accepted) (*coltracepb.ExportTracePartialSuccess, error) {
	if a.spans > 0 {
		if err := r.tenants.allow(tn, a.spans, len(a.record)); err != nil {
			return nil, err
		}
		if err := r.log.Append(ctx, record.Header(tn), a.record); err != nil {
			return nil, err
		}
	}
	if a.rej.Count == 0 {
		return nil, nil
	}
	r.cfg.Logger.Debug("rejected spans", "count", a.rej.Count, "first", a.rej.Message)
	return &coltracepb.ExportTracePartialSuccess{RejectedSpans: a.rej.Count, ErrorMessage: a.rej.Summary()}, nil
}
