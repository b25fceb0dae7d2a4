package receiver

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// TracesPath is the OTLP/HTTP path of trace exports.
const TracesPath = "/v1/traces"

// encoding is the encoding of an OTLP/HTTP body.
type encoding int

const (
	protobufEncoding encoding = iota // application/x-protobuf
	jsonEncoding                     // application/json
)

// HTTPServer returns an http.Server for OTLP/HTTP on TracesPath (and Zipkin v2 JSON on ZipkinPath) with the
// configured timeouts, so that slow or idle clients cannot hold connections (or the budget) indefinitely.
func (r *Receiver) HTTPServer() *http.Server {
	mux := http.NewServeMux()
	mux.Handle(TracesPath, r)
	mux.HandleFunc(ZipkinPath, r.serveZipkin)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: r.cfg.ReadHeaderTimeout,
		ReadTimeout:       r.cfg.ReadTimeout,
		WriteTimeout:      r.cfg.WriteTimeout,
		IdleTimeout:       r.cfg.IdleTimeout,
		MaxHeaderBytes:    r.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(r.cfg.Logger.Handler(), slog.LevelDebug),
	}
}

// ServeHTTP handles POST /v1/traces.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	began := time.Now()
	enc := protobufEncoding
	ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if ct == "application/json" {
		enc = jsonEncoding
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		r.writeStatus(w, enc, http.StatusMethodNotAllowed, codes.Unimplemented, "only POST is supported")
		return
	}
	if ct != "application/x-protobuf" && ct != "application/json" {
		r.writeStatus(w, enc, http.StatusUnsupportedMediaType, codes.InvalidArgument,
			fmt.Sprintf("unsupported content type %q: use application/x-protobuf or application/json", ct))
		return
	}
	tn, err := r.tenants.of(httpHeader(req))
	if err != nil {
		r.refuseHTTP(w, enc, err)
		return
	}
	body, held, err := r.readBody(w, req)
	defer r.release(held)
	if err != nil {
		r.refuseHTTP(w, enc, err)
		return
	}
	// A protobuf body's buffer is reused once the request is answered, unless the log may still hold it (see
	// Log). Nothing else keeps it: flatten.Validate builds nothing. A JSON body is left to the collector.
	reuse := enc == protobufEncoding
	defer func() {
		if reuse {
			putBuffer(body)
		}
	}()
	// The decoded form needs room too.
	factor := int64(decodeFactor)
	if enc == jsonEncoding {
		factor = jsonDecodeFactor
	}
	extra := int64(len(body)) * (factor - 1)
	if held+extra > r.cfg.MaxInflightBytes {
		r.refuseHTTP(w, enc, errJSONTooLarge)
		return
	}
	if !r.reserve(extra) {
		r.refuseHTTP(w, enc, errBudget)
		return
	}
	defer r.release(extra)
	a, err := r.decodeHTTP(enc, body)
	if err != nil {
		r.refuseHTTP(w, enc, err)
		return
	}
	partial, err := r.export(req.Context(), tn, a)
	if err != nil {
		reuse = false
		r.m.spans.WithLabelValues("http", "refused").Add(float64(a.spans))
		r.refuseHTTP(w, enc, err)
		return
	}
	r.accepted("http", a, began)
	r.write(w, enc, http.StatusOK, &coltracepb.ExportTraceServiceResponse{PartialSuccess: partial})
}

// accepted counts an acknowledged request.
func (r *Receiver) accepted(transport string, a accepted, began time.Time) {
	r.m.requests.WithLabelValues(transport, "accepted").Inc()
	r.m.spans.WithLabelValues(transport, "accepted").Add(float64(a.spans))
	r.m.spans.WithLabelValues(transport, "rejected").Add(float64(a.rej.Count))
	r.m.ack.WithLabelValues(transport).Observe(time.Since(began).Seconds())
}

// reserve takes n bytes of the in-flight budget, or reports that it cannot without waiting.
func (r *Receiver) reserve(n int64) bool {
	if n <= 0 {
		return true
	}
	if !r.budget.TryAcquire(n) {
		return false
	}
	r.m.inflight.Add(float64(n))
	return true
}

