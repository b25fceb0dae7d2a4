package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/meshtrace/meshtrace/indexer/api"
	"github.com/meshtrace/meshtrace/indexer/pipeline"
	"github.com/meshtrace/meshtrace/indexer/receiver"
	"github.com/meshtrace/meshtrace/indexer/rollup"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
	"github.com/meshtrace/meshtrace/indexer/store/meili"
)

// serveConfig is everything `indexer serve` is configured with.
type serveConfig struct {
	otlpHTTPAddr, otlpGRPCAddr, apiAddr string
	dataDir, meiliURL, meiliKey         string
	keys                                []string
	retention                           time.Duration
	maxBodyBytes                        int64
	pipeline                            pipeline.Config
	shutdownTimeout                     time.Duration
	logLevel, logFormat                 string
}

func newServeCmd() *cobra.Command {
	var c serveConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Receive OTLP traces and serve the search API, the Jaeger API and the web page",
		Long: `Receive OTLP traces (HTTP on --otlp-http-addr, gRPC on --otlp-grpc-addr), index them in Meilisearch
(--meili-url) or in the embedded store under --data-dir, and serve the search API, the Jaeger query API and
the web page on --api-addr. Every flag can be set with an environment variable: MESHTRACE_ and the flag name in
upper case with underscores (--data-dir: MESHTRACE_DATA_DIR). SIGINT or SIGTERM stops ingest, writes what was
accepted and exits.`,
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
	f.StringVar(&c.otlpHTTPAddr, "otlp-http-addr", ":4318", "OTLP/HTTP listen address (POST /v1/traces)")
	f.StringVar(&c.otlpGRPCAddr, "otlp-grpc-addr", ":4317", "OTLP/gRPC listen address")
	f.StringVar(&c.apiAddr, "api-addr", ":8080", "search API, Jaeger API and web page listen address")
	f.StringVar(&c.dataDir, "data-dir", "data", "directory of the embedded store (used when --meili-url is empty)")
	f.StringVar(&c.meiliURL, "meili-url", "", "Meilisearch URL; empty selects the embedded store")
	f.StringVar(&c.meiliKey, "meili-key", "", "Meilisearch API key")
	f.StringSliceVar(&c.keys, "keys", rollup.DefaultKeys, "business keys rolled up into trace documents")
	f.DurationVar(&c.retention, "retention", 7*24*time.Hour, "delete documents older than this (0 keeps them forever)")
	f.Int64Var(&c.maxBodyBytes, "max-body-bytes", receiver.DefaultMaxBodyBytes, "largest OTLP request, compressed or not")
	f.IntVar(&c.pipeline.QueueSpans, "queue-spans", 100_000, "spans accepted but not yet written before clients get 429")
	f.IntVar(&c.pipeline.BatchSize, "batch-size", 5000, "spans per store write")
	f.DurationVar(&c.pipeline.BatchTimeout, "batch-timeout", 200*time.Millisecond, "longest wait for a batch to fill")
	f.IntVar(&c.pipeline.Shards, "shards", 0, "parallel writers, spans routed by trace id (0: one per CPU)")
	f.DurationVar(&c.pipeline.Rollup.Window, "rollup-window", 5*time.Minute, "how long a trace stays in the rollup cache after its last span")
	f.IntVar(&c.pipeline.Rollup.MaxSpans, "rollup-max-spans", 1_000_000, "span summaries the rollup cache holds, over all shards")
	f.BoolVar(&c.pipeline.AckQueued, "ack-queued", false, "answer OTLP requests once their spans are queued, not written (faster; queued spans die with the process)")
	f.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long shutdown may take to write accepted spans")
	f.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&c.logFormat, "log-format", "text", "text or json")
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

func openStore(ctx context.Context, c serveConfig, log *slog.Logger) (store.Store, error) {
	if c.meiliURL != "" {
		log.Info("opening Meilisearch store", "url", c.meiliURL)
		// Retention is run by serve for every store kind.
		return meili.Open(ctx, meili.Config{URL: c.meiliURL, APIKey: c.meiliKey, Logger: log})
	}
	log.Info("opening embedded store", "dir", c.dataDir)
	return embedded.Open(c.dataDir)
}

// listeners are the bound addresses of a running server (for tests and logs).
type listeners struct{ otlpHTTP, otlpGRPC, api net.Addr }

