package receiver

import (
	"fmt"
	"math"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/meshtrace/meshtrace/indexer/zipkin"
)

// ZipkinPath is the Zipkin v2 path of span lists (what Envoy's Zipkin tracer and Istio's zipkin provider
// post), served beside TracesPath on the OTLP/HTTP port.
const ZipkinPath = "/api/v2/spans"

// serveZipkin handles POST /api/v2/spans: a Zipkin v2 JSON span list, converted to OTLP (package zipkin) and
// then validated, logged and acknowledged like an OTLP/HTTP JSON export, under the same size limits, in-flight
// budget and error mapping (refusalOf). Zipkin clients read only the status: 202 when logged, and on refusal
// the status with the reason as plain text.
func (r *Receiver) serveZipkin(w http.ResponseWriter, req *http.Request) {
	began := time.Now()
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "only POST is supported", http.StatusMethodNotAllowed)
		return
	}
	if ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(w, fmt.Sprintf("unsupported content type %q: use application/json (Zipkin v2 JSON)", ct),
			http.StatusUnsupportedMediaType)
		return
	}
	tn, err := r.tenants.of(httpHeader(req))
	if err != nil {
		r.refuseZipkin(w, err)
		return
	}
	body, held, err := r.readBody(w, req)
	defer r.release(held)
	if err != nil {
		r.refuseZipkin(w, err)
		return
	}
	extra := int64(len(body)) * (jsonDecodeFactor - 1)
	if held+extra > r.cfg.MaxInflightBytes {
		r.refuseZipkin(w, errJSONTooLarge)
		return
	}
	if !r.reserve(extra) {
		r.refuseZipkin(w, errBudget)
		return
	}
	defer r.release(extra)
	otlp, err := zipkin.Decode(body)
	if err != nil {
		r.refuseZipkin(w, &DecodeError{Err: err})
		return
	}
	a, err := r.decodeMessage(otlp)
	if err == nil {
		_, err = r.export(req.Context(), tn, a)
	}
	if err != nil {
		r.m.spans.WithLabelValues("zipkin", "refused").Add(float64(a.spans))
		r.refuseZipkin(w, err)
		return
	}
	r.accepted("zipkin", a, began)
	w.WriteHeader(http.StatusAccepted)
}

// refuseZipkin answers err as refusalOf maps it, in plain text.
func (r *Receiver) refuseZipkin(w http.ResponseWriter, err error) {
	f := r.refusalOf(err)
	r.m.requests.WithLabelValues("zipkin", f.reason).Inc()
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.retryAfter.Seconds()))))
	}
	http.Error(w, f.msg, f.http)
}
