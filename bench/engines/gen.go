// Package engines compares storage engines for the embedded store side by side on the same generated data
// ("choose the engine by measurement"): the product's embedded store, the bleve store it replaced, SQLite
// and DuckDB. It is a separate module so that the product's go.mod does not gain the SQL engines'
// dependencies; the benchmark is in engines_test.go and README.md says how to run it.
package engines

import (
	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"
)

// The data and the queries are the store benchmarks' shop fixture (storetest.GenerateShop, ShopCases), as
// the Meilisearch benchmark uses it: the same seed, the same traces, the same batches of genBatch spans
// through the rollup (meili.BatchSize), the same cases and the failing-customers count. Only the size is a
// variable (benchSpans, ENGINES_SPANS).
const genBatch = 25_000

// benchSpans is the number of spans generated.
var benchSpans = 200_000

// benchNow is the instant the fixture is generated around and queries are compiled at.
var benchNow = storetest.ShopNow

// queryCase is one case of the fixture.
type queryCase = storetest.ShopCase

// facetCase names the count case.
const facetCase = storetest.ShopFacetCase

// benchLookup is the trace the product/trace-spans case reads, set by the benchmark.
var benchLookup string

func benchCases(traceID string) []*queryCase { return storetest.ShopCases(traceID) }

func benchLookupTrace() string { return storetest.ShopLookupTrace(benchSpans, genBatch) }

func benchGenerate(emit func([]document.Span, []document.Trace) error, cases []*queryCase) error {
	return storetest.GenerateShop(benchSpans, genBatch, emit, cases)
}
