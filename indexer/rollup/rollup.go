// Package rollup maintains one document.Trace per trace from span documents that arrive in any order, in
// several batches, late, or more than once.
//
// A trace document is a pure function of the set of distinct spans of its trace (keyed by span id), so it
// converges whatever the arrival order. The Rollup keeps, for recently active traces, a compact summary of every
// span seen (a cache bounded in spans and in idle time). A span of a trace that is no longer cached (a late
// span) makes the Rollup rebuild the trace's summary from the span documents already stored (through a
// Loader) before adding it, so late spans and retried duplicates still yield exact counts.
//
// Edges (document.Trace.Edges) are the trace's service graph, also a pure function of its spans: for every
// span,
//
//   - parent service > service, when its parent span is in the trace and belongs to another service (an
//     HTTP or gRPC call, or a Kafka consumer whose parent is the producer's span);
//   - linked service > service, for each link to a span of the same trace in another service (a consumer
//     linked to its producer);
//   - service > peer.service, for a client or producer span whose peer.service attribute names another
//     service (a TCP peer such as a database, instrumented or not);
//   - service > "topic:<messaging.destination.name>" for a producer span and "topic:<name>" > service for a
//     consumer span, so Kafka hops show through their topic even when the consumer starts a new trace.
//
// Late spans rebuild edges like everything else: a parent that arrives after its child adds the edge then.
//
// A Rollup is not safe for concurrent use: the pipeline gives each shard (a partition of the trace id space)
// its own Rollup, and calls Apply only after the documents of the previous Apply were written.
package rollup

import (
	"container/list"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/internal/defaults"
)

// DefaultKeys are the business keys rolled up when Config.Keys is empty.
var DefaultKeys = []string{"customer_id", "tenant_id", "user_id", "order_id"}

// Config sets up a Rollup. Zero fields take the values of DefaultConfig.
type Config struct {
	// Keys are the attribute names (span or resource attributes) collected into Trace.Keys.
	Keys []string
	// Window is how long a trace stays cached after its last span; later spans are merged through the Loader.
	Window time.Duration
	// MaxSpans bounds the span summaries cached; least recently active traces are evicted first.
	MaxSpans int
}

// Loader reads back what the store holds for traces that are no longer cached.
type Loader interface {
	// GetTraces returns the stored trace documents among ids (document ids, document.TraceDocID; missing ids
	// are omitted).
	GetTraces(ctx context.Context, ids []string) ([]document.Trace, error)
	// TraceSpans returns every stored span document of tenant's part of one trace.
	TraceSpans(ctx context.Context, tenant, traceID string) ([]document.Span, error)
}

// Rollup computes trace documents. Create it with New.
type Rollup struct {
	keys     []string
	window   time.Duration
	maxSpans int
	loader   Loader

	traces map[string]*entry
	lru    list.List // of *entry, most recently active first
	cached int       // span summaries held

	// Scratch reused from call to call (a Rollup is not used concurrently).
	seen    map[string]bool
	order   []string
	missing []string
	pairs   [][2]string
	words   []string
	edgeSet []string
}

// entry is one tenant's part of a trace: a trace crossing tenants gets a document per tenant, each built
// from that tenant's spans only.
type entry struct {
	id      string // document.TraceDocID
	tenant  string
	traceID string
	spans   map[string]summary // by span id
	last    time.Time
	elem    *list.Element
}

// summary is what a trace document needs from one span.
type summary struct {
	root       bool
	name       string
	service    string
	start, end int64
	err        bool
	keys       [][2]string // business key, value
	parent     string      // parent span id
	kind       string
	peer       string   // peer.service attribute
	topic      string   // messaging.destination.name attribute
	links      []string // ids of linked spans of the same trace
}

// TopicPrefix starts the node name of a messaging destination in Trace.Edges ("topic:orders").
const TopicPrefix = "topic:"

// New returns a Rollup; loader may be nil when no earlier documents can exist (tests, a fresh store).
func New(cfg Config, loader Loader) *Rollup {
	d := DefaultConfig()
	r := &Rollup{keys: cfg.Keys, window: cfg.Window, maxSpans: cfg.MaxSpans, loader: loader, traces: map[string]*entry{}}
	if len(r.keys) == 0 {
		r.keys = d.Keys
	}
	defaults.Set(&r.window, d.Window)
	defaults.Set(&r.maxSpans, d.MaxSpans)
	return r
}

