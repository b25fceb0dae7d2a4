package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	rollups "github.com/meshtrace/meshtrace/indexer/rollup"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// The shop fixture is what the store benchmarks share (the Meilisearch and embedded query benchmarks, the
// engine comparison in bench/engines): filter-shaped traces through a shop and the product's queries over
// them, each with the predicate that counts its answer while the documents are generated. Bump ShopVersion
// whenever the generator changes, so cached benchmark databases are rebuilt.
const (
	ShopVersion   = 1
	ShopCustomers = 10_000
	ShopWindow    = 6 * time.Hour // traces start uniformly over the 6 hours before ShopNow
)

// ShopNow is the instant the fixture is generated around and its queries are compiled at (since=1h counts
// back from it): fixed, so that a cached database answers the same queries.
var ShopNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// ShopCase is one benchmarked query. Exactly one of span and trace is set: the predicate that decides, on
// the generated documents, whether a document matches the query (the generator counts the matches and keeps
// the matching trace ids to check the answers by).
type ShopCase struct {
	Name  string
	Src   string // the query
	Limit int    // hits per page (0: store.DefaultLimit)
	Span  func(*document.Span) bool
	Trace func(*document.Trace, []document.Span) bool
	// Sorted, for span queries sorted by start ascending.
	Sorted bool
	// Traces asks for traces (the API's target=traces) of a query that would return spans.
	Traces bool

	Want    int             // matching documents, counted at generation
	WantIDs map[string]bool // ids of the matching traces (trace queries)

	// Facet, for a count of customer_id values (ShopFacetCase, instead of Span and Trace): the spans whose
	// values are counted; WantFacet the top ShopFacetLimit counts made at generation (Want their number).
	Facet     func(*document.Span) bool
	WantFacet []store.FacetCount
	counts    map[string]int
}

// ShopFacetCase names the count case of ShopCases: the top ShopFacetLimit customer_id values among the
// failing spans of the last hour.
const (
	ShopFacetCase  = "facet/failing-customers"
	ShopFacetLimit = 10
)

// ShopCases are the queries: the three product questions of the README, the trace-scope form of the third,
// recent errors, free text and business-key lookups. traceID is the trace the first one reads.
func ShopCases(traceID string) []*ShopCase {
	since := func(d time.Duration) int64 { return ShopNow.Add(-d).UnixMicro() }
	h1, m10 := since(time.Hour), since(10*time.Minute)
	customer := func(s *document.Span, id string) bool { v, _ := s.Attr["customer_id"].(string); return v == id }
	hasKey := func(t *document.Trace, id string) bool { return slices.Contains(t.Keys["customer_id"], id) }
	return []*ShopCase{
		{Name: "product/trace-spans", Src: "trace_id=" + traceID + " sort=start", Limit: store.MaxLimit, Sorted: true,
			Span: func(s *document.Span) bool { return s.TraceID == traceID }},
		{Name: "product/slow-spans", Src: "service=service-b duration>=1s since=10m",
			Span: func(s *document.Span) bool {
				return s.Service == "service-b" && s.Duration >= 1_000_000 && s.Start >= m10
			}},
		{Name: "product/customer-traces", Src: "customer_id=123 service=inventory-service trace.duration>500ms since=1h",
			Trace: func(t *document.Trace, spans []document.Span) bool {
				if t.Start < h1 || t.Duration <= 500_000 {
					return false
				}
				return slices.ContainsFunc(spans, func(s document.Span) bool {
					return s.Service == "inventory-service" && customer(&s, "123") && s.Start >= h1
				})
			}},
		{Name: "product/customer-traces-span-duration", Src: "customer_id=123 service=inventory-service duration>500ms since=1h",
			Traces: true, Trace: func(t *document.Trace, spans []document.Span) bool {
				return t.Start >= h1 && slices.ContainsFunc(spans, func(s document.Span) bool {
					return s.Service == "inventory-service" && customer(&s, "123") && s.Duration > 500_000 && s.Start >= h1
				})
			}},
		{Name: "trace-scope/customer-traces", Src: "trace.customer_id=123 trace.services=inventory-service trace.duration>500ms since=1h",
			Trace: func(t *document.Trace, _ []document.Span) bool {
				return t.Start >= h1 && t.Duration > 500_000 && hasKey(t, "123") && slices.Contains(t.Services, "inventory-service")
			}},
		{Name: "recent-errors", Src: "error=true since=10m",
			Span: func(s *document.Span) bool { return s.Error && s.Start >= m10 }},
		{Name: "recent-errors/service", Src: "service=inventory-service error=true since=1h",
			Span: func(s *document.Span) bool { return s.Service == "inventory-service" && s.Error && s.Start >= h1 }},
		{Name: "free-text", Src: `"connection reset"`,
			Span: func(s *document.Span) bool {
				return strings.Contains(strings.ToLower(s.StatusMessage), "connection reset")
			}},
		{Name: "free-text/service", Src: `service=inventory-service "connection reset" since=1h`,
			Span: func(s *document.Span) bool {
				return s.Service == "inventory-service" && s.Start >= h1 && strings.Contains(strings.ToLower(s.StatusMessage), "connection reset")
			}},
		{Name: "business-key/spans", Src: "customer_id=4711",
			Span: func(s *document.Span) bool { return customer(s, "4711") }},
		{Name: "business-key/traces", Src: "trace.customer_id=4711",
			Trace: func(t *document.Trace, _ []document.Span) bool { return hasKey(t, "4711") }},
		{Name: ShopFacetCase, Src: "error=true since=1h",
			Facet: func(s *document.Span) bool { return s.Error && s.Start >= h1 }},
	}
}

