package querysvc_test

import (
	"fmt"
	"testing"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/querysvc"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"
)

// BenchmarkExecuteSortKeys measures a search over 20,000 spans in the embedded store against the number of
// sort keys in the query. The query is built directly (query.Compile refuses a repeated key) to show what
// Execute hands the store: the sort fields are only start, end and duration, so n keys repeat them, and
// bleve's cost per hit grows with the square of the keys it is given. Execute drops the repeats, so the
// cost stays flat.
func BenchmarkExecuteSortKeys(b *testing.B) {
	s, err := embedded.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := admin
	err = storetest.Generate(20_000, 1, func(sp []document.Span, tr document.Trace) error {
		return s.Write(ctx, sp, []document.Trace{tr})
	})
	if err != nil {
		b.Fatal(err)
	}
	fields := []string{"duration", "start", "end"}
	for _, n := range []int{1, 2, 4, 8, 16, 32, 64} {
		q := &query.Query{Target: query.SpanScope}
		for i := range n {
			q.Sort = append(q.Sort, query.Sort{Field: query.Resolve(fields[i%len(fields)]), Desc: i%2 == 0})
		}
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			for b.Loop() {
				res, err := querysvc.Execute(ctx, s, q, querysvc.Page{Limit: 10}, nil)
				if err != nil {
					b.Fatal(err)
				}
				if res.Total != 20_000 {
					b.Fatalf("total %d, want 20000", res.Total)
				}
			}
		})
	}
}
