// Package fieldcap caps the number of distinct attribute keys an index holds.
//
// Every distinct attribute key of span documents (span attributes, resource attributes, event and link
// attributes) becomes a field of the span index. Meilisearch breaks past 65,535 field names (it fails every
// indexing task); the embedded store has no such limit, but every key costs an entry in the in-memory
// directory of each segment holding it, so unbounded keys would be unbounded memory. A Limiter sits in front of the store: it keeps the keys the
// index already has, admits new keys while their number is under the cap, and moves the attributes whose keys
// are beyond the cap out of the indexed maps into document.Span.Overflow, one stored-but-not-indexed field
// that adds a single field name however many keys it holds. Overflowed attributes are returned with the
// document but cannot be filtered or searched on.
//
// The Limiter is primed with the field names already in the index (store.Store.Fields, see Load), so the cap
// holds across restarts.
package fieldcap

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// DefaultCap is the default number of distinct attribute field names per index. It is well under the 65,535
// field names Meilisearch can hold, counting the few dozen fixed fields of span documents, the one overflow
// field, and attribute keys of events and links (which are fields of their own: "events.attr.<k>" is not
// "attr.<k>"); the margin also absorbs names created before a restart that the store could not report.
const DefaultCap = 10_000

// MaxCap is the largest cap New accepts: above it Meilisearch's 65,535 field names would be within reach.
const MaxCap = 60_000

// logEvery is how often, at most, the Limiter logs that attributes keep overflowing after the first time.
const logEvery = time.Hour

// Stats are the Limiter's counters, for metrics.
type Stats struct {
	Cap                  int   // the cap on distinct attribute field names
	Keys                 int64 // distinct attribute field names known (primed from the store plus admitted)
	SpansOverflowed      int64 // spans that had at least one attribute moved to Overflow
	AttributesOverflowed int64 // attributes moved to Overflow
}

// Option configures a Limiter.
type Option func(*Limiter)

// WithLogger sets the logger of the cap-reached warnings (default slog.Default()).
func WithLogger(log *slog.Logger) Option { return func(l *Limiter) { l.log = log } }

// WithKeys primes the Limiter with attribute keys that must always be indexed, as span and as resource
// attributes (the business keys the rollup collects): they count towards the cap but are never overflowed.
func WithKeys(keys ...string) Option {
	return func(l *Limiter) {
		for _, k := range keys {
			l.prime = append(l.prime, "attr."+k, "resource."+k)
		}
	}
}

// WithTenantCap lets each tenant (document.Span.Tenant) create at most n of the names, so that one team's
// key explosion (a request id used as a key, say) cannot spend the whole cap for every team: past its share a
// tenant's new keys overflow while other tenants' new keys are still admitted. Names are counted against the
// tenant whose span created them since the Limiter was made (names primed from the store, or created before
// a restart, belong to no tenant). n <= 0: no per-tenant cap.
func WithTenantCap(n int) Option { return func(l *Limiter) { l.tenantCap = n } }

// Limiter enforces the cap on a stream of span documents. It is safe for concurrent use.
type Limiter struct {
	cap       int
	tenantCap int // names each tenant may create (WithTenantCap); 0: no per-tenant cap
	log       *slog.Logger
	prime     []string // names added by WithKeys

	mu      sync.RWMutex
	known   [4]map[string]struct{} // per document.AttributePaths entry, names after "<path>."
	count   int                    // sum of the sizes of known
	created map[string]int         // names created, by tenant (with a tenant cap)

	keys, spans, attrs atomic.Int64

	logMu     sync.Mutex
	logged    bool      // the first overflow was logged
	lastLog   time.Time // when the last warning was logged
	unlogged  [2]int64  // spans and attributes overflowed since then
	sampleKey string    // one of the keys overflowed since then
}

// New returns a Limiter admitting at most limit distinct attribute field names (DefaultCap when limit is 0 or
// negative, at most MaxCap), primed with the field names the index already has (store.Store.Fields; names
// that are not attribute fields are ignored). Known names are always kept, even past the cap.
func New(limit int, known []string, opts ...Option) *Limiter {
	if limit <= 0 {
		limit = DefaultCap
	}
	limit = min(limit, MaxCap)
	l := &Limiter{cap: limit, log: slog.Default(), created: map[string]int{}}
	for _, o := range opts {
		o(l)
	}
	for i := range l.known {
		l.known[i] = map[string]struct{}{}
	}
	for _, name := range append(known, l.prime...) {
		for p, path := range document.AttributePaths {
			if rest, ok := strings.CutPrefix(name, path+"."); ok && rest != "" {
				if _, dup := l.known[p][rest]; !dup {
					l.known[p][rest] = struct{}{}
					l.count++
				}
				break
			}
		}
	}
	l.keys.Store(int64(l.count))
	return l
}

// Load primes a Limiter with the field names of st's span index: call it at startup, after opening the store.
func Load(ctx context.Context, st store.Store, limit int, opts ...Option) (*Limiter, error) {
	known, err := st.Fields(ctx)
	if err != nil {
		return nil, fmt.Errorf("fieldcap: list the fields of the span index: %w", err)
	}
	return New(limit, known, opts...), nil
}