// serve runs the indexer until ctx ends, then shuts down in dependency order: receivers stop taking requests
// and finish the ones in flight (their spans get written), the pipeline drains, the API stops, the store
// closes. ready, if set, is called once every listener is bound.
func serve(ctx context.Context, c serveConfig, log *slog.Logger, ready func(listeners)) error {
	st, err := openStore(ctx, c, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing store", "err", err)
		}
	}()
	var lc net.ListenConfig
	listen := func(addr string) (net.Listener, error) { return lc.Listen(ctx, "tcp", addr) }
	otlpHTTPLis, err := listen(c.otlpHTTPAddr)
	if err != nil {
		return err
	}
	otlpGRPCLis, err := listen(c.otlpGRPCAddr)
	if err != nil {
		otlpHTTPLis.Close()
		return err
	}
	apiLis, err := listen(c.apiAddr)
	if err != nil {
		otlpHTTPLis.Close()
		otlpGRPCLis.Close()
		return err
	}

	c.pipeline.Rollup.Keys = c.keys
	c.pipeline.Logger = log
	if c.pipeline.Shards <= 0 {
		c.pipeline.Shards = runtime.GOMAXPROCS(0)
	}
	c.pipeline.Rollup.MaxSpans = max(1, c.pipeline.Rollup.MaxSpans/c.pipeline.Shards)
	pipe := pipeline.New(st, c.pipeline)
	recv := receiver.New(pipe, receiver.Config{MaxBodyBytes: c.maxBodyBytes, Logger: log})
	otlpMux := http.NewServeMux()
	otlpMux.Handle(receiver.TracesPath, recv)
	otlpHTTP := &http.Server{Handler: otlpMux, ReadHeaderTimeout: 10 * time.Second}
	grpcSrv := grpc.NewServer(recv.ServerOptions()...)
	recv.RegisterGRPC(grpcSrv)
	apiMux := http.NewServeMux()
	apiMux.Handle("/", api.New(st, log))
	apiMux.HandleFunc("GET /api/v1/ingest", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(pipe.Stats()) // the client may be gone
	})
	apiSrv := &http.Server{Handler: apiMux, ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 3)
	go func() { errc <- ignoreClosed(otlpHTTP.Serve(otlpHTTPLis)) }()
	go func() { errc <- grpcSrv.Serve(otlpGRPCLis) }()
	go func() { errc <- ignoreClosed(apiSrv.Serve(apiLis)) }()
	log.Info("indexer serving", "otlp_http", otlpHTTPLis.Addr().String(), "otlp_grpc", otlpGRPCLis.Addr().String(),
		"api", apiLis.Addr().String(), "keys", strings.Join(c.keys, ","))
	if ready != nil {
		ready(listeners{otlpHTTPLis.Addr(), otlpGRPCLis.Addr(), apiLis.Addr()})
	}
	retentionDone := make(chan struct{})
	go func() { defer close(retentionDone); retain(ctx, st, c.retention, log) }()

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-errc:
		log.Error("server failed; shutting down", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.shutdownTimeout)
	defer cancel()
	if err := otlpHTTP.Shutdown(sctx); err != nil {
		log.Warn("OTLP/HTTP shutdown", "err", err)
	}
	stopped := make(chan struct{})
	go func() { grpcSrv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-sctx.Done():
		grpcSrv.Stop()
	}
	if err := pipe.Close(sctx); err != nil {
		log.Error("pipeline shutdown", "err", err)
		runErr = errors.Join(runErr, err)
	}
	if err := apiSrv.Shutdown(sctx); err != nil {
		log.Warn("API shutdown", "err", err)
	}
	<-retentionDone
	s := pipe.Stats()
	log.Info("indexer stopped", "spans_written", s.Written, "batches", s.Batches, "write_errors", s.WriteErrors, "spans_refused", s.Refused)
	return runErr
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// retain deletes documents older than the retention at start and then hourly, until ctx ends.
func retain(ctx context.Context, st store.Store, retention time.Duration, log *slog.Logger) {
	if retention <= 0 {
		return
	}
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		cutoff := time.Now().Add(-retention)
		if err := st.DeleteBefore(ctx, cutoff); err != nil && ctx.Err() == nil {
			log.Error("retention", "before", cutoff, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
