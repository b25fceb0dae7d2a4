package receiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"

	"github.com/klauspost/compress/gzip"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/indexer/pipeline"
)

// TracesPath is the OTLP/HTTP path of trace exports.
const TracesPath = "/v1/traces"

// errTooLarge marks a body above the size limit.
var errTooLarge = errors.New("request body too large")

// ServeHTTP handles POST /v1/traces.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	enc := Protobuf
	if ct, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err == nil && ct == "application/json" {
		enc = JSON
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		r.writeStatus(w, enc, http.StatusMethodNotAllowed, codes.Unimplemented, "only POST is supported")
		return
	}
	switch ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); ct {
	case "application/x-protobuf", "application/json":
	default:
		r.writeStatus(w, enc, http.StatusUnsupportedMediaType, codes.InvalidArgument,
			fmt.Sprintf("unsupported content type %q: use application/x-protobuf or application/json", ct))
		return
	}
	body, err := r.readBody(w, req)
	switch {
	case errors.Is(err, errTooLarge):
		r.writeStatus(w, enc, http.StatusRequestEntityTooLarge, codes.InvalidArgument,
			fmt.Sprintf("request body exceeds %d bytes", r.cfg.MaxBodyBytes))
		return
	case err != nil:
		r.writeStatus(w, enc, http.StatusBadRequest, codes.InvalidArgument, err.Error())
		return
	}
	docs, rej, err := r.Documents(enc, body)
	if err != nil {
		r.writeStatus(w, enc, http.StatusBadRequest, codes.InvalidArgument, err.Error())
		return
	}
	partial, err := r.export(req.Context(), docs, rej)
	if err != nil {
		r.writeConsumeError(w, enc, err)
		return
	}
	r.write(w, enc, http.StatusOK, &coltracepb.ExportTraceServiceResponse{PartialSuccess: partial})
}

// readBody reads the body, decompressing gzip, within the size limit (for the body as sent and as decoded).
func (r *Receiver) readBody(w http.ResponseWriter, req *http.Request) ([]byte, error) {
	limit := r.cfg.MaxBodyBytes
	if req.ContentLength > limit {
		return nil, errTooLarge
	}
	var src io.Reader = http.MaxBytesReader(w, req.Body, limit)
	switch ce := req.Header.Get("Content-Encoding"); ce {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, bodyError(err, "invalid gzip body")
		}
		defer zr.Close()
		src = zr
	default:
		return nil, fmt.Errorf("unsupported content encoding %q: use gzip or none", ce)
	}
	var buf bytes.Buffer
	if req.ContentLength > 0 {
		buf.Grow(int(req.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(src, limit+1))
	if err != nil {
		return nil, bodyError(err, "cannot read body")
	}
	if n > limit {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

func bodyError(err error, what string) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errTooLarge
	}
	return fmt.Errorf("%s: %w", what, err)
}

// writeConsumeError answers a refusal or failure of the consumer.
func (r *Receiver) writeConsumeError(w http.ResponseWriter, enc Encoding, err error) {
	if oe, ok := overload(err); ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(oe.RetryAfter.Seconds()))))
		code := http.StatusTooManyRequests
		if oe.Unavailable {
			code = http.StatusServiceUnavailable
		}
		r.writeStatus(w, enc, code, codes.Unavailable, oe.Reason)
		return
	}
	if errors.Is(err, pipeline.ErrStopped) {
		w.Header().Set("Retry-After", "1")
		r.writeStatus(w, enc, http.StatusServiceUnavailable, codes.Unavailable, "indexer is shutting down")
		return
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The client gave up waiting; its spans are still queued and will be written.
		r.cfg.Logger.Debug("client left before its spans were written", "err", err)
		w.Header().Set("Retry-After", "1")
		r.writeStatus(w, enc, http.StatusServiceUnavailable, codes.Unavailable, "request ended before the spans were stored")
		return
	}
	r.cfg.Logger.Error("export failed", "err", err)
	r.writeStatus(w, enc, http.StatusInternalServerError, codes.Internal, err.Error())
}

func (r *Receiver) writeStatus(w http.ResponseWriter, enc Encoding, httpCode int, code codes.Code, msg string) {
	r.write(w, enc, httpCode, &status.Status{Code: int32(code), Message: msg})
}

// write sends m in the request's encoding, as OTLP/HTTP requires for responses and errors alike.
func (r *Receiver) write(w http.ResponseWriter, enc Encoding, code int, m proto.Message) {
	var body []byte
	var err error
	if enc == JSON {
		w.Header().Set("Content-Type", "application/json")
		body, err = protojson.Marshal(m)
	} else {
		w.Header().Set("Content-Type", "application/x-protobuf")
		body, err = proto.Marshal(m)
	}
	if err != nil {
		r.cfg.Logger.Error("encode OTLP response", "err", err)
	}
	w.WriteHeader(code)
	if _, err := w.Write(body); err != nil {
		r.cfg.Logger.Debug("write OTLP response", "err", err)
	}
}