// Cap returns the cap on distinct attribute field names.
func (l *Limiter) Cap() int { return l.cap }

// Stats returns the counters.
func (l *Limiter) Stats() Stats {
	return Stats{Cap: l.cap, Keys: l.keys.Load(), SpansOverflowed: l.spans.Load(), AttributesOverflowed: l.attrs.Load()}
}

// Apply enforces the cap on a batch of span documents before they are written: attributes whose keys are
// known stay; attributes with new keys are admitted, in order, while the number of known names is under the
// cap; the others move to the document's Overflow (merged with what it already holds), keyed "attr.<k>",
// "resource.<k>", "events[<i>].attr.<k>" or "links[<i>].attr.<k>". An attribute is admitted or overflowed
// whole, with every field name its value creates (see document.AttributeFieldNames).
//
// Apply changes the elements of spans but never the attribute maps or the event and link slices they point
// to, which may be shared between documents: when something overflows, the document gets new ones. Applying
// it again to its own output changes nothing, so a batch that is retried needs no special care.
func (l *Limiter) Apply(spans []document.Span) {
	if l.allKnown(spans) {
		return
	}
	var over [2]int64
	var sample string
	l.mu.Lock()
	b := batch{l: l, filtered: map[mapOf]filtered{}}
	for i := range spans {
		if n := b.span(&spans[i], &sample); n > 0 {
			over[0]++
			over[1] += int64(n)
		}
	}
	l.keys.Store(int64(l.count))
	l.mu.Unlock()
	if over[0] > 0 {
		l.spans.Add(over[0])
		l.attrs.Add(over[1])
		l.warn(over, sample)
	}
}

// allKnown reports, under the read lock, whether every attribute of spans has only known field names: the
// common case, which needs no change and no exclusive lock.
func (l *Limiter) allKnown(spans []document.Span) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for i := range spans {
		s := &spans[i]
		if !l.mapKnown(0, s.Attr) || !l.mapKnown(1, s.Resource) {
			return false
		}
		for j := range s.Events {
			if !l.mapKnown(2, s.Events[j].Attr) {
				return false
			}
		}
		for j := range s.Links {
			if !l.mapKnown(3, s.Links[j].Attr) {
				return false
			}
		}
	}
	return true
}

func (l *Limiter) mapKnown(p int, m map[string]any) bool {
	for k, v := range m {
		if _, isList := v.([]any); !isList {
			if _, ok := l.known[p][k]; !ok {
				return false
			}
			continue
		}
		for _, rest := range l.names(p, k, v) {
			if _, ok := l.known[p][rest]; !ok {
				return false
			}
		}
	}
	return true
}

// names returns the field names attribute k creates under attribute path p, without the "<path>." prefix.
func (l *Limiter) names(p int, k string, v any) []string {
	path := document.AttributePaths[p]
	names := document.AttributeFieldNames(path, k, v)
	for i, n := range names {
		names[i] = n[len(path)+1:]
	}
	return names
}

// admit decides whether attribute k of path p, in a span of tenant tn, stays indexed, registering its new
// names if so. l.mu is held.
func (l *Limiter) admit(p int, k string, v any, tn string) bool {
	if _, isList := v.([]any); !isList {
		if _, ok := l.known[p][k]; ok {
			return true
		}
		if !l.room(1, tn) {
			return false
		}
		l.known[p][k] = struct{}{}
		l.count++
		l.created[tn]++
		return true
	}
	var unknown []string
	for _, rest := range l.names(p, k, v) {
		if _, ok := l.known[p][rest]; !ok {
			unknown = append(unknown, rest)
		}
	}
	if len(unknown) == 0 {
		return true
	}
	if !l.room(len(unknown), tn) {
		return false
	}
	for _, rest := range unknown {
		l.known[p][rest] = struct{}{}
	}
	l.count += len(unknown)
	l.created[tn] += len(unknown)
	return true
}

// room reports whether n more names fit under the cap and tenant tn's share of it. l.mu is held.
func (l *Limiter) room(n int, tn string) bool {
	return l.count+n <= l.cap && (l.tenantCap <= 0 || l.created[tn]+n <= l.tenantCap)
}

// batch is one Apply call under the exclusive lock. filtered remembers what became of each attribute map, so
// that documents sharing a map (spans of one resource) share the result and get the same decision.
type batch struct {
	l        *Limiter
	filtered map[mapOf]filtered
}

// mapOf identifies an attribute map of a tenant's span: the same map decides the same way for one tenant.
type mapOf struct {
	ptr    uintptr
	tenant string
}

// filtered is the outcome for one attribute map: the map to index (the original when nothing overflowed)
// and the overflowed attributes.
type filtered struct {
	keep map[string]any
	over map[string]any
}

