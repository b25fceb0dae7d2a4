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
	// GetTraces returns the stored trace documents among ids (missing ids are omitted).
	GetTraces(ctx context.Context, ids []string) ([]document.Trace, error)
	// TraceSpans returns every stored span document of one trace.
	TraceSpans(ctx context.Context, traceID string) ([]document.Span, error)
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
}

type entry struct {
	id    string
	spans map[string]summary // by span id
	last  time.Time
	elem  *list.Element
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
	var order []string
	seen := map[string]bool{}
	var missing []string
	for i := range spans {
		id := spans[i].TraceID
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
		e := r.traces[s.TraceID]
		if e == nil {
			e = r.insert(s.TraceID, now)
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
		out = append(out, e.document())
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
		spans, err := r.loader.TraceSpans(ctx, t.TraceID)
		if err != nil {
			return fmt.Errorf("rollup: load spans of trace %s: %w", t.TraceID, err)
		}
		e := r.insert(t.TraceID, now)
		for i := range spans {
			if _, dup := e.spans[spans[i].SpanID]; !dup {
				r.cached++
			}
			e.spans[spans[i].SpanID] = r.summarize(&spans[i])
		}
	}
	return nil
}

func (r *Rollup) insert(id string, now time.Time) *entry {
	e := &entry{id: id, spans: map[string]summary{}, last: now}
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
	for _, k := range r.keys {
		v, ok := s.Attr[k]
		if !ok {
			v, ok = s.Resource[k]
		}
		if !ok {
			continue
		}
		for _, str := range keyValues(v) {
			sum.keys = append(sum.keys, [2]string{k, str})
		}
	}
	return sum
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

// document computes the trace document from the span summaries.
func (e *entry) document() document.Trace {
	t := document.Trace{ID: e.id, TraceID: e.id, SpanCount: len(e.spans), Services: []string{}}
	first := true
	var rootID string
	var root summary
	services := map[string]bool{}
	keys := map[string]map[string]bool{}
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
		if !services[s.service] {
			services[s.service] = true
			t.Services = append(t.Services, s.service)
		}
		for _, kv := range s.keys {
			if keys[kv[0]] == nil {
				keys[kv[0]] = map[string]bool{}
			}
			keys[kv[0]][kv[1]] = true
		}
		if s.root && (rootID == "" || s.start < root.start || (s.start == root.start && id < rootID)) {
			rootID, root = id, s
		}
	}
	t.Duration = t.End - t.Start
	slices.Sort(t.Services)
	t.Edges = edges(e.spans)
	if rootID != "" {
		t.RootService, t.RootName = root.service, root.name
	}
	if len(keys) > 0 {
		t.Keys = make(map[string][]string, len(keys))
		for k, vals := range keys {
			list := make([]string, 0, len(vals))
			for v := range vals {
				list = append(list, v)
			}
			slices.Sort(list)
			t.Keys[k] = list
		}
	}
	return t
}

// edges computes Trace.Edges from the span summaries of a trace (see the package documentation).
func edges(spans map[string]summary) []string {
	set := map[string]bool{}
	add := func(parent, child string) {
		if parent != child {
			if e := document.Edge(parent, child); e != "" {
				set[e] = true
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
	if len(set) == 0 {
		return nil
	}
	out := make([]string, 0, len(set))
	for e := range set {
		out = append(out, e)
	}
	slices.Sort(out)
	return out
}
