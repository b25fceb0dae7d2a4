//go:build !noembedded

package engines

import (
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
)

// The product's embedded store, as it is in the working tree (../..). Build with -tags noembedded to leave
// it out, e.g. while it does not compile during a rewrite.
func init() {
	candidates = append([]candidate{{name: "embedded", writers: 2, batch: 5000,
		note: "indexer/store/embedded as in the working tree, through querysvc",
		new: func() engine {
			return &storeEngine{openStore: func(dir string) (store.Store, error) { return embedded.Open(dir) }}
		}}}, candidates...)
}
