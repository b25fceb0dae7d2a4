// Package meili implements store.Store on Meilisearch, through the official client meilisearch-go.
//
// Open creates two indexes (spans and traces, primary key "id") and applies their settings -- filterable,
// sortable and searchable attributes, ranking rules that put the sort first, typo tolerance off on ids,
// maxTotalHits -- waiting for those tasks before any document is written, since changing filterable or
// sortable attributes later re-indexes everything. A third index, "fields", records the attribute field
// names of the span index (see Store.Fields).
//
// Writes are grouped into large batches per index: a batch is uploaded as soon as fewer than two batches of
// its index are in flight (one being waited for, one enqueued behind it), carrying every document that
// arrived meanwhile (up to MaxBatchDocs documents or MaxBatchBytes of NDJSON), or Linger after its first
// document when the indexer is idle. The batch size therefore adapts to how fast Meilisearch indexes, and
// Meilisearch always finds the next task waiting. Trace documents are coalesced: one per trace id in the batch
// still open, the latest. Write returns once the task holding its documents has succeeded; a failed task
// fails every Write in it with Meilisearch's error message (TaskError). Document ids are checked before
// anything is sent.
//
// A read whose context carries a restricted tenant scope (package tenant) is sent with a tenant token whose
// search rules restrict both indexes to the scope's tenants, so that Meilisearch itself enforces the scope;
// tenant.go says how Open finds the key's uid, what each read path does under a restricted scope and when
// Meilisearch cannot enforce scopes.
//
// Every request is retried with exponential backoff while Meilisearch is unreachable or answers 5xx/429, for
// up to RetryFor; other errors are returned at once. Retention deletes documents by filter on "start" when
// the store opens and every RetentionEvery after.
package meili

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// Config configures a Store. Only URL is required.
type Config struct {
	URL    string // e.g. http://meilisearch:7700
	APIKey string // an API key allowed to manage the indexes (or the master key); empty for an unprotected server
	// SearchAPIKey is used for searches (a key whose only action is "search" on the indexes); empty uses APIKey.
	// It also signs the tenant tokens that make Meilisearch enforce the tenant scope of a read (tenant.go).
	SearchAPIKey string
	// SearchAPIKeyUID is the uid of the search key (SearchAPIKey, else APIKey), which tenant tokens name.
	// Empty: Open looks it up (GET /keys, allowed to the master key or a key with keys.get) or recognizes a
	// key `indexer meili-keys` made; set it for another key that may not read keys. A wrong one fails Open.
	SearchAPIKeyUID string
	// RequireTenantTokens makes Open fail when Meilisearch cannot enforce tenant scopes with the configured
	// keys (no key, or the search key is the master key) instead of logging it and leaving the scope's filter
	// to the store (see tenant.go).
	RequireTenantTokens bool

	// IndexPrefix is prepended to the index names "spans" and "traces" (default "meshtrace-").
	IndexPrefix string
	// MaxBatchDocs and MaxBatchBytes bound one document batch (defaults 50,000 and 64 MiB; Meilisearch's
	// default payload limit is 100 MB).
	MaxBatchDocs  int
	MaxBatchBytes int
	// Linger is how long a batch waits for more documents when nothing is in flight (default 100ms).
	Linger time.Duration
	// MaxTotalHits is the index setting capping how many hits a search can reach (default store.MaxLimit,
	// 1,000: the embedded store returns no hit past that position either, and a scope join reads that many).
	// Meilisearch still reports the exact total past it.
	MaxTotalHits int64
	// RangeAttributes are the span attributes (names without "attr.") that support <, <=, >, >= (default
	// DefaultRangeAttributes); ranges on other attributes are refused. Changing the list re-indexes the spans.
	RangeAttributes []string
	// SearchCutoff is the index setting searchCutoffMs (default 5s): Meilisearch stops a search there and
	// answers with what it found so far. Such an answer is marked Result.Partial (see Search).
	SearchCutoff time.Duration
	// RetryFor bounds how long one request is retried while Meilisearch is unreachable (default 2m).
	RetryFor time.Duration
	// RetryInitial is the first backoff interval (default 200ms; it grows 1.5x per attempt, up to 10s).
	RetryInitial time.Duration
	// Retention deletes documents that started more than Retention ago when the store opens and then every
	// RetentionEvery (default 1h). Zero keeps documents forever.
	Retention      time.Duration
	RetentionEvery time.Duration
	// HTTPClient is used for every request (default newHTTPClient: no gzip, 60s timeout per request, 32 idle
	// connections per host). A client that asks for gzip makes every kept-alive search wait ~40 ms (see
	// transport.go).
	HTTPClient *http.Client
	// Logger receives retry and retention messages (default slog.Default()).
	Logger *slog.Logger
}

