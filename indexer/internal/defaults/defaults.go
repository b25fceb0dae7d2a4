// Package defaults fills the zero fields of the indexer components' configs from their DefaultConfig.
package defaults

import "time"

// Set replaces *v by d when *v is zero or negative.
func Set[T int | int64 | uint32 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}