// check verifies one answer: as many hits as the page holds, each one a match, in order.
func (c *ShopCase) Check(res store.Result) error {
	if c.Want == 0 {
		return errors.New("the fixture has no match for this query: the benchmark would measure an empty answer")
	}
	limit := c.Limit
	if limit == 0 {
		limit = store.DefaultLimit
	}
	got := len(res.Spans) + len(res.Traces)
	if want := min(c.Want, limit); got != want {
		return fmt.Errorf("%d hits, want %d", got, want)
	}
	if c.Span != nil {
		if len(res.Traces) > 0 {
			return errors.New("traces returned for a span query")
		}
		for i := range res.Spans {
			s := &res.Spans[i]
			if !c.Span(s) {
				return fmt.Errorf("hit %s does not match: service %s, duration %d, start %d, error %v, %q, attr %v",
					s.ID, s.Service, s.Duration, s.Start, s.Error, s.StatusMessage, s.Attr)
			}
			if i > 0 {
				prev := &res.Spans[i-1]
				if c.Sorted && prev.Start > s.Start || !c.Sorted && prev.Start < s.Start {
					return fmt.Errorf("hits %d and %d out of order (start %d, %d)", i-1, i, prev.Start, s.Start)
				}
			}
		}
		return nil
	}
	if len(res.Spans) > 0 {
		return errors.New("spans returned for a trace query")
	}
	for i, t := range res.Traces {
		if !c.WantIDs[t.ID] {
			return fmt.Errorf("hit %s is not a matching trace: duration %d, start %d, services %v, keys %v",
				t.ID, t.Duration, t.Start, t.Services, t.Keys)
		}
		if i > 0 && res.Traces[i-1].Start < t.Start {
			return fmt.Errorf("hits %d and %d out of order (start %d, %d)", i-1, i, res.Traces[i-1].Start, t.Start)
		}
	}
	return nil
}

// Verify checks an answer to the case: its total is the count made at generation and it is not partial,
// and, when hits is set, its hits too (Check).
func (c *ShopCase) Verify(res store.Result, hits bool) error {
	if res.Total != c.Want || res.Partial {
		return fmt.Errorf("total %d (partial %v), want %d counted at generation", res.Total, res.Partial, c.Want)
	}
	if hits {
		return c.Check(res)
	}
	return nil
}

// Percentiles returns the median and the 99th percentile of durs, in milliseconds (durs gets sorted).
func Percentiles(durs []time.Duration) (p50, p99 float64) {
	slices.Sort(durs)
	pct := func(p float64) float64 {
		return float64(durs[max(0, int(math.Ceil(p*float64(len(durs))))-1)]) / 1e6
	}
	return pct(0.50), pct(0.99)
}

// ShopLookupTrace returns the id of a trace of the fixture with at least 10 spans (for the trace-by-id
// question): the first one after the 50,000th trace (after the spans/20th, when the fixture is smaller).
func ShopLookupTrace(spans, batch int) string {
	var id string
	n := 0
	stop := errors.New("stop")
	_ = GenerateShop(spans, batch, func(_ []document.Span, traces []document.Trace) error {
		for _, t := range traces {
			n++
			if n > min(50_000, spans/20) && t.SpanCount >= 10 {
				id = t.ID
				return stop
			}
		}
		return nil
	}, nil)
	return id
}