// DefaultConfig returns the values Open gives the fields left zero (URL and keys empty).
func DefaultConfig() Config {
	var c Config
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	c.IndexPrefix = cmp.Or(c.IndexPrefix, "meshtrace-")
	c.MaxBatchDocs = cmp.Or(c.MaxBatchDocs, 50_000)
	c.MaxBatchBytes = cmp.Or(c.MaxBatchBytes, 64<<20)
	c.Linger = cmp.Or(c.Linger, 100*time.Millisecond)
	c.MaxTotalHits = cmp.Or(c.MaxTotalHits, store.MaxLimit)
	c.RetryFor = cmp.Or(c.RetryFor, 2*time.Minute)
	c.RetryInitial = cmp.Or(c.RetryInitial, 200*time.Millisecond)
	c.RetentionEvery = cmp.Or(c.RetentionEvery, time.Hour)
	c.SearchCutoff = cmp.Or(c.SearchCutoff, 5*time.Second)
	if c.RangeAttributes == nil {
		c.RangeAttributes = DefaultRangeAttributes
	}
	if c.HTTPClient == nil {
		c.HTTPClient = newHTTPClient()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Store is a store.Store on Meilisearch.
type Store struct {
	cfg    Config
	client meilisearch.ServiceManager
	search meilisearch.ServiceManager // client with SearchAPIKey
	spans  *batcher
	traces *batcher
	fields *fieldRegistry
	ranged map[string]bool // "attr." + each of cfg.RangeAttributes
	log    *slog.Logger

	// tokens makes the tenant tokens of restricted reads; nil when Meilisearch cannot enforce tenant scopes
	// with the configured keys, for the reason unenforced (logged once, at the first restricted read).
	tokens         *tenantTokens
	unenforced     string
	unenforcedOnce sync.Once

	stop     chan struct{}
	wg       sync.WaitGroup
	closeErr error
	once     sync.Once
}

var _ store.Store = (*Store)(nil)

// BatchSize is the number of spans per Write the pipeline uses with this store unless told otherwise:
// Meilisearch indexes large tasks far faster per document than small ones (bench-ingest, side by side:
// 25,000 indexed 100,000 spans end to end 21 % faster than 10,000, with 170 us instead of 200 us of
// Meilisearch CPU per span, for 160 MB more indexer memory), and the documents wait in Meilisearch's
// process, not in the indexer's memory.
const BatchSize = 25_000

// Open connects to Meilisearch (retrying while it is unreachable), creates the indexes, applies their
// settings and waits for those tasks, finds the search key's uid for tenant tokens (failing when it cannot:
// see tenant.go), then applies retention once.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.URL == "" {
		return nil, errors.New("meili: no URL configured")
	}
	cfg.setDefaults()
	s := &Store{
		cfg:    cfg,
		client: newClient(cfg, cfg.APIKey),
		search: newClient(cfg, cmp.Or(cfg.SearchAPIKey, cfg.APIKey)),
		log:    cfg.Logger.With("store", "meilisearch"),
		stop:   make(chan struct{}),
		ranged: map[string]bool{},
	}
	for _, a := range cfg.RangeAttributes {
		s.ranged[query.AttrPrefix+a] = true
	}
	for _, sc := range []schema{spanSchema(cfg), traceSchema(cfg)} {
		if err := s.setup(ctx, s.uid(sc.index), sc); err != nil {
			return nil, err
		}
	}
	s.fields = &fieldRegistry{uid: cfg.IndexPrefix + fieldsIndex, known: map[string]bool{}}
	if err := s.setup(ctx, s.fields.uid, schema{settings: fieldsSchema()}); err != nil {
		return nil, err
	}
	if err := s.setupTenantTokens(ctx); err != nil {
		return nil, err
	}
	if cfg.Retention > 0 {
		if err := s.DeleteBefore(ctx, time.Now().Add(-cfg.Retention), nil); err != nil {
			return nil, fmt.Errorf("meili: retention: %w", err)
		}
		s.wg.Add(1)
		go s.retentionLoop()
	}
	s.spans = s.newBatcher(s.uid(store.Spans), false)
	s.traces = s.newBatcher(s.uid(store.Traces), true)
	return s, nil
}

// newClient returns a meilisearch-go client on cfg.HTTPClient with key (none if empty) and without the
// client's own retries (retry does that).
func newClient(cfg Config, key string) meilisearch.ServiceManager {
	opts := []meilisearch.Option{meilisearch.WithCustomClient(cfg.HTTPClient), meilisearch.DisableRetries()}
	if key != "" {
		opts = append(opts, meilisearch.WithAPIKey(key))
	}
	return meilisearch.New(cfg.URL, opts...)
}

// uid is the name of an index in Meilisearch.
func (s *Store) uid(ix store.Index) string { return s.cfg.IndexPrefix + ix.String() }

// Write queues the documents for their indexes and waits until Meilisearch has indexed them. If ctx ends
// first, Write returns its error but the documents stay queued (writing them again is harmless: documents
// with the same id replace each other).
func (s *Store) Write(ctx context.Context, spans []document.Span, traces []document.Trace) error {
	sb, err := encodeSpans(spans)
	if err != nil {
		return err
	}
	tb, err := encodeTraces(traces)
	if err != nil {
		return err
	}
	if err := s.recordFields(ctx, spans); err != nil {
		return err
	}
	var waits []*batch
	for _, q := range []struct {
		b     *batcher
		lines *lines
	}{{s.spans, sb}, {s.traces, tb}} {
		ws, err := q.b.add(q.lines)
		if err != nil {
			return err
		}
		waits = append(waits, ws...)
	}
	for _, b := range waits {
		select {
		case <-b.done:
			if b.err != nil {
				return b.err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close sends the pending batches, waits for their tasks and stops the background work. It returns the errors
// of the batches it sent.
func (s *Store) Close() error {
	s.once.Do(func() {
		close(s.stop)
		s.closeErr = errors.Join(s.spans.close(), s.traces.close())
		s.wg.Wait()
	})
	return s.closeErr
}

func (s *Store) retentionLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.RetentionEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RetryFor)
			if err := s.DeleteBefore(ctx, time.Now().Add(-s.cfg.Retention), nil); err != nil {
				s.log.Error("retention failed", "err", err)
			}
			cancel()
		}
	}
}