// DefaultConfig returns the defaults New takes for zero fields.
func DefaultConfig() Config {
	return Config{Keys: DefaultKeys, Window: 5 * time.Minute, MaxSpans: 1_000_000}
}

// Cached returns the number of traces and span summaries in the cache.
func (r *Rollup) Cached() (traces, spans int) { return len(r.traces), r.cached }

// Apply adds spans and returns the current document of every trace they belong to, in order of first
// appearance. now drives idle eviction. On error (the Loader failed) nothing of spans was applied and the call
// may be repeated.
func (r *Rollup) Apply(ctx context.Context, spans []document.Span, now time.Time) ([]document.Trace, error) {
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	seen, order, missing := r.seen, r.order[:0], r.missing[:0]
	defer func() {
		clear(seen)
		clear(order)
		clear(missing)
		r.order, r.missing = order[:0], missing[:0]
	}()
	for i := range spans {
		id := document.TraceDocID(spans[i].Tenant, spans[i].TraceID)
		if seen[id] {
			continue
		}
		seen[id] = true
		order = append(order, id)
		if _, ok := r.traces[id]; !ok {
			missing = append(missing, id)
		}
	}
	if err := r.load(ctx, missing, now); err != nil {
		return nil, err
	}
	for i := range spans {
		s := &spans[i]
		id := document.TraceDocID(s.Tenant, s.TraceID)
		e := r.traces[id]
		if e == nil {
			e = r.insert(id, s.Tenant, s.TraceID, now)
		}
		if _, dup := e.spans[s.SpanID]; !dup {
			r.cached++
		}
		e.spans[s.SpanID] = r.summarize(s)
	}
	out := make([]document.Trace, 0, len(order))
	for _, id := range order {
		e := r.traces[id]
		e.last = now
		r.lru.MoveToFront(e.elem)
		out = append(out, r.document(e))
	}
	r.evict(now)
	return out, nil
}

// load rebuilds the summaries of uncached traces that already have documents in the store.
func (r *Rollup) load(ctx context.Context, ids []string, now time.Time) error {
	if r.loader == nil || len(ids) == 0 {
		return nil
	}
	stored, err := r.loader.GetTraces(ctx, ids)
	if err != nil {
		return fmt.Errorf("rollup: look up stored traces: %w", err)
	}
	for _, t := range stored {
		spans, err := r.loader.TraceSpans(ctx, t.Tenant, t.TraceID)
		if err != nil {
			return fmt.Errorf("rollup: load spans of trace %s: %w", t.ID, err)
		}
		e := r.insert(t.ID, t.Tenant, t.TraceID, now)
		for i := range spans {
			if _, dup := e.spans[spans[i].SpanID]; !dup {
				r.cached++
			}
			e.spans[spans[i].SpanID] = r.summarize(&spans[i])
		}
	}
	return nil
}

func (r *Rollup) insert(id, tenant, traceID string, now time.Time) *entry {
	e := &entry{id: id, tenant: tenant, traceID: traceID, spans: map[string]summary{}, last: now}
	e.elem = r.lru.PushFront(e)
	r.traces[id] = e
	return e
}

// evict drops traces idle for longer than the window, then least recently active traces while the cache holds
// more span summaries than allowed.
func (r *Rollup) evict(now time.Time) {
	for back := r.lru.Back(); back != nil; back = r.lru.Back() {
		e := back.Value.(*entry)
		if now.Sub(e.last) <= r.window && r.cached <= r.maxSpans {
			return
		}
		r.lru.Remove(back)
		delete(r.traces, e.id)
		r.cached -= len(e.spans)
	}
}

func (r *Rollup) summarize(s *document.Span) summary {
	sum := summary{root: s.ParentSpanID == "", name: s.Name, service: s.Service, start: s.Start, end: s.End, err: s.Error,
		parent: s.ParentSpanID, kind: s.Kind}
	sum.peer, _ = s.Attr["peer.service"].(string)
	if s.Kind == "producer" || s.Kind == "consumer" {
		sum.topic, _ = s.Attr["messaging.destination.name"].(string)
	}
	for _, l := range s.Links {
		if l.TraceID == s.TraceID && l.SpanID != "" && !slices.Contains(sum.links, l.SpanID) {
			sum.links = append(sum.links, l.SpanID)
		}
	}
	pairs := r.pairs[:0]
	for _, k := range r.keys {
		v, ok := s.Attr[k]
		if !ok {
			v, ok = s.Resource[k]
		}
		if ok {
			pairs = appendKeyValues(pairs, k, v)
		}
	}
	if len(pairs) > 0 {
		sum.keys = slices.Clone(pairs) // one allocation of the right size
	}
	r.pairs = pairs[:0]
	return sum
}