// GenerateShop generates the fixture deterministically: about spans spans in traces of 6 to 14 spans
// (10 on average), handed to emit in batches of batch spans (whole traces) with their trace documents
// from the rollup. For each case it counts the documents matching c.Span or c.Trace into c.Want (and the
// matching trace ids into c.WantIDs).
func GenerateShop(spans, batch int, emit func([]document.Span, []document.Trace) error, cases []*ShopCase) error {
	for _, c := range cases {
		c.Want, c.WantIDs, c.counts = 0, map[string]bool{}, map[string]int{}
	}
	g := newShopGen()
	ru := rollups.New(rollups.Config{MaxSpans: 4 * batch}, nil)
	var pending []document.Span
	flush := func() error {
		traces, err := ru.Apply(context.Background(), pending, ShopNow)
		if err != nil {
			return err
		}
		for _, c := range cases {
			if c.Facet != nil {
				for i := range pending {
					if v, ok := pending[i].Attr["customer_id"].(string); ok && c.Facet(&pending[i]) {
						c.counts[v]++
					}
				}
				continue
			}
			if c.Span != nil {
				for i := range pending {
					if c.Span(&pending[i]) {
						c.Want++
					}
				}
				continue
			}
			first := 0
			for i := range traces {
				n := traces[i].SpanCount
				if c.Trace(&traces[i], pending[first:first+n]) {
					c.Want++
					c.WantIDs[traces[i].ID] = true
				}
				first += n
			}
		}
		err = emit(pending, traces)
		pending = nil
		return err
	}
	for made := 0; made < spans; {
		t := g.trace()
		if made+len(t) > spans {
			t = t[:spans-made] // the last trace loses its latest spans, never its root
		}
		if len(pending)+len(t) > batch {
			if err := flush(); err != nil {
				return err
			}
		}
		pending = append(pending, t...)
		made += len(t)
	}
	if err := flush(); err != nil {
		return err
	}
	for _, c := range cases {
		if c.Facet != nil {
			c.WantFacet = nil
			for v, n := range c.counts {
				c.WantFacet = append(c.WantFacet, store.FacetCount{Value: v, Count: n})
			}
			c.WantFacet = store.SortFacets(c.WantFacet, ShopFacetLimit)
			c.Want = len(c.WantFacet)
		}
	}
	return nil
}

// shopGen generates shop traces shaped like the filter's spans: one HTTP server span per service hop (the
// gateway first, then the frontend and services behind it; about 45 % of traces reach inventory-service),
// TCP client spans to postgres and redis, and Kafka producer/consumer pairs (checkout publishing, service-b
// consuming). HTTP spans carry customer_id (10,000 customers: half the traffic uniform, half Zipf-skewed, so
// customer 123 is the busiest, with a few percent of the traces), method, route, path and status code.
// Durations are log-normal with a Pareto tail (2 % of traces take 1 s to 30 s); 1.5 % of traces fail on
// one HTTP span (connection resets, timeouts, 500s), which is marked as an error together with the root.
type shopGen struct {
	r    *rand.Rand
	zipf *rand.Zipf
	seq  int // traces made
}

func newShopGen() *shopGen {
	r := rand.New(rand.NewPCG(ShopVersion, 0x5eed))
	return &shopGen{r: r, zipf: rand.NewZipf(r, 1.1, 1, ShopCustomers-1)}
}

var (
	shopHops = []struct {
		service, method, route, path string
	}{
		{"checkout", "POST", "/orders", "/orders"},
		{"payments", "POST", "/charges", "/charges"},
		{"catalog", "GET", "/products/{id}", "/products/"},
		{"search", "GET", "/search", "/search"},
		{"users", "GET", "/users/{id}", "/users/"},
		{"recommendations", "GET", "/recommendations/{id}", "/recommendations/"},
		{"shipping", "POST", "/quotes", "/quotes"},
		{"service-b", "GET", "/status/{id}", "/status/"},
	}
	shopEntries = []struct{ method, route string }{
		{"GET", "/checkout"}, {"GET", "/products"}, {"GET", "/search"}, {"POST", "/cart"}, {"GET", "/account"},
	}
	shopFailures = []struct {
		status int64
		msg    string
	}{
		{503, "upstream connect error or disconnect/reset before headers. reset reason: connection reset"},
		{503, "upstream connect error or disconnect/reset before headers. reset reason: connection reset"},
		{503, "upstream connect error or disconnect/reset before headers. reset reason: connection reset"},
		{504, "upstream request timeout"},
		{504, "upstream request timeout"},
		{500, "internal server error"},
	}
)

