# meshtrace build. Every tool is installed, pinned, into .tools/ (gitignored) by the targets below.
# Quick start: `make demo` and `make test` (see README.md).

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := all

ROOT    := $(abspath .)
TOOLS   := $(ROOT)/.tools
BUILD   := $(ROOT)/build
BIN     := $(ROOT)/bin
GO      ?= go

# ---- pinned toolchain versions ------------------------------------------------
TINYGO_VERSION := 0.41.1
ENVOY_VERSION  := 1.40.0
MEILI_VERSION  := 1.50.0
MEILI_SHA256   := 05a096406de0cb06919a3f707f1a9d0bdb5bd84b51863190ede300046a92304b
KAFKA_VERSION  := 4.4.0
CONFLUENT_KAFKA_VERSION := 2.16.1

TINYGO    := $(TOOLS)/tinygo-$(TINYGO_VERSION)/build/tinygo
ENVOY     := $(TOOLS)/envoy-$(ENVOY_VERSION)/bin/envoy
MEILI_EXE := $(TOOLS)/meilisearch-$(MEILI_VERSION)/meilisearch

export MESHTRACE_FILTER_WASM    := $(BUILD)/filter.wasm
export MESHTRACE_FILTER_GO_WASM := $(BUILD)/filter-go.wasm
export MESHTRACE_ENVOY          := $(ENVOY)
export MESHTRACE_MEILI_BIN      := $(MEILI_EXE)
export MESHTRACE_KAFKA_LIBS        := $(TOOLS)/kafka-$(KAFKA_VERSION)/libs
export MESHTRACE_KAFKA_CLIENT_LIBS := $(TOOLS)/kafka-clients-$(KAFKA_VERSION)/libs
export MESHTRACE_CONFLUENT_KAFKA   := $(TOOLS)/confluent-kafka-$(CONFLUENT_KAFKA_VERSION)

.PHONY: all tools kafka filter indexer wasmplugin test bench bench-envoy bench-ingest bench-engines demo fuzz lint test-meili meilisearch clean deploy-render

all: filter indexer wasmplugin

# ---- tools ----------------------------------------------------------------------
tools: $(TINYGO) $(ENVOY) meilisearch kafka /usr/bin/chromium

$(TINYGO):
	@scripts/install-tinygo.sh $(TINYGO_VERSION) $(TOOLS)/tinygo-$(TINYGO_VERSION)

$(ENVOY):
	@scripts/install-envoy.sh $(ENVOY_VERSION) $(TOOLS)/envoy-$(ENVOY_VERSION)

# Meilisearch server for tests and benchmarks (testenv/meilisearch): no registry packages it, so it is copied,
# checksum- and version-checked, from $(MEILI_BIN) if set, else from ../shared/tools.
# The script checks the installed copy's checksum on every run (a fraction of a second).
meilisearch:
	@scripts/install-meilisearch.sh $(MEILI_VERSION) $(MEILI_SHA256) $(MEILI_EXE) \
		$(abspath $(ROOT)/../shared/tools/meilisearch-$(MEILI_VERSION)/meilisearch)

# Apache Kafka for testenv/kafka: the broker's jars (kafka_2.13 and its runtime dependencies, pinned by
# testenv/kafka/pom.xml), kafka-clients for the Java client (testenv/kafka/java/pom.xml), both from Maven Central
# through a local repository in .tools/m2, and the confluent-kafka wheel (librdkafka) by pip --target. Each part
# has a marker, so a rerun with nothing changed returns at once.
kafka:
	@scripts/install-kafka.sh $(KAFKA_VERSION) $(CONFLUENT_KAFKA_VERSION) $(TOOLS)

# Headless browser for the web page test (Debian package).
/usr/bin/chromium:
	@scripts/install-chromium.sh

# ---- filter (proxy-wasm plugin) ----------------------------------------------------
# Each build is then trimmed (filter/internal/wasmtrim): the HTTP callbacks the plugin leaves to the SDK's
# no-op defaults lose their exports, so Envoy skips them, and the module declares proxy_abi_version_0_2_1.
# FILTER_SRC covers the trim tool's sources too (filter/internal/wasmtrim, filter/wasmexports); a build the
# tool refuses is deleted, so the next make builds it again.
FILTER_SRC := $(shell find filter -name '*.go' -not -name '*_test.go' 2>/dev/null) go.mod go.sum

filter: $(BUILD)/filter.wasm $(BUILD)/filter-go.wasm