// appendKeyValues appends the (key, value) pairs business key k with attribute value v holds, as keyValues
// renders them, without a slice for a single value.
func appendKeyValues(dst [][2]string, k string, v any) [][2]string {
	switch x := v.(type) {
	case string:
		if x != "" {
			dst = append(dst, [2]string{k, x})
		}
		return dst
	case []any:
		for _, str := range keyValues(x) {
			dst = append(dst, [2]string{k, str})
		}
		return dst
	}
	for _, str := range keyValues(v) {
		dst = append(dst, [2]string{k, str})
	}
	return dst
}

// keyValues renders an attribute value as the strings a business key holds (one per list element).
func keyValues(v any) []string {
	switch x := v.(type) {
	case string:
		if x == "" {
			return nil
		}
		return []string{x}
	case bool:
		return []string{strconv.FormatBool(x)}
	case int64:
		return []string{strconv.FormatInt(x, 10)}
	case float64:
		return []string{strconv.FormatFloat(x, 'f', -1, 64)}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, keyValues(e)...)
		}
		return out
	}
	return nil
}

// document computes the trace document of e from its span summaries.
func (r *Rollup) document(e *entry) document.Trace {
	t := document.Trace{ID: e.id, Tenant: e.tenant, TraceID: e.traceID, SpanCount: len(e.spans)}
	first := true
	var rootID string
	var root summary
	services, pairs := r.words[:0], r.pairs[:0]
	for id, s := range e.spans {
		if first || s.start < t.Start {
			t.Start = s.start
		}
		if first || s.end > t.End {
			t.End = s.end
		}
		first = false
		if s.err {
			t.ErrorCount++
		}
		services = append(services, s.service)
		pairs = append(pairs, s.keys...)
		if s.root && (rootID == "" || s.start < root.start || (s.start == root.start && id < rootID)) {
			rootID, root = id, s
		}
	}
	t.Duration = t.End - t.Start
	t.Services = distinct(services)
	t.Edges = r.edges(e.spans)
	if rootID != "" {
		t.RootService, t.RootName = root.service, root.name
	}
	if len(pairs) > 0 {
		slices.SortFunc(pairs, func(a, b [2]string) int {
			if c := strings.Compare(a[0], b[0]); c != 0 {
				return c
			}
			return strings.Compare(a[1], b[1])
		})
		pairs = slices.Compact(pairs)
		t.Keys = map[string][]string{}
		for i := 0; i < len(pairs); {
			n := 1
			for i+n < len(pairs) && pairs[i+n][0] == pairs[i][0] {
				n++
			}
			list := make([]string, n)
			for j := range list {
				list[j] = pairs[i+j][1]
			}
			t.Keys[pairs[i][0]] = list
			i += n
		}
	}
	clear(services)
	clear(pairs)
	r.words, r.pairs = services[:0], pairs[:0]
	return t
}

// distinct returns the sorted distinct strings of list (which it sorts), in a new slice, never nil.
func distinct(list []string) []string {
	slices.Sort(list)
	return append([]string{}, slices.Compact(list)...)
}

// edges computes Trace.Edges from the span summaries of a trace (see the package documentation).
func (r *Rollup) edges(spans map[string]summary) []string {
	set := r.edgeSet[:0]
	add := func(parent, child string) {
		if parent != child {
			if e := document.Edge(parent, child); e != "" {
				set = append(set, e)
			}
		}
	}
	for _, s := range spans {
		if p, ok := spans[s.parent]; ok && s.parent != "" {
			add(p.service, s.service)
		}
		for _, l := range s.links {
			if p, ok := spans[l]; ok {
				add(p.service, s.service)
			}
		}
		if s.peer != "" && (s.kind == "client" || s.kind == "producer") {
			add(s.service, s.peer)
		}
		if s.topic != "" {
			switch s.kind {
			case "producer":
				add(s.service, TopicPrefix+s.topic)
			case "consumer":
				add(TopicPrefix+s.topic, s.service)
			}
		}
	}
	var out []string
	if len(set) > 0 {
		slices.Sort(set)
		out = slices.Clone(slices.Compact(set))
	}
	clear(set)
	r.edgeSet = set[:0]
	return out
}