// customer returns a customer id: uniform for half of the traces, Zipf-ranked for the other half (rank 0 is
// customer 123), as a string (business keys come from headers).
func (g *shopGen) customer() string {
	k := g.r.IntN(ShopCustomers)
	if g.r.IntN(2) == 0 {
		k = int(g.zipf.Uint64())
	}
	return fmt.Sprint((k*7919+122)%ShopCustomers + 1)
}

// duration returns a log-normal duration in microseconds (median in µs, sigma of the log), with a Pareto tail
// of probability tail between 1 s and 30 s.
func (g *shopGen) duration(median float64, sigma, tail float64) int64 {
	if g.r.Float64() < tail {
		return int64(min(1e6*math.Pow(1-g.r.Float64(), -1/1.5), 30e6))
	}
	return max(50, int64(median*math.Exp(sigma*g.r.NormFloat64())))
}

func (g *shopGen) trace() []document.Span {
	r := g.r
	g.seq++
	tid := fmt.Sprintf("%016x%016x", r.Uint64(), uint64(g.seq))
	start := ShopNow.Add(-time.Duration(r.Int64N(int64(ShopWindow)))).UnixMicro()
	n := 6 + r.IntN(9)
	customer := ""
	if r.IntN(20) != 0 { // 5 % anonymous
		customer = g.customer()
	}
	entry := shopEntries[r.IntN(len(shopEntries))]
	rootDur := g.duration(60_000, 0.9, 0.02)
	spans := make([]document.Span, 0, n+1)
	var httpSpans []int // indexes of HTTP server spans: parents of everything else
	newSpan := func(parent int, service, name, kind string, startOff, dur int64) *document.Span {
		sp := document.Span{TraceID: tid, SpanID: fmt.Sprintf("%016x", r.Uint64()|1), Name: name, Kind: kind,
			Service: service, StatusCode: "unset",
			Resource: map[string]any{"service.name": service, "service.version": "1.4.2", "k8s.namespace.name": "shop",
				"k8s.pod.name": fmt.Sprintf("%s-7d9f8b6c5-%c%c", service, 'a'+rune(r.IntN(3)), 'k'+rune(r.IntN(3)))}}
		if parent >= 0 {
			p := &spans[parent]
			sp.ParentSpanID = p.SpanID
			startOff = min(startOff, p.Duration)
			dur = min(dur, p.Duration-startOff)
			sp.Start = p.Start + startOff
		} else {
			sp.Start = start
		}
		sp.Duration = max(dur, 1)
		sp.End = sp.Start + sp.Duration
		sp.ID = tid + "-" + sp.SpanID
		spans = append(spans, sp)
		return &spans[len(spans)-1]
	}
	httpSpan := func(parent int, service, method, route, path string, dur int64) {
		var off int64
		if parent >= 0 {
			off = int64(r.Float64() * 0.3 * float64(spans[parent].Duration))
		}
		sp := newSpan(parent, service, method+" "+route, "server", off, dur)
		sp.Attr = map[string]any{"http.request.method": method, "http.route": route, "url.path": path,
			"http.response.status_code": int64(200), "network.protocol.version": "1.1",
			"envoy.upstream.cluster": "inbound|8080||" + service + ".shop.svc.cluster.local"}
		if customer != "" {
			sp.Attr["customer_id"] = customer
		}
		if parent < 0 {
			sp.Attr["user_agent.original"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0"
			sp.Attr["client.address"] = fmt.Sprintf("10.%d.%d.%d", r.IntN(4), r.IntN(256), 1+r.IntN(254))
		}
		httpSpans = append(httpSpans, len(spans)-1)
	}
	httpSpan(-1, "gateway", entry.method, entry.route, entry.route, rootDur)
	httpSpan(0, "frontend", entry.method, entry.route, entry.route, rootDur-int64(r.IntN(2000)))
	if r.Float64() < 0.43 {
		id := fmt.Sprint(10_000 + r.IntN(90_000))
		httpSpan(1, "inventory-service", "GET", "/stock/{sku}", "/stock/SKU-"+id,
			int64(float64(spans[1].Duration)*(0.3+0.6*r.Float64())))
	}
	for len(spans) < n {
		parent := httpSpans[r.IntN(len(httpSpans))]
		switch k := r.IntN(100); {
		case k < 62 || len(spans) == n-1 && k >= 82: // HTTP hop (a Kafka pair needs two spans)
			h := shopHops[r.IntN(len(shopHops))]
			path := h.path
			if strings.HasSuffix(path, "/") {
				path += fmt.Sprint(1 + r.IntN(100_000))
			}
			httpSpan(parent, h.service, h.method, h.route, path,
				int64(float64(spans[parent].Duration)*(0.1+0.6*r.Float64())))
		case spans[parent].Service == "gateway":
			continue // the gateway only forwards: TCP and Kafka spans come from the services behind it
		case k < 82: // TCP client span from the parent's service
			peer, port := "postgres", int64(5432)
			if r.IntN(3) == 0 {
				peer, port = "redis", 6379
			}
			p := &spans[parent]
			sp := newSpan(parent, p.Service, peer, "client", int64(r.Float64()*0.5*float64(p.Duration)), g.duration(2_000, 1.0, 0.002))
			sp.Attr = map[string]any{"network.transport": "tcp", "peer.service": peer, "server.address": peer + ".shop.svc.cluster.local",
				"server.port": port, "network.peer.port": port, "meshtrace.tcp.bytes_sent": int64(200 + r.IntN(4000)),
				"meshtrace.tcp.bytes_received": int64(100 + r.IntN(64_000)), "envoy.upstream.cluster": "outbound|" +
					fmt.Sprint(port) + "||" + peer + ".shop.svc.cluster.local"}
		default: // Kafka: the parent's service produces, service-b consumes (later, and on its own clock)
			p := &spans[parent]
			prod := newSpan(parent, p.Service, "orders publish", "producer", int64(r.Float64()*0.8*float64(p.Duration)), g.duration(1_500, 0.8, 0))
			attrs := func(op string) map[string]any {
				return map[string]any{"network.transport": "tcp", "messaging.system": "kafka", "messaging.operation.type": op,
					"messaging.operation.name":   map[string]string{"send": "produce", "process": "fetch"}[op],
					"messaging.destination.name": "orders", "messaging.destination.partition.id": fmt.Sprint(r.IntN(12)),
					"messaging.batch.message_count": int64(1 + r.IntN(20)), "server.port": int64(9092)}
			}
			prod.Attr = attrs("send")
			cons := document.Span{TraceID: tid, SpanID: fmt.Sprintf("%016x", r.Uint64()|1), ParentSpanID: prod.SpanID,
				Name: "orders process", Kind: "consumer", Service: "service-b", StatusCode: "unset",
				Start: prod.End + int64(r.IntN(20_000)), Duration: g.duration(80_000, 1.2, 0.03), Attr: attrs("process"),
				Resource: map[string]any{"service.name": "service-b", "service.version": "2.0.1", "k8s.namespace.name": "shop",
					"k8s.pod.name": fmt.Sprintf("service-b-5c4d7f9b8-%c%c", 'a'+rune(r.IntN(3)), 'k'+rune(r.IntN(3)))}}
			cons.End = cons.Start + cons.Duration
			cons.ID = tid + "-" + cons.SpanID
			spans = append(spans, cons)
		}
	}
	for i := range spans {
		if spans[i].StatusCode == "unset" && spans[i].Kind == "server" {
			spans[i].StatusCode = "ok"
		}
	}
	if r.IntN(1000) < 15 && len(httpSpans) > 1 {
		// One HTTP span fails (inventory-service when the trace reaches it), and so does the root.
		i := httpSpans[1+r.IntN(len(httpSpans)-1)]
		if len(httpSpans) > 2 && spans[httpSpans[2]].Service == "inventory-service" && r.IntN(2) == 0 {
			i = httpSpans[2]
		}
		f := shopFailures[r.IntN(len(shopFailures))]
		for _, j := range []int{i, 0} {
			spans[j].StatusCode, spans[j].StatusMessage, spans[j].Error = "error", f.msg, true
			spans[j].Attr["http.response.status_code"] = f.status
		}
	}
	return spans
}