func (r *Receiver) release(n int64) {
	if n > 0 {
		r.budget.Release(n)
		r.m.inflight.Sub(float64(n))
	}
}

// readChunk is the first buffer of a body read; buffers double from there, each growth reserved first.
const readChunk = 32 << 10

// buffers pool read buffers by size class: buffers[i] holds buffers of capacity readChunk<<i, up to 8 MiB.
// A body grows through the classes as it is read (each growth reserved from the budget, as without pooling);
// sizes between classes (the last growth up to the size limit) are allocated and not pooled.
var buffers [9]sync.Pool

// getBuffer returns an empty buffer of capacity n, pooled when n is a class size.
func getBuffer(n int64) []byte {
	if i := bufferClass(n); i >= 0 {
		if b, ok := buffers[i].Get().(*[]byte); ok {
			return (*b)[:0]
		}
	}
	return make([]byte, 0, n)
}

// putBuffer pools b for another request if its capacity is a class size; b must not be used afterwards.
func putBuffer(b []byte) {
	if i := bufferClass(int64(cap(b))); i >= 0 {
		b = b[:0]
		buffers[i].Put(&b)
	}
}

// bufferClass is the pool index of buffers of capacity n, or -1.
func bufferClass(n int64) int {
	for i := range buffers {
		if n == readChunk<<i {
			return i
		}
	}
	return -1
}

// readBody reads the body, decompressing gzip, within the size limit (for the body as sent and as decoded)
// and the in-flight budget, which it reserves as the buffer grows (held, to be released by the caller):
// Content-Length is only compared with the limit, never allocated up front.
func (r *Receiver) readBody(w http.ResponseWriter, req *http.Request) (body []byte, held int64, err error) {
	limit := r.cfg.MaxBodyBytes
	if req.ContentLength > limit {
		return nil, 0, errTooLarge
	}
	var src io.Reader = http.MaxBytesReader(w, req.Body, limit)
	switch ce := req.Header.Get("Content-Encoding"); ce {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, 0, bodyError(err, "invalid gzip body")
		}
		defer zr.Close()
		src = zr
	default:
		return nil, 0, &DecodeError{Err: fmt.Errorf("unsupported content encoding %q: use gzip or none", ce)}
	}
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			grow := int64(max(cap(buf), readChunk))
			grow = min(grow, limit+1-int64(len(buf)))
			if !r.reserve(grow) {
				putBuffer(buf)
				return nil, held, errBudget
			}
			held += grow
			nb := getBuffer(int64(cap(buf)) + grow)[:len(buf)]
			copy(nb, buf)
			putBuffer(buf)
			buf = nb
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			putBuffer(buf)
			return nil, held, errTooLarge
		}
		if err == io.EOF {
			return buf, held, nil
		}
		if err != nil {
			putBuffer(buf)
			return nil, held, bodyError(err, "cannot read body")
		}
	}
}

func bodyError(err error, what string) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errTooLarge
	}
	return &DecodeError{Err: fmt.Errorf("%s: %w", what, err)}
}

// refuseHTTP answers err as refusalOf maps it.
func (r *Receiver) refuseHTTP(w http.ResponseWriter, enc encoding, err error) {
	f := r.refusalOf(err)
	r.m.requests.WithLabelValues("http", f.reason).Inc()
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.retryAfter.Seconds()))))
	}
	if f.http == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="meshtrace-ingest"`)
	}
	r.writeStatus(w, enc, f.http, f.grpc, f.msg)
}

func (r *Receiver) writeStatus(w http.ResponseWriter, enc encoding, httpCode int, code codes.Code, msg string) {
	r.write(w, enc, httpCode, &status.Status{Code: int32(code), Message: msg})
}

// write sends m in the request's encoding, as OTLP/HTTP requires for responses and errors alike.
func (r *Receiver) write(w http.ResponseWriter, enc encoding, code int, m proto.Message) {
	var body []byte
	var err error
	if enc == jsonEncoding {
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
