package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/meshtrace/meshtrace/indexer/api"
	"github.com/meshtrace/meshtrace/indexer/auth"
	"github.com/meshtrace/meshtrace/indexer/fieldcap"
	"github.com/meshtrace/meshtrace/indexer/pipeline"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/receiver"
	"github.com/meshtrace/meshtrace/indexer/rollup"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
	"github.com/meshtrace/meshtrace/indexer/store/meili"
	"github.com/meshtrace/meshtrace/indexer/tenant"
	"github.com/meshtrace/meshtrace/indexer/wal"
)

// serveConfig is everything `indexer serve` is configured with. Its component configs start from their
// packages' defaults (newServeConfig), and the flags are bound to their fields.
type serveConfig struct {
	otlpHTTPAddr, otlpGRPCAddr, apiAddr string
	dataDir, walDir                     string
	meili                               meili.Config
	retention                           time.Duration
	tenantRetention                     map[string]time.Duration
	hmacKeyFile                         string
	wal                                 wal.Config
	receiver                            receiver.Config
	pipeline                            pipeline.Config
	attributeKeys, tenantAttributeKeys  int
	api                                 api.Config
	auth                                auth.Config
	ingest                              auth.IngestConfig
	shutdownTimeout                     time.Duration
	logLevel, logFormat                 string
}

// newServeConfig returns the defaults of `indexer serve`.
func newServeConfig() serveConfig {
	return serveConfig{
		otlpHTTPAddr: ":4318", otlpGRPCAddr: ":4317", apiAddr: ":8080", dataDir: "data",
		retention:       7 * 24 * time.Hour,
		meili:           meili.DefaultConfig(),
		wal:             wal.DefaultConfig(),
		receiver:        receiver.DefaultConfig(),
		pipeline:        pipeline.DefaultConfig(),
		attributeKeys:   fieldcap.DefaultCap,
		api:             api.Config{QueryTimeout: api.DefaultQueryTimeout},
		auth:            auth.DefaultConfig(),
		shutdownTimeout: 30 * time.Second,
		logLevel:        "info", logFormat: "text",
	}
}

