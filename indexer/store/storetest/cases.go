package storetest

import (
	"fmt"

	"github.com/meshtrace/meshtrace/indexer/querysvc"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// Case is one query of the suite and its expected answer.
type Case struct {
	Query   string
	Target  string // "spans" or "traces" to override the query's default; "" keeps it
	Page    querysvc.Page
	Want    []string // fixture labels of the hits
	Ordered bool     // Want is in the expected order (otherwise compared as a set)
	Total   int      // expected Result.Total; -1: len(Want)
}

var (
	t1 = TraceID(1)
	t5 = TraceID(5)
)

// Cases are the queries the suite runs over the fixture.
var Cases = []Case{
	// The three queries the product is built around.
	{Query: "trace_id=" + t1 + " sort=start", Want: []string{"t1.1", "t1.2", "t1.3", "t1.4", "t1.5"}, Ordered: true},
	{Query: "service=service-b duration>=1s since=10m", Want: []string{"t6.2"}},
	{Query: "customer_id=123 service=inventory-service trace.duration>500ms since=1h", Want: []string{"t1"}},
	{Query: "trace.customer_id=123 trace.services=inventory-service trace.duration>500ms since=1h", Want: []string{"t1"}},
	// Same query, returning the matching spans instead of traces.
	{Query: "customer_id=123 service=inventory-service trace.duration>500ms since=1h", Target: "spans", Want: []string{"t1.5"}},

	// Equality is case-insensitive on strings; a number equals numeric and textual values alike.
	{Query: "service=INVENTORY-Service", Want: []string{"t1.5", "t3.5", "t4.5", "t5.5"}},
	{Query: "customer_id=123 service=service-b", Want: []string{"t6.2", "t8.2"}},
	{Query: `customer_id="123" kind=consumer`, Want: []string{"t6.2", "t8.2"}},
	{Query: `name="GET /checkout" since=1h`, Want: []string{"t1.1", "t1.2", "t2.1", "t2.2", "t3.1", "t3.2", "t4.1", "t4.2"}},
	{Query: "status=ERROR", Want: []string{"t1.5", "t7.2"}},
	{Query: "error=true", Want: []string{"t1.5", "t7.2"}},
	{Query: "service=nope", Want: nil},
	// The other way of a link: the spans linking to a span (querysvc's Trace.LinkedFrom).
	{Query: "links.span_id IN [" + fmt.Sprintf("%016x", 6*100+1) + ", " + fmt.Sprintf("%016x", 8*100+1) + "]", Want: []string{"t6.2", "t8.2"}},

	// Ordering operators compare numbers; durations take units.
	{Query: "attr.http.response.status_code>=500", Want: []string{"t1.5"}},
	{Query: "http.response.status_code=200 service=inventory-service", Want: []string{"t3.5", "t4.5", "t5.5"}},
	{Query: "duration<5ms since=1h", Want: []string{"t1.4", "t2.4", "t3.4", "t4.4", "t6.1", "t7.1", "t8.1"}},
	{Query: "duration=4ms", Want: []string{"t1.4", "t2.4", "t3.4", "t4.4", "t5.4"}},
	{Query: "messaging.kafka.offset IN [41, 42]", Want: []string{"t6.2", "t7.2", "t8.2"}},
	{Query: "trace.duration>=1s", Want: []string{"t5", "t6", "t7"}},

	// NOT and != also match documents without the field; EXISTS; IN.
	{Query: "NOT customer_id EXISTS", Want: []string{"t1.4", "t2.4", "t3.4", "t4.4", "t5.4"}},
	{Query: "customer_id!=123 service IN [postgres, service-b]", Want: []string{"t1.4", "t2.4", "t3.4", "t4.4", "t5.4", "t7.2"}},
	{Query: "NOT (customer_id=123 OR customer_id=456) since=1h", Want: []string{"t1.4", "t2.4", "t3.4", "t4.4", "t7.1", "t7.2"}},
	{Query: "kind IN [producer, CONSUMER]", Want: []string{"t6.1", "t6.2", "t7.1", "t7.2", "t8.1", "t8.2"}},
	{Query: "attr.messaging.system EXISTS service=orders-api", Want: []string{"t6.1", "t7.1", "t8.1"}},
	{Query: "(service=postgres OR service=service-b) error=true", Want: []string{"t7.2"}},
	{Query: "resource.k8s.namespace.name=shop service=orders-api", Want: []string{"t6.1", "t7.1", "t8.1"}},

	// Free text: whole words, case-insensitive, phrases in order, in name, status message, attributes, events.
	{Query: `"connection reset"`, Want: []string{"t1.5"}},
	{Query: `reset CONNECTION`, Want: []string{"t1.5"}},
	{Query: `"reset connection"`, Want: nil},
	{Query: `conn`, Want: nil},
	{Query: `timeout`, Want: []string{"t7.2"}},
	{Query: `"cache miss" since=1h`, Want: []string{"t1.5", "t3.5", "t4.5"}},
	{Query: `"stock sku" error=false`, Want: []string{"t3.5", "t4.5", "t5.5"}},
	{Query: `retry customer_id=123`, Want: []string{"t6.2", "t8.2"}},
	{Query: `kafka send`, Want: []string{"t6.1", "t7.1", "t8.1"}},
	{Query: `"kafka send"`, Want: nil}, // two attribute values: a phrase never spans values

	// Trace scope, and the two scopes together.
	{Query: "trace.services IN [service-b] trace.error_count>0", Want: []string{"t7"}},
	{Query: "trace.root_service=gateway since=1h", Want: []string{"t1", "t2", "t3", "t4"}},
	{Query: "trace.service=checkout", Want: []string{"t1", "t2", "t3", "t4", "t5"}},
	{Query: "service=inventory-service trace.customer_id=456", Target: "spans", Want: []string{"t3.5"}},
	{Query: "error=true trace.span_count>=5", Want: []string{"t1"}},
	{Query: "error=true trace.span_count>=5", Target: "spans", Want: []string{"t1.5"}},
	{Query: `"connection reset"`, Target: "traces", Want: []string{"t1"}},
	{Query: "trace.duration>10s service=gateway", Target: "spans", Want: nil},

	// Time windows.
	{Query: "between=25m..12m trace.root_service=gateway", Want: []string{"t2", "t4"}},
	{Query: "between=2026-11-22T11:40:00Z..2026-11-22T11:50:00Z service=service-b", Want: []string{"t7.2"}},
	{Query: "since=2026-11-22T11:54:00Z", Want: []string{"t8.2", "t8.1", "t6.2", "t6.1"}, Ordered: true},

	// Sorting and paging (Total counts every match).
	{Query: "since=1h sort=-duration", Target: "traces", Page: querysvc.Page{Limit: 3},
		Want: []string{"t7", "t6", "t2"}, Ordered: true, Total: 7},
	{Query: "since=1h sort=-duration", Target: "traces", Page: querysvc.Page{Offset: 3, Limit: 3},
		Want: []string{"t1", "t3", "t4"}, Ordered: true, Total: 7},
	{Query: "trace.root_service=orders-api sort=trace.span_count sort=start", Want: []string{"t7", "t6", "t8"}, Ordered: true},
	{Query: "", Page: querysvc.Page{Limit: 2}, Want: []string{"t8.2", "t8.1"}, Ordered: true, Total: 30},
}

// FacetCase is one count of the span index over the fixture (store.Store.Facet on store.Spans) and its
// expected answer.
type FacetCase struct {
	Name  string
	Query string // span conditions and time window in the query language (trace conditions and free text are not store filters)
	Field string // a document path: store.FacetFields or an attribute
	Limit int
	Want  []store.FacetCount // in order: most frequent first, ties by value ascending
}

// fc is a FacetCount.
func fc(v string, n int) store.FacetCount { return store.FacetCount{Value: v, Count: n} }

// SpanFacetCases are the counts of span fields the suite checks over the fixture.
var SpanFacetCases = []FacetCase{
	{Name: "services", Field: "service", Want: []store.FacetCount{fc("checkout", 5), fc("frontend", 5), fc("gateway", 5), fc("postgres", 5),
		fc("inventory-service", 4), fc("orders-api", 3), fc("service-b", 3)}},
	{Name: "services in the last hour", Query: "since=1h", Field: "service", Want: []store.FacetCount{fc("checkout", 4), fc("frontend", 4),
		fc("gateway", 4), fc("postgres", 4), fc("inventory-service", 3), fc("orders-api", 3), fc("service-b", 3)}},
	{Name: "limit keeps the most frequent, ties by value", Field: "service", Limit: 2, Want: []store.FacetCount{fc("checkout", 5), fc("frontend", 5)}},
	{Name: "limit cuts inside a tie", Query: "since=1h", Field: "service", Limit: 6, Want: []store.FacetCount{fc("checkout", 4), fc("frontend", 4),
		fc("gateway", 4), fc("postgres", 4), fc("inventory-service", 3), fc("orders-api", 3)}},
	{Name: "names", Field: "name", Want: []store.FacetCount{fc("GET /checkout", 10), fc("INSERT orders", 5), fc("POST /orders", 5),
		fc("GET /stock/{sku}", 4), fc("process orders", 3), fc("send orders", 3)}},
	{Name: "names within a service", Query: "service=inventory-service", Field: "name", Want: []store.FacetCount{fc("GET /stock/{sku}", 4)}},
	{Name: "names within two services in a window", Query: "service IN [gateway, service-b] between=25m..12m", Field: "name",
		Want: []store.FacetCount{fc("GET /checkout", 2), fc("process orders", 1)}},
	{Name: "names of a kind within a service", Query: "service=orders-api kind=producer", Field: "name", Want: []store.FacetCount{fc("send orders", 3)}},
	{Name: "kinds", Field: "kind", Want: []store.FacetCount{fc("server", 19), fc("client", 5), fc("consumer", 3), fc("producer", 3)}},
	{Name: "status codes", Field: "status_code", Want: []store.FacetCount{fc("unset", 18), fc("ok", 10), fc("error", 2)}},
	{Name: "customers of failing spans in the last hour", Query: "error=true since=1h", Field: "attr.customer_id",
		Want: []store.FacetCount{fc("123", 1), fc("789", 1)}},
	{Name: "customers of failing spans in a window", Query: "error=true between=25m..12m", Field: "attr.customer_id",
		Want: []store.FacetCount{fc("789", 1)}},
	// customer_id is a string from the shop's services and a number from the Kafka pair: 123 and "123" are
	// one value, as equality matches both.
	{Name: "customers, numbers and strings together", Field: "attr.customer_id", Want: []store.FacetCount{fc("123", 19), fc("456", 4), fc("789", 2)}},
	{Name: "a numeric attribute", Field: "attr.http.response.status_code", Want: []store.FacetCount{fc("200", 8), fc("503", 1)}},
	{Name: "an attribute of some spans", Query: "service=orders-api", Field: "attr.messaging.destination.name", Want: []store.FacetCount{fc("orders", 3)}},
	{Name: "a resource attribute", Field: "resource.k8s.namespace.name", Want: []store.FacetCount{fc("shop", 30)}},
	{Name: "an attribute no span has", Field: "attr.nope", Want: nil},
	{Name: "no match", Query: "service=nope", Field: "service", Want: nil},
}
