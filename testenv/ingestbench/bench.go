// Package ingestbench measures OTLP ingest of a real `indexer serve` process: it starts the indexer on loopback
// with a fresh store (the embedded one, or a real Meilisearch started with testenv/meilisearch), runs
// concurrent exporters that POST OTLP/HTTP protobuf requests of filter-like spans to it, and reports acked
// spans per second, ack latency, refusals, index lag (acked -> searchable), the time from the last ack until
// everything acked is searchable, and the indexer's CPU time per span and peak RSS.
//
// Every run is bounded: by a span count and/or a duration for the load, and by timeouts for startup, the
// wait for searchability and shutdown. All traffic goes to 127.0.0.1. `make bench-ingest` runs it through
// testenv/cmd/bench-ingest.
package ingestbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/testenv/indexerproc"
	"github.com/meshtrace/meshtrace/testenv/meilisearch"
)

// Store names accepted in Config.Stores.
const (
	Embedded = "embedded"
	Meili    = "meili"
)

// SearchAllQuery is the query whose span total counts everything a run sent (each run has a fresh store and
// generated spans start within the last few seconds).
const SearchAllQuery = "since=24h"

// Config is one benchmark run. Zero fields take the defaults shown.
type Config struct {
	// Indexer is the `indexer` binary (required).
	Indexer string
	// Stores are the stores to measure, in order (default embedded, meili).
	Stores []string
	// Exporters is the number of concurrent exporters (default 8).
	Exporters int
	// BatchSpans is the number of spans per request (default 500).
	BatchSpans int
	// Spans is the total number of spans to send (default 90,000 unless Duration is set).
	Spans int
	// Duration stops the exporters after this long (0: only Spans bounds the load).
	Duration time.Duration
	// Rate is the offered load in spans per second over all exporters (0: every exporter sends its next
	// request as soon as the previous one is answered).
	Rate float64
	// LagEvery samples the index lag of every LagEvery-th request (default 10).
	LagEvery int
	// LagPoll is the polling interval of the lag and searchability checks (default 100ms: every poll is a
	// trace fetch or a search the store answers while it indexes, so frequent polls slow what they measure).
	LagPoll time.Duration
	// RequestTimeout bounds one export request (default 2m).
	RequestTimeout time.Duration
	// MaxRetries is how often a request answered 429 or 503, or not answered, is sent again (default 10).
	MaxRetries int
	// SearchableTimeout bounds the wait, after the last ack, until every acked span is searchable (default 5m).
	SearchableTimeout time.Duration
	// IndexerArgs are extra `indexer serve` flags, e.g. --batch-size=4000.
	IndexerArgs []string
	// Meili configures the Meilisearch server of the meili store (default 2 indexing threads, 512 MiB).
	Meili meilisearch.Config
	// WorkDir is where the temporary store directories are made (default os.TempDir()).
	WorkDir string
	// Keep keeps the store directories and logs instead of removing them.
	Keep bool
	// Log receives progress lines (default io.Discard).
	Log io.Writer
}