$(BUILD)/filter.wasm: $(FILTER_SRC) $(TINYGO) scripts/tinygo-build.sh scripts/tinygo/wasip1-debian.json
	@mkdir -p $(BUILD)
	@echo ">> tinygo build -> $@"
	@scripts/tinygo-build.sh $(TINYGO) $@ ./filter
	@$(GO) run ./filter/internal/wasmtrim $@ || { rm -f $@; exit 1; }

$(BUILD)/filter-go.wasm: $(FILTER_SRC)
	@mkdir -p $(BUILD)
	@echo ">> go build (wasip1) -> $@"
	@GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o $@ ./filter
	@$(GO) run ./filter/internal/wasmtrim $@ || { rm -f $@; exit 1; }

# ---- indexer and wasmplugin CLIs -----------------------------------------------------
indexer:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/indexer ./indexer/cmd/indexer

wasmplugin:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/wasmplugin ./wasmplugin/cmd/wasmplugin

# ---- demo -------------------------------------------------------------------------------
# Starts the indexer on the embedded store, drives a gateway -> frontend -> checkout -> inventory scenario
# through the compiled TinyGo filter on the wazero host, prints the answer and keeps the indexer running.
# `make demo ONCE=1` exits after printing. `make demo MEILI=1` does the same on a real Meilisearch (the pinned
# binary), the indexer running with the two restricted keys `indexer meili-keys` makes.
demo: $(BUILD)/filter.wasm indexer $(if $(MEILI),meilisearch)
	@echo ">> go build -> $(BIN)/demo"
	@$(GO) build -o $(BIN)/demo ./testenv/cmd/demo
	@$(BIN)/demo -indexer $(BIN)/indexer -wasm $(BUILD)/filter.wasm -data-dir $(ROOT)/data/demo $(if $(ONCE),-once) $(if $(MEILI),-meili)

# Regenerate the WasmPlugins and Gloo Gateway in deploy/overlays from their policy.json files; `go test
# ./deploy` fails while they differ.
deploy-render:
	$(GO) test -count=1 -run TestRenderedFilesMatchPolicy ./deploy -update

# ---- checks -------------------------------------------------------------------------
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: tools filter lint
	$(GO) test -count=1 -timeout 25m ./...

# Fuzz every target for FUZZTIME each (make test only replays the committed seed corpora).
FUZZTIME ?= 30s
fuzz: filter
	@FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

bench: filter
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s -timeout 60m ./...

# Filter overhead in real Envoy: req/s, p50/p99 and RSS without the filter vs the TinyGo and Go builds,
# alternating rounds in one run (flags: go run ./testenv/envoy/cmd/bench-envoy -h), e.g.
# make bench-envoy BENCH_ENVOY_FLAGS='-requests 200000'
bench-envoy: tools filter
	$(GO) run ./testenv/envoy/cmd/bench-envoy $(BENCH_ENVOY_FLAGS)

# OTLP ingest throughput of `bin/indexer serve` on the embedded store and on a real Meilisearch: acked spans/s,
# ack latency, index lag, CPU per span, peak RSS (flags: go run ./testenv/cmd/bench-ingest -h), e.g.
# make bench-ingest BENCH_INGEST_FLAGS='-stores meili -spans 200000 -rate 3000'
bench-ingest: indexer meilisearch
	$(GO) run ./testenv/cmd/bench-ingest -indexer $(BIN)/indexer $(BENCH_INGEST_FLAGS)

# Storage engine comparison for the embedded store (bench/engines, a module of its own): the embedded store,
# the bleve store it replaced, SQLite and DuckDB on the same generated spans. ENGINES_SPANS (default
# 200000), ENGINES (comma list), ENGINES_DIR and ENGINES_KEEP=1 are passed through; see bench/engines/README.md.
bench-engines:
	cd bench/engines && ENGINES_SPANS=$(ENGINES_SPANS) ENGINES=$(ENGINES) ENGINES_DIR=$(ENGINES_DIR) ENGINES_KEEP=$(ENGINES_KEEP) \
		$(GO) test -run '^$$' -bench . -timeout 120m $(ENGINES_FLAGS)

# The Meilisearch store's tests (conformance suite, outages, payload limit, failed tasks, filters) and
# testenv/meilisearch, all against real processes of the pinned Meilisearch (`make test` runs them too).
test-meili: meilisearch
	$(GO) test -count=1 ./indexer/store/meili/... ./testenv/meilisearch

clean:
	rm -rf $(BUILD) $(BIN)
