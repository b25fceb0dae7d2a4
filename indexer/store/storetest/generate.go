package storetest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
)

// Generated services; every trace enters through the gateway.
var genServices = []string{"frontend", "checkout", "inventory-service", "payments", "shipping", "service-b", "catalog", "search", "users", "recommendations"}

// Generate produces about spans span documents in traces of 2 to 12 spans, spread over the two hours before
// Now, deterministically for a seed, and hands them to emit one trace at a time (with its trace document).
// Customers are 1..5000 (customer_id, as a string); about half of the traces touch inventory-service;
// durations are log-uniform between 100 us and 4 s; 2 % of spans fail. The benchmarks load it.
func Generate(spans int, seed uint64, emit func([]document.Span, document.Trace) error) error {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	window := 2 * time.Hour
	for trace, made := 0, 0; made < spans; trace++ {
		n := 2 + r.IntN(11)
		if made+n > spans {
			n = spans - made
		}
		tid := fmt.Sprintf("%016x%016x", r.Uint64(), uint64(trace))
		base := Now.Add(-time.Duration(r.Int64N(int64(window)))).UnixMicro()
		customer := fmt.Sprint(1 + r.IntN(5000))
		rootDur := logUniform(r, 100, 4_000_000)
		batch := make([]document.Span, n)
		for i := range batch {
			service := "gateway"
			if i > 0 {
				service = genServices[r.IntN(len(genServices))]
			}
			if i == 1 && r.IntN(2) == 0 {
				service = "inventory-service"
			}
			start, dur := base, rootDur
			parent := ""
			if i > 0 {
				start = base + r.Int64N(rootDur/2+1)
				dur = min(logUniform(r, 100, 4_000_000), base+rootDur-start)
				parent = batch[r.IntN(i)].SpanID
			}
			failed := r.IntN(50) == 0
			sp := document.Span{
				TraceID: tid, SpanID: fmt.Sprintf("%016x", r.Uint64()|1), ParentSpanID: parent,
				Name: "GET /api/" + service, Kind: "server", Service: service,
				Start: start, End: start + dur, Duration: dur, StatusCode: "ok", Error: failed,
				Attr: map[string]any{
					"customer_id": customer, "http.request.method": "GET", "http.route": "/api/" + service,
					"http.response.status_code": 200,
				},
				Resource: map[string]any{"service.name": service, "k8s.namespace.name": "shop"},
			}
			if failed {
				sp.StatusCode, sp.StatusMessage = "error", "upstream connect error: connection reset by peer"
				sp.Attr["http.response.status_code"] = 503
			}
			sp.ID = sp.TraceID + "-" + sp.SpanID
			batch[i] = sp
		}
		if err := emit(batch, rollup(batch)); err != nil {
			return err
		}
		made += n
	}
	return nil
}

// logUniform returns an integer between lo and hi, uniform on a log scale.
func logUniform(r *rand.Rand, lo, hi int64) int64 {
	l, h := math.Log(float64(lo)), math.Log(float64(hi))
	return int64(math.Exp(l + r.Float64()*(h-l)))
}
