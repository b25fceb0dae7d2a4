// Command indexer is meshtrace's indexer: `indexer serve` receives OTLP traces and serves searches;
// `indexer search` and `indexer trace` query a running server over HTTP.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
