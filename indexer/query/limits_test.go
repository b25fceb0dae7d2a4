package query

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// conditions returns n conditions "f0=0 f1=1 ...".
func conditions(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf("f%d=%d", i, i)
	}
	return strings.Join(parts, " ")
}

// offsetOf is the 1-based position of the (n+1)th occurrence of sub in s.
func offsetOf(s, sub string, n int) int {
	at := 0
	for range n + 1 {
		i := strings.Index(s[at:], sub)
		if i < 0 {
			return -1
		}
		at += i + len(sub)
	}
	return at - len(sub) + 1
}

func TestLimits(t *testing.T) {
	longest := strings.Repeat("x", MaxQueryBytes)
	manyTerms := conditions(MaxTerms + 1)
	manyWords := strings.TrimSpace(strings.Repeat("w ", MaxTerms+1))
	bigIn := "f IN [" + strings.TrimSuffix(strings.Repeat("1,", MaxTerms+1), ",") + "]"
	nineKeys := "sort=start sort=end sort=duration sort=trace.start sort=trace.end sort=trace.duration " +
		"sort=trace.span_count sort=trace.error_count sort=-start"
	tests := []struct {
		name string
		src  string
		pos  int    // 0: the query is accepted
		want string // in the message
	}{
		{"longest query", longest, 0, ""},
		{"query too long", longest + "x", MaxQueryBytes + 1, "query is 4097 bytes long: the limit is 4096 bytes"},
		{"13 KB of sort keys", strings.Repeat("sort=start ", 1200), MaxQueryBytes + 1, "the limit is 4096 bytes"},
		{"most terms", conditions(MaxTerms), 0, ""},
		{"too many conditions", manyTerms, offsetOf(manyTerms, "f256=", 0), "too many terms: the limit is 256"},
		{"too many words", manyWords, 2*MaxTerms + 1, "too many terms: the limit is 256"},
		{"too many IN values", bigIn, len(bigIn) - 1, "too many terms: the limit is 256"},
		{"deepest nesting", strings.Repeat("(", MaxDepth) + "a" + strings.Repeat(")", MaxDepth), 0, ""},
		{"parentheses too deep", strings.Repeat("(", MaxDepth+1) + "a" + strings.Repeat(")", MaxDepth+1), MaxDepth + 1, "nested too deeply: the limit is 32 levels"},
		{"NOT too deep", strings.Repeat("NOT ", MaxDepth+1) + "a=1", 4*MaxDepth + 1, "the limit is 32 levels of parentheses and NOT"},
		{"hostile nesting", strings.Repeat("(", 4000), MaxDepth + 1, "nested too deeply"},
		{"every sort field", strings.TrimSuffix(nineKeys, " sort=-start"), 0, ""},
		{"too many sort keys", nineKeys, offsetOf(nineKeys, "sort=-start", 0), "too many sort keys: the limit is 8"},
		{"repeated sort key", "sort=duration sort=start sort=-duration", 31, `sort key "-duration" repeats the sort key at position 6`},
		{"repeated trace sort key", "sort=trace.start sort=trace.start", 23, "repeats the sort key at position 6"},
		{"span and trace start", "sort=start sort=trace.start", 0, ""},
		{"longest value", "url.full=" + strings.Repeat("v", MaxValueBytes), 0, ""},
		{"value too long", "url.full=" + strings.Repeat("v", MaxValueBytes+1), 10, "value of url.full is 469 bytes: the limit is 468"},
		{"IN value too long", "a IN [b, " + strings.Repeat("v", MaxValueBytes+1) + "]", 10, "the limit is 468"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.src, now)
			if tt.pos == 0 {
				if err != nil {
					t.Fatalf("Compile: %v, want no error", err)
				}
				return
			}
			var qe *Error
			if !errors.As(err, &qe) {
				t.Fatalf("Compile error = %v, want *Error", err)
			}
			if qe.Pos != tt.pos || !strings.Contains(qe.Msg, tt.want) {
				t.Errorf("Compile = %v; want position %d and %q", err, tt.pos, tt.want)
			}
		})
	}
}

// BenchmarkCompileSortKeys measures compiling a query with n sort keys, up to MaxSortKeys: the cost grows
// linearly with the keys.
func BenchmarkCompileSortKeys(b *testing.B) {
	keys := []string{"start", "end", "duration", "trace.start", "trace.end", "trace.duration", "trace.span_count", "trace.error_count"}
	for _, n := range []int{1, 2, 4, 8} {
		src := ""
		for i := range n {
			src += "sort=-" + keys[i] + " "
		}
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Compile(src, time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