func (c *Config) defaults() error {
	if c.Indexer == "" {
		return errors.New("ingestbench: Config.Indexer (the indexer binary) is required")
	}
	if len(c.Stores) == 0 {
		c.Stores = []string{Embedded, Meili}
	}
	for _, s := range c.Stores {
		if s != Embedded && s != Meili {
			return fmt.Errorf("ingestbench: unknown store %q (want %s or %s)", s, Embedded, Meili)
		}
	}
	if c.Exporters <= 0 {
		c.Exporters = 8
	}
	if c.BatchSpans <= 0 {
		c.BatchSpans = 500
	}
	if c.Spans < 0 || c.Duration < 0 || c.Rate < 0 {
		return errors.New("ingestbench: negative spans, duration or rate")
	}
	if c.Spans == 0 && c.Duration == 0 {
		c.Spans = 90_000
	}
	if c.LagEvery <= 0 {
		c.LagEvery = 10
	}
	if c.LagPoll <= 0 {
		c.LagPoll = 100 * time.Millisecond
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 2 * time.Minute
	}
	if c.MaxRetries <= 0 {
		c.MaxRetries = 10
	}
	if c.SearchableTimeout <= 0 {
		c.SearchableTimeout = 5 * time.Minute
	}
	if c.Meili.MaxIndexingThreads <= 0 {
		c.Meili.MaxIndexingThreads = 2
	}
	if c.Meili.MaxIndexingMemory == "" {
		c.Meili.MaxIndexingMemory = "512 MiB"
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return nil
}

// Result is the measurement of one store.
type Result struct {
	Store string
	// Requests and spans sent (each request counted once, however often it was retried) and acknowledged
	// with 200; Failed counts requests given up (another status, or retries exhausted).
	Requests, AckedRequests, Failed int
	SentSpans, AckedSpans           int
	// Answers by status over every attempt: 429, 503, any other non-200 status, and transport errors
	// (timeouts, refused connections).
	Status429, Status503, StatusOther, TransportErrors int
	// Load is the time from the first request sent to the last ack; AckedPerSec = AckedSpans / Load.
	Load        time.Duration
	AckedPerSec float64
	// Ack latency of the 200 answers: request sent -> 200.
	AckP50, AckP99, AckMax time.Duration
	// Index lag of the sampled requests (acked -> GET /api/v1/traces/{id} answers 200); LagMissing counts
	// samples still not found when the wait ended.
	LagSamples, LagMissing int
	LagP50, LagP99         time.Duration
	// LastAckToSearchable is the time from the last ack until the span total of SearchAllQuery reached
	// SearchableTarget; Searchable is the last total seen. Complete reports whether the target was reached.
	LastAckToSearchable time.Duration
	Searchable          int
	SearchableTarget    int
	Complete            bool
	// IndexerCPU is the indexer's user+system CPU time from the first request to the end of the
	// searchability wait; IndexerCPUPerSpan divides it by AckedSpans. IndexerPeakRSS is VmHWM, in bytes.
	IndexerCPU, IndexerCPUPerSpan time.Duration
	IndexerPeakRSS                int64
	// The same for the Meilisearch process (meili store only).
	MeiliCPU, MeiliCPUPerSpan time.Duration
	MeiliPeakRSS              int64
	// ClientCPU is the benchmark process's own CPU time over the same interval (span generation, protobuf
	// encoding, HTTP, polling), which competes with the indexer on a small machine.
	ClientCPU time.Duration
	// Pipeline is the indexer's GET /api/v1/ingest at the end.
	Pipeline map[string]any
	// MeiliTasks summarises Meilisearch's task list at the end, per index: tasks, documents received and
	// the time spent processing them (meili store only).
	MeiliTasks string
}

// SearchablePerSec is the end-to-end rate: acked spans over the time from the first request until the last
// acked span was searchable (0 if not everything became searchable).
func (r Result) SearchablePerSec() float64 {
	if !r.Complete || r.Load+r.LastAckToSearchable <= 0 {
		return 0
	}
	return float64(r.AckedSpans) / (r.Load + r.LastAckToSearchable).Seconds()
}

// Run measures every store of cfg in turn and returns one Result per store. It stops at the first store
// that cannot be measured (a process that fails to start, a context ended).
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	var out []Result
	for _, st := range cfg.Stores {
		r, err := runStore(ctx, cfg, st)
		if err != nil {
			return out, fmt.Errorf("%s: %w", st, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func runStore(ctx context.Context, cfg Config, storeName string) (res Result, err error) {
	res.Store = storeName
	dir, err := os.MkdirTemp(cfg.WorkDir, "bench-ingest-"+storeName+"-")
	if err != nil {
		return res, err
	}
	if cfg.Keep {
		fmt.Fprintf(cfg.Log, "%s: keeping %s\n", storeName, dir)
	} else {
		defer os.RemoveAll(dir)
	}
	args := []string{"--data-dir", dir + "/data"}
	var ms *meilisearch.Server
	if storeName == Meili {
		mc := cfg.Meili
		if mc.Dir == "" {
			mc.Dir = dir + "/meili"
			if err := os.Mkdir(mc.Dir, 0o755); err != nil {
				return res, err
			}
		}
		if ms, err = meilisearch.Start(ctx, mc); err != nil {
			return res, err
		}
		defer func() {
			if serr := ms.Stop(); serr != nil && err == nil {
				err = serr
			}
		}()
		fmt.Fprintf(cfg.Log, "%s: Meilisearch pid %d at %s\n", storeName, ms.PID, ms.URL)
		args = append(args, "--meili-url", ms.URL, "--meili-key", ms.Key)
	}
	ix, err := indexerproc.Start(ctx, cfg.Indexer, dir, append(args, cfg.IndexerArgs...), time.Minute)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := ix.Stop(time.Minute); serr != nil && err == nil {
			err = fmt.Errorf("indexer: %w\n--- %s (tail) ---\n%s", serr, ix.LogPath, indexerproc.Tail(ix.LogPath, 20))
		}
	}()
	fmt.Fprintf(cfg.Log, "%s: indexer pid %d, OTLP %s, API %s\n", storeName, ix.PID(), ix.OTLPURL, ix.APIURL)

	cpu0, err := indexerproc.CPUTime(ix.PID())
	if err != nil {
		return res, err
	}
	var mcpu0 time.Duration
	if ms != nil {
		if mcpu0, err = indexerproc.CPUTime(ms.PID); err != nil {
			return res, err
		}
	}
	self0, err := indexerproc.CPUTime(os.Getpid())
	if err != nil {
		return res, err
	}
	l := newLoad(cfg, ix)
	l.run(ctx)
	l.summarise(&res)
	fmt.Fprintf(cfg.Log, "%s: %d of %d spans acked in %v; waiting until they are searchable\n",
		storeName, res.AckedSpans, res.SentSpans, res.Load.Round(time.Millisecond))

	res.SearchableTarget = res.AckedSpans
	l.waitSearchable(ctx, &res)
	l.waitLag(&res)
	l.summariseLag(&res)

	cpu1, err := indexerproc.CPUTime(ix.PID())
	if err != nil {
		return res, err
	}
	res.IndexerCPU = cpu1 - cpu0
	if self1, err := indexerproc.CPUTime(os.Getpid()); err == nil {
		res.ClientCPU = self1 - self0
	}
	if res.IndexerPeakRSS, err = indexerproc.PeakRSS(ix.PID()); err != nil {
		return res, err
	}
	if ms != nil {
		mcpu1, err := indexerproc.CPUTime(ms.PID)
		if err != nil {
			return res, err
		}
		res.MeiliCPU = mcpu1 - mcpu0
		if res.MeiliPeakRSS, err = indexerproc.PeakRSS(ms.PID); err != nil {
			return res, err
		}
	}
	if res.AckedSpans > 0 {
		res.IndexerCPUPerSpan = res.IndexerCPU / time.Duration(res.AckedSpans)
		res.MeiliCPUPerSpan = res.MeiliCPU / time.Duration(res.AckedSpans)
	}
	_ = l.getJSON(ctx, ix.APIURL+"/api/v1/ingest", &res.Pipeline)
	if ms != nil {
		res.MeiliTasks = meiliTasks(ctx, l.client, ms)
	}
	if !res.Complete {
		fmt.Fprintf(cfg.Log, "%s: only %d of %d spans searchable after %v\n", storeName, res.Searchable, res.SearchableTarget, cfg.SearchableTimeout)
	}
	return res, ctx.Err()
}

// record is one request's outcome.
type record struct {
	spans   int
	traces  []string // ids; the first is sampled for lag, the last marks the exporter's progress
	sent    time.Time
	acked   time.Time // zero unless answered 200
	latency time.Duration
	lag     time.Duration // -1: sampled, not found
	sampled bool
}

type load struct {
	cfg    Config
	ix     *indexerproc.Process
	client *http.Client

	next                           atomic.Int64 // next request index
	s429, s503, sOther, sTransport atomic.Int64
	mu                             sync.Mutex
	records                        []*record
	numRequests                    int64
	lagWG                          sync.WaitGroup
	lagCtx                         context.Context
	lagCancel                      context.CancelFunc
	startedAt                      time.Time
}

func newLoad(cfg Config, ix *indexerproc.Process) *load {
	tr := &http.Transport{
		MaxIdleConns:        2 * (cfg.Exporters + 4),
		MaxIdleConnsPerHost: 2 * (cfg.Exporters + 4),
		DisableCompression:  true,
		IdleConnTimeout:     30 * time.Second,
	}
	n := int64(math.MaxInt64)
	if cfg.Spans > 0 {
		n = int64((cfg.Spans + cfg.BatchSpans - 1) / cfg.BatchSpans)
	}
	return &load{cfg: cfg, ix: ix, client: &http.Client{Transport: tr}, numRequests: n}
}

// run sends every request and returns when all exporters are done.
func (l *load) run(ctx context.Context) {
	l.lagCtx, l.lagCancel = context.WithTimeout(ctx, l.cfg.SearchableTimeout+time.Hour) // narrowed by waitSearchable
	l.startedAt = time.Now()
	stopAt := time.Time{}
	if l.cfg.Duration > 0 {
		stopAt = l.startedAt.Add(l.cfg.Duration)
	}
	var wg sync.WaitGroup
	for e := range l.cfg.Exporters {
		wg.Go(func() { l.exporter(ctx, e, stopAt) })
	}
	wg.Wait()
}

func (l *load) exporter(ctx context.Context, e int, stopAt time.Time) {
	g := newGenerator(rand.Uint64())
	for ctx.Err() == nil {
		i := l.next.Add(1) - 1
		if i >= l.numRequests {
			return
		}
		if l.cfg.Rate > 0 {
			at := l.startedAt.Add(time.Duration(float64(i) * float64(l.cfg.BatchSpans) / l.cfg.Rate * float64(time.Second)))
			if !sleep(ctx, time.Until(at)) {
				return
			}
		}
		if !stopAt.IsZero() && !time.Now().Before(stopAt) {
			return
		}
		n := l.cfg.BatchSpans
		if l.cfg.Spans > 0 {
			n = min(n, l.cfg.Spans-int(i)*l.cfg.BatchSpans)
		}
		req, traces := g.request(n, time.Now())
		body, err := proto.Marshal(req)
		if err != nil {
			panic(err) // generated messages always marshal
		}
		r := &record{spans: n, traces: traces, sampled: i%int64(l.cfg.LagEvery) == 0}
		l.send(ctx, r, body)
		l.mu.Lock()
		l.records = append(l.records, r)
		l.mu.Unlock()
		if r.sampled && !r.acked.IsZero() {
			l.lagWG.Go(func() { l.pollLag(r) })
		}
	}
}

// send posts body until it is answered 200, another final status, or retries run out.
func (l *load) send(ctx context.Context, r *record, body []byte) {
	for attempt := 0; attempt <= l.cfg.MaxRetries && ctx.Err() == nil; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
		req, err := http.NewRequestWithContext(rctx, http.MethodPost, l.ix.OTLPURL, bytes.NewReader(body))
		if err != nil {
			cancel()
			panic(err)
		}
		req.Header.Set("Content-Type", "application/x-protobuf")
		sent := time.Now()
		if r.sent.IsZero() {
			r.sent = sent
		}
		resp, err := l.client.Do(req)
		var code int
		var retryAfter string
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			code, retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
		}
		now := time.Now()
		cancel()
		switch {
		case err != nil:
			l.sTransport.Add(1)
		case code == http.StatusOK:
			r.acked, r.latency = now, now.Sub(sent)
			return
		case code == http.StatusTooManyRequests:
			l.s429.Add(1)
		case code == http.StatusServiceUnavailable:
			l.s503.Add(1)
		default:
			l.sOther.Add(1)
			return // not retryable
		}
		wait := time.Second
		if s, perr := strconv.Atoi(retryAfter); perr == nil {
			wait = time.Duration(s) * time.Second
		}
		if !sleep(ctx, min(max(wait, 100*time.Millisecond), 5*time.Second)) {
			return
		}
	}
}

// pollLag polls GET /api/v1/traces/{id} for the request's first trace until it answers 200.
func (l *load) pollLag(r *record) {
	u := l.ix.APIURL + "/api/v1/traces/" + r.traces[0]
	r.lag = -1
	for {
		if code, err := l.get(l.lagCtx, u); err == nil && code == http.StatusOK {
			r.lag = time.Since(r.acked)
			return
		}
		if !sleep(l.lagCtx, l.cfg.LagPoll) {
			return
		}
	}
}

// waitSearchable polls the span total of SearchAllQuery (exact in both stores, whatever the number) until it
// reaches res.SearchableTarget or the timeout ends.
func (l *load) waitSearchable(ctx context.Context, res *Result) {
	lastAck := l.lastAck()
	ctx, cancel := context.WithTimeout(ctx, l.cfg.SearchableTimeout)
	defer cancel()
	u := l.ix.APIURL + "/api/v1/search?" + url.Values{"q": {SearchAllQuery}, "target": {"spans"}, "limit": {"1"}}.Encode()
	for {
		var sr struct {
			Total int `json:"total"`
		}
		if err := l.getJSON(ctx, u, &sr); err == nil {
			res.Searchable = sr.Total
		}
		if res.Searchable >= res.SearchableTarget {
			res.Complete = true
			res.LastAckToSearchable = max(0, time.Since(lastAck))
			return
		}
		if !sleep(ctx, l.cfg.LagPoll) {
			res.LastAckToSearchable = time.Since(lastAck)
			return
		}
	}
}

// waitLag waits for the lag pollers: when everything is searchable they find their traces on their next
// poll, so they get a grace period; samples not found by then are missing.
func (l *load) waitLag(res *Result) {
	done := make(chan struct{})
	go func() { l.lagWG.Wait(); close(done) }()
	if res.Complete {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	}
	l.lagCancel()
	<-done
}

func (l *load) lastAck() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var t time.Time
	for _, r := range l.records {
		if r.acked.After(t) {
			t = r.acked
		}
	}
	if t.IsZero() {
		return time.Now()
	}
	return t
}

func (l *load) get(ctx context.Context, u string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (l *load) getJSON(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// sleep waits for d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