// filter applies the cap to the attribute map m of path p of a span of tenant tn.
func (b *batch) filter(p int, m map[string]any, tn string) filtered {
	if len(m) == 0 {
		return filtered{keep: m}
	}
	id := mapOf{reflect.ValueOf(m).Pointer(), tn}
	if f, ok := b.filtered[id]; ok {
		return f
	}
	f := filtered{keep: m}
	for k, v := range m {
		if !b.l.admit(p, k, v, tn) {
			if f.over == nil {
				f.over = map[string]any{}
			}
			f.over[k] = v
		}
	}
	if f.over != nil {
		f.keep = make(map[string]any, len(m)-len(f.over))
		for k, v := range m {
			if _, out := f.over[k]; !out {
				f.keep[k] = v
			}
		}
		if len(f.keep) == 0 {
			f.keep = nil
		}
	}
	b.filtered[id] = f
	return f
}

// span applies the cap to one document and returns how many attributes it overflowed.
func (b *batch) span(s *document.Span, sample *string) int {
	var over map[string]any
	add := func(prefix string, f filtered) {
		for k, v := range f.over {
			if over == nil {
				over = map[string]any{}
			}
			over[prefix+k] = v
			if *sample == "" {
				*sample = prefix + k
			}
		}
	}
	if f := b.filter(0, s.Attr, s.Tenant); f.over != nil {
		s.Attr = f.keep
		add(document.AttrPath+".", f)
	}
	if f := b.filter(1, s.Resource, s.Tenant); f.over != nil {
		s.Resource = f.keep
		add(document.ResourcePath+".", f)
	}
	copied := false
	for i := range s.Events {
		if f := b.filter(2, s.Events[i].Attr, s.Tenant); f.over != nil {
			if !copied {
				s.Events, copied = append([]document.Event(nil), s.Events...), true
			}
			s.Events[i].Attr = f.keep
			add("events["+strconv.Itoa(i)+"].attr.", f)
		}
	}
	copied = false
	for i := range s.Links {
		if f := b.filter(3, s.Links[i].Attr, s.Tenant); f.over != nil {
			if !copied {
				s.Links, copied = append([]document.Link(nil), s.Links...), true
			}
			s.Links[i].Attr = f.keep
			add("links["+strconv.Itoa(i)+"].attr.", f)
		}
	}
	if over == nil {
		return 0
	}
	n := len(over)
	s.Overflow = encodeOverflow(s.Overflow, over)
	return n
}

// encodeOverflow renders the overflowed attributes as one JSON object with sorted keys, merged into the
// object already held (prev, whose entries win: they were overflowed first). A prev that is not a JSON object
// is kept, as a string, under the key "overflow".
func encodeOverflow(prev string, over map[string]any) string {
	if prev != "" {
		dec := json.NewDecoder(strings.NewReader(prev))
		dec.UseNumber()
		var old map[string]any
		if err := dec.Decode(&old); err != nil || old == nil {
			over[document.OverflowField] = prev
		}
		for k, v := range old {
			over[k] = v
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(over); err != nil {
		// Attribute values come from JSON-safe flattening; this is a programming error, not bad input.
		panic(fmt.Sprintf("fieldcap: encode overflow: %v", err))
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// warn logs the first overflow at once, and later ones at most once per logEvery, with the counts since the
// last message.
func (l *Limiter) warn(over [2]int64, sample string) {
	l.logMu.Lock()
	defer l.logMu.Unlock()
	l.unlogged[0] += over[0]
	l.unlogged[1] += over[1]
	if l.sampleKey == "" {
		l.sampleKey = sample
	}
	now := time.Now()
	msg := "attribute key cap reached: attributes with new keys are stored in the overflow field of spans, not indexed"
	if l.logged {
		if now.Sub(l.lastLog) < logEvery {
			return
		}
		msg = "attribute keys still overflowing the cap"
	}
	l.log.Warn(msg, "cap", l.cap, "keys", l.keys.Load(), "spans", l.unlogged[0], "attributes", l.unlogged[1],
		"example", l.sampleKey, "total_spans", l.spans.Load(), "total_attributes", l.attrs.Load())
	l.logged, l.lastLog, l.unlogged, l.sampleKey = true, now, [2]int64{}, ""
}

// RegisterMetrics registers the Limiter's Prometheus metrics with reg, read from Stats at each scrape.
func (l *Limiter) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshtrace_attribute_keys",
			Help: "Distinct attribute field names of the span index (the cap is meshtrace_attribute_keys_max)."},
			func() float64 { return float64(l.Stats().Keys) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshtrace_attribute_keys_max",
			Help: "Cap on distinct attribute field names; attributes with new keys past it are stored in the overflow field, not indexed."},
			func() float64 { return float64(l.cap) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshtrace_attribute_overflow_spans_total",
			Help: "Spans with at least one attribute moved to the overflow field because of the key cap."},
			func() float64 { return float64(l.Stats().SpansOverflowed) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshtrace_attribute_overflow_total",
			Help: "Attributes moved to the overflow field because of the key cap."},
			func() float64 { return float64(l.Stats().AttributesOverflowed) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