func newServeCmd() *cobra.Command {
	c := newServeConfig()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Receive OTLP traces and serve the search API, the Jaeger API and the web page",
		Long: `Receive OTLP traces (HTTP on --otlp-http-addr, gRPC on --otlp-grpc-addr), log each accepted request in
the write-ahead log under --wal-dir before acknowledging it, index them in Meilisearch (--meili-url) or in the
embedded store under --data-dir, and serve the search API, the Jaeger query API, Prometheus metrics (/metrics)
and the web page on --api-addr. Every flag can be set with an environment variable: MESHTRACE_ and the flag
name in upper case with underscores (--data-dir: MESHTRACE_DATA_DIR). SIGINT or SIGTERM stops ingest, writes
what it can within --shutdown-timeout and exits; what is left stays in the log for the next start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(c.logLevel, c.logFormat)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, c, log, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.otlpHTTPAddr, "otlp-http-addr", c.otlpHTTPAddr, "OTLP/HTTP listen address (POST /v1/traces)")
	f.StringVar(&c.otlpGRPCAddr, "otlp-grpc-addr", c.otlpGRPCAddr, "OTLP/gRPC listen address")
	f.StringVar(&c.apiAddr, "api-addr", c.apiAddr, "search API, Jaeger API, /metrics and web page listen address")
	f.StringVar(&c.dataDir, "data-dir", c.dataDir, "directory of the embedded store (used when --meili-url is empty) and, by default, of the write-ahead log")
	f.StringVar(&c.walDir, "wal-dir", "", "directory of the write-ahead log (default: <data-dir>/wal); put it on a disk with room for --wal-max-bytes")
	f.Int64Var(&c.wal.MaxBytes, "wal-max-bytes", c.wal.MaxBytes, "write-ahead log size at which OTLP clients get 429 (4 GiB holds about 8.8 million filter spans: a 15-minute store outage at 10,000 spans/s)")
	f.Int64Var(&c.wal.SegmentBytes, "wal-segment-bytes", c.wal.SegmentBytes, "write-ahead log segment size; a segment is deleted once the store holds all of it")
	f.StringVar(&c.meili.URL, "meili-url", "", "Meilisearch URL; empty selects the embedded store")
	f.StringVar(&c.meili.APIKey, "meili-key", "", "Meilisearch API key allowed to manage the indexes (made by indexer meili-keys; prefer MESHTRACE_MEILI_KEY, which ps does not show)")
	f.StringVar(&c.meili.SearchAPIKey, "meili-search-key", "", "Meilisearch API key for searches, allowed only \"search\" (made by indexer meili-keys; prefer MESHTRACE_MEILI_SEARCH_KEY); empty: --meili-key")
	f.StringVar(&c.meili.SearchAPIKeyUID, "meili-search-key-uid", "", "uid of --meili-search-key, which signs the tenant tokens that make Meilisearch itself restrict a tenant's searches (empty: looked up, or derived as indexer meili-keys makes it)")
	f.BoolVar(&c.meili.RequireTenantTokens, "meili-require-tenant-tokens", false, "refuse to start when Meilisearch cannot enforce tenant scopes itself with tenant tokens (instead of only the indexer's filter)")
	f.StringSliceVar(&c.meili.RangeAttributes, "meili-range-attributes", c.meili.RangeAttributes, "span attributes (without attr.) that support <, <=, >, >= in Meilisearch; others support =, !=, IN, EXISTS (changing the list re-indexes the spans)")
	f.DurationVar(&c.meili.SearchCutoff, "meili-search-cutoff", c.meili.SearchCutoff, "Meilisearch's searchCutoffMs: a search stopped there answers what it found, marked partial")
	f.StringSliceVar(&c.pipeline.Rollup.Keys, "keys", c.pipeline.Rollup.Keys, "business keys rolled up into trace documents")
	f.DurationVar(&c.retention, "retention", c.retention, "delete documents older than this (0 keeps them forever)")
	f.Var(tenantDurations{&c.tenantRetention}, "tenant-retention", "retention of given tenants, overriding --retention: team-a=720h,team-b=24h (0 keeps a tenant's documents forever)")
	f.Int64Var(&c.receiver.MaxBodyBytes, "max-body-bytes", c.receiver.MaxBodyBytes, "largest OTLP request, compressed or not (413 above)")
	f.Int64Var(&c.receiver.MaxInflightBytes, "max-inflight-bytes", c.receiver.MaxInflightBytes, "bytes all OTLP requests being read and decoded may hold together (429 beyond); at least 4 x --max-body-bytes")
	f.IntVar(&c.pipeline.BatchSize, "batch-size", 0, "spans per store write (0: the store's choice, 5,000 for the embedded store, 10,000 for Meilisearch)")
	f.DurationVar(&c.pipeline.BatchTimeout, "batch-timeout", c.pipeline.BatchTimeout, "longest wait for a batch to fill when the store is caught up")
	f.IntVar(&c.pipeline.Shards, "shards", c.pipeline.Shards, "parallel store writers, spans routed by trace id (0: one per CPU)")
	f.DurationVar(&c.pipeline.Rollup.Window, "rollup-window", c.pipeline.Rollup.Window, "how long a trace stays in the rollup cache after its last span")
	f.IntVar(&c.pipeline.Rollup.MaxSpans, "rollup-max-spans", c.pipeline.Rollup.MaxSpans, "span summaries the rollup cache holds, over all shards")
	f.IntVar(&c.attributeKeys, "max-attribute-keys", c.attributeKeys, "distinct attribute keys indexed (span, resource, event and link attributes; at most 60,000); attributes with new keys past it are kept in each span's overflow field, not searchable")
	f.DurationVar(&c.api.QueryTimeout, "query-timeout", c.api.QueryTimeout, "time budget of one API request's store work; past it the work stops and the request answers 503")
	f.StringVar(&c.auth.TokensFile, "api-tokens-file", "", "API tokens for scripts, one \"<token> <tenant>[,<tenant>...]\" or \"<token> *\" (every tenant) per line (a mounted Secret); with neither this nor --oidc-issuer the API is open to anyone who reaches it, for every tenant")
	f.StringVar(&c.auth.OIDCIssuer, "oidc-issuer", "", "OpenID Connect issuer whose JWT bearer tokens the API accepts (Grafana or an oauth2-proxy forwarding the user's token)")
	f.StringVar(&c.auth.OIDCJWKSURL, "oidc-jwks-url", "", "JWKS URL of the issuer's keys (empty: OpenID discovery from --oidc-issuer)")
	f.StringVar(&c.auth.OIDCAudience, "oidc-audience", "", "audience the JWTs must carry (empty: not checked, logged as a warning)")
	f.StringVar(&c.auth.TenantClaim, "oidc-tenant-claim", c.auth.TenantClaim, "JWT claim (a string or a list) naming the caller's tenants")
	f.StringVar(&c.auth.TenantMapFile, "oidc-tenant-map", "", "file of \"<claim value> <tenant>[,<tenant>...]\" lines mapping claim values (e.g. groups) to tenants; empty: a value that is a tenant name is that tenant")
	f.StringVar(&c.auth.AdminValue, "oidc-admin-value", "", "claim value that grants every tenant (e.g. a platform team's group)")
	f.StringVar(&c.hmacKeyFile, "hmac-key-file", "", "file holding the filter's HMAC key (the Secret its policy's hmac_key_env reads), byte for byte: queries may then say customer_id=hash(\"123\") to find a hashed value without the searcher holding the key")
	f.StringVar(&c.ingest.TokensFile, "ingest-tokens-file", "", "OTLP ingest tokens, one \"<token> <tenant>\" per line (a mounted Secret): a request's spans are of its token's tenant, a request without a known token is refused (401)")
	f.BoolVar(&c.ingest.TrustXFCC, "ingest-tenant-from-mesh", false, "a request without a token is of the namespace of its sender's mesh identity, from the x-forwarded-client-cert header the indexer's own Istio sidecar sets (only with mTLS STRICT on the indexer's ports)")
	f.IntVar(&c.tenantAttributeKeys, "tenant-max-attribute-keys", 0, "distinct attribute keys each tenant may add to the index (of --max-attribute-keys; past it its new keys go to the overflow field; 0: no per-tenant share)")
	f.Float64Var(&c.receiver.TenantLimits.SpansPerSecond, "tenant-spans-per-second", 0, "spans each tenant may send per second (429 beyond; 0: no limit)")
	f.Float64Var(&c.receiver.TenantLimits.BytesPerSecond, "tenant-bytes-per-second", 0, "request bytes each tenant may send per second (429 beyond; 0: no limit)")
	f.DurationVar(&c.shutdownTimeout, "shutdown-timeout", c.shutdownTimeout, "how long shutdown may take to write logged spans to the store")
	f.StringVar(&c.logLevel, "log-level", c.logLevel, "debug, info, warn or error")
	f.StringVar(&c.logFormat, "log-format", c.logFormat, "text or json")
	return cmd
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}

// openStore opens the configured store and sets the pipeline's batch size to the store's choice unless one
// was given.
func openStore(ctx context.Context, c *serveConfig, log *slog.Logger) (store.Store, error) {
	if c.meili.URL != "" {
		if c.pipeline.BatchSize <= 0 {
			c.pipeline.BatchSize = meili.BatchSize
		}
		log.Info("opening Meilisearch store", "url", c.meili.URL)
		// Retention is run by serve for every store kind.
		cfg := c.meili
		cfg.Logger = log
		return meili.Open(ctx, cfg)
	}
	if c.pipeline.BatchSize <= 0 {
		c.pipeline.BatchSize = embedded.BatchSize
	}
	log.Info("opening embedded store", "dir", c.dataDir)
	return embedded.Open(c.dataDir)
}

// listeners are the bound addresses of a running server (for tests and logs).
type listeners struct{ otlpHTTP, otlpGRPC, api net.Addr }

// serve runs the indexer until ctx ends. It starts in data-flow order (store, write-ahead log, pipeline, which
// first replays what the log holds, receivers, API) and stops in the opposite one: receivers stop taking
// requests and finish the ones in flight, the pipeline writes what it has in hand, the log closes, the API
// stops, the store closes. ready, if set, is called once every listener is bound.
func serve(ctx context.Context, c serveConfig, log *slog.Logger, ready func(listeners)) error {
	st, err := openStore(ctx, &c, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing store", "err", err)
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	c.wal.Dir, c.wal.Logger = c.walDir, log
	if c.wal.Dir == "" {
		c.wal.Dir = filepath.Join(c.dataDir, "wal")
	}
	w, err := wal.Open(c.wal)
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.RegisterMetrics(reg); err != nil {
		return err
	}
	c.pipeline.Fields, err = fieldcap.Load(ctx, st, c.attributeKeys, fieldcap.WithLogger(log), fieldcap.WithKeys(c.pipeline.Rollup.Keys...),
		fieldcap.WithTenantCap(c.tenantAttributeKeys))
	if err != nil {
		return err
	}
	if err := c.pipeline.Fields.RegisterMetrics(reg); err != nil {
		return err
	}
	c.pipeline.Logger, c.pipeline.Registerer = log, reg
	c.pipeline.DeadLetter = filepath.Join(c.wal.Dir, "dead-letter.ndjson")
	pipe, err := pipeline.New(st, w, c.pipeline)
	if err != nil {
		return err
	}
	defer func() { // a no-op after the orderly close below
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.shutdownTimeout)
		defer cancel()
		pipe.Close(ctx)
	}()
	ingest, err := auth.NewIngest(c.ingest)
	if err != nil {
		return err
	}
	if ingest != nil {
		c.receiver.Tenancy = ingest
	} else {
		log.Warn("OTLP ingest is not authenticated: anyone who reaches the OTLP ports can write spans (set --ingest-tokens-file or --ingest-tenant-from-mesh)")
	}
	c.receiver.Logger, c.receiver.Registerer = log, reg
	recv, err := receiver.New(w, c.receiver)
	if err != nil {
		return err
	}
	if c.api.Auth, err = auth.New(ctx, c.auth, log); err != nil {
		return err
	}
	if c.hmacKeyFile != "" {
		if c.api.HMACKey, err = readKey(c.hmacKeyFile); err != nil {
			return err
		}
	}

	var lc net.ListenConfig
	var lis [3]net.Listener
	for i, addr := range []string{c.otlpHTTPAddr, c.otlpGRPCAddr, c.apiAddr} {
		if lis[i], err = lc.Listen(ctx, "tcp", addr); err != nil {
			for _, l := range lis[:i] {
				l.Close()
			}
			return err
		}
	}
	otlpHTTP := recv.HTTPServer()
	grpcSrv := recv.GRPCServer()
	c.api.IndexLag, c.api.Metrics, c.api.Logger = pipe.Lag, reg, log
	c.api.IngestStats = func() any { return pipe.Stats() }
	c.api.RollupKeys = c.pipeline.Rollup.Keys
	if len(c.api.RollupKeys) == 0 { // as the rollup itself defaults
		c.api.RollupKeys = rollup.DefaultKeys
	}
	apiSrv := &http.Server{Handler: api.New(st, c.api), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}

	errc := make(chan error, 3)
	go func() { errc <- ignoreClosed(otlpHTTP.Serve(lis[0])) }()
	go func() { errc <- grpcSrv.Serve(lis[1]) }()
	go func() { errc <- ignoreClosed(apiSrv.Serve(lis[2])) }()
	log.Info("indexer serving", "otlp_http", lis[0].Addr().String(), "otlp_grpc", lis[1].Addr().String(),
		"api", lis[2].Addr().String(), "wal", c.wal.Dir, "keys", strings.Join(c.pipeline.Rollup.Keys, ","))
	if ready != nil {
		ready(listeners{lis[0].Addr(), lis[1].Addr(), lis[2].Addr()})
	}
	retentionDone := make(chan struct{})
	go func() {
		defer close(retentionDone)
		retain(ctx, st, retentionPasses(c.retention, c.tenantRetention), log)
	}()

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-errc:
		log.Error("server failed; shutting down", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.shutdownTimeout)
	defer cancel()
	stopReceivers(sctx, otlpHTTP, grpcSrv, log)
	pipe.Close(sctx)
	if err := w.Close(); err != nil {
		log.Error("closing the write-ahead log", "err", err)
	}
	if err := apiSrv.Shutdown(sctx); err != nil {
		log.Warn("API shutdown", "err", err)
	}
	<-retentionDone
	s := pipe.Stats()
	log.Info("indexer stopped", "spans_written", s.Written, "batches", s.Batches, "write_errors", s.WriteErrors,
		"dead_lettered", s.DeadLettered, "wal_bytes_left", w.Stats().Bytes)
	return runErr
}

// receiverGrace is how long requests in flight get to finish at shutdown; requests still being read then are
// cut off unanswered (nothing of theirs was acknowledged, so their clients retry elsewhere or later).
const receiverGrace = 5 * time.Second

// stopReceivers stops both OTLP servers: no new requests, and those in flight get receiverGrace.
func stopReceivers(ctx context.Context, otlpHTTP *http.Server, grpcSrv *grpc.Server, log *slog.Logger) {
	gctx, cancel := context.WithTimeout(ctx, receiverGrace)
	defer cancel()
	stopped := make(chan struct{})
	go func() { grpcSrv.GracefulStop(); close(stopped) }()
	if err := otlpHTTP.Shutdown(gctx); err != nil {
		log.Warn("OTLP/HTTP requests cut off at shutdown", "err", err)
		otlpHTTP.Close()
	}
	select {
	case <-stopped:
	case <-gctx.Done():
		grpcSrv.Stop()
		<-stopped
	}
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// retentionPass is one deletion of a retention round: documents older than age, of those filter matches
// (nil: all).
type retentionPass struct {
	age    time.Duration
	filter query.Expr
}

// String describes the pass: "24h0m0s of tenant = team-b", or "168h0m0s" for every document.
func (p retentionPass) String() string {
	if p.filter == nil {
		return p.age.String()
	}
	return p.age.String() + " of " + p.filter.String()
}

// retentionPasses plans a retention round: each tenant with a retention of its own (0: kept forever) is
// deleted on its own, and the default retention (0: forever) applies to every other document, the empty
// tenant's included.
func retentionPasses(retention time.Duration, perTenant map[string]time.Duration) []retentionPass {
	var passes []retentionPass
	others := &query.In{Field: tenant.Field}
	for _, tn := range slices.Sorted(maps.Keys(perTenant)) {
		others.Values = append(others.Values, query.Value{Str: tn})
		if age := perTenant[tn]; age > 0 {
			passes = append(passes, retentionPass{age, tenant.Only(tn)})
		}
	}
	if retention > 0 {
		var rest query.Expr
		if len(others.Values) > 0 {
			rest = &query.Not{X: others}
		}
		passes = append(passes, retentionPass{retention, rest})
	}
	return passes
}

// retain runs the retention passes at start and then hourly, until ctx ends.
func retain(ctx context.Context, st store.Store, passes []retentionPass, log *slog.Logger) {
	if len(passes) == 0 {
		return
	}
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		for _, p := range passes {
			cutoff := time.Now().Add(-p.age)
			if err := st.DeleteBefore(ctx, cutoff, p.filter); err != nil && ctx.Err() == nil {
				log.Error("retention", "pass", p, "before", cutoff, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// tenantDurations is a flag of "<tenant>=<duration>" pairs, comma-separated.
type tenantDurations struct{ m *map[string]time.Duration }

// String implements pflag.Value.
func (v tenantDurations) String() string {
	if v.m == nil || len(*v.m) == 0 {
		return ""
	}
	var parts []string
	for _, tn := range slices.Sorted(maps.Keys(*v.m)) {
		parts = append(parts, tn+"="+(*v.m)[tn].String())
	}
	return strings.Join(parts, ",")
}

// Set implements pflag.Value.
func (v tenantDurations) Set(s string) error {
	m := map[string]time.Duration{}
	for _, pair := range strings.Split(s, ",") {
		tn, d, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok {
			return fmt.Errorf("%q: want <tenant>=<duration>", pair)
		}
		if err := tenant.Check(tn); err != nil {
			return err
		}
		age, err := time.ParseDuration(d)
		if err != nil || age < 0 {
			return fmt.Errorf("tenant %s: %q is not a duration of 0 or more", tn, d)
		}
		m[tn] = age
	}
	*v.m = m
	return nil
}

// Type implements pflag.Value.
func (tenantDurations) Type() string { return "tenant=duration,..." }

// maxKeyBytes is the largest HMAC key file --hmac-key-file reads.
const maxKeyBytes = 4096

// readKey reads an HMAC key file, unchanged (the filter uses its variable's value byte for byte): at most
// maxKeyBytes, not empty.
func readKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	switch {
	case err != nil:
		return nil, fmt.Errorf("--hmac-key-file: %w", err)
	case len(b) == 0:
		return nil, fmt.Errorf("--hmac-key-file %s is empty", path)
	case len(b) > maxKeyBytes:
		return nil, fmt.Errorf("--hmac-key-file %s holds %d bytes, more than the %d accepted", path, len(b), maxKeyBytes)
	}
	return b, nil
}
