// Command bench-ingest measures OTLP ingest of `indexer serve` on the embedded store and on a real
// Meilisearch, one after the other, and prints a table (see package testenv/ingestbench). `make bench-ingest`
// runs it; flags with -h.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/meshtrace/meshtrace/testenv/ingestbench"
)

func main() {
	var cfg ingestbench.Config
	var stores, indexerArgs string
	flag.StringVar(&cfg.Indexer, "indexer", "bin/indexer", "the indexer binary (`make indexer` builds bin/indexer)")
	flag.StringVar(&stores, "stores", "embedded,meili", "stores to measure, in order: embedded, meili")
	flag.IntVar(&cfg.Exporters, "exporters", 8, "concurrent exporters")
	flag.IntVar(&cfg.BatchSpans, "batch", 500, "spans per OTLP request")
	flag.IntVar(&cfg.Spans, "spans", 90_000, "total spans to send per store (0: only -duration bounds the load)")
	flag.DurationVar(&cfg.Duration, "duration", 0, "stop sending after this long (0: only -spans bounds the load)")
	flag.Float64Var(&cfg.Rate, "rate", 0, "offered load in spans/s over all exporters (0: send as fast as acks come back)")
	flag.IntVar(&cfg.LagEvery, "lag-every", 10, "measure the index lag of every n-th request")
	flag.DurationVar(&cfg.LagPoll, "lag-poll", 100*time.Millisecond, "polling interval of the lag and searchability checks")
	flag.DurationVar(&cfg.SearchableTimeout, "searchable-timeout", 5*time.Minute, "longest wait after the last ack for every span to be searchable")
	flag.StringVar(&indexerArgs, "indexer-args", "", "extra `indexer serve` flags, space-separated (e.g. --batch-size=4000)")
	flag.IntVar(&cfg.Meili.MaxIndexingThreads, "meili-threads", 2, "Meilisearch --max-indexing-threads")
	flag.StringVar(&cfg.Meili.MaxIndexingMemory, "meili-memory", "512 MiB", "Meilisearch --max-indexing-memory")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the temporary store directories and logs")
	timeout := flag.Duration("timeout", 30*time.Minute, "bound on the whole run")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "bench-ingest: unexpected arguments:", flag.Args())
		os.Exit(2)
	}
	cfg.Stores = strings.Split(stores, ",")
	cfg.IndexerArgs = strings.Fields(indexerArgs)
	cfg.Log = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	results, err := ingestbench.Run(ctx, cfg)
	if len(results) > 0 {
		fmt.Println()
		_ = ingestbench.WriteTable(os.Stdout, results)
		fmt.Println()
		fmt.Print(ingestbench.Summary(cfg, results))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-ingest:", err)
		os.Exit(1)
	}
	for _, r := range results {
		if !r.Complete || r.Failed > 0 {
			os.Exit(1)
		}
	}
}
