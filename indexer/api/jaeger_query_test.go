package api

import (
	"testing"
	"time"
)

// TestJaegerQueryDurationAlone checks that minDuration and maxDuration filter spans even when no other
// parameter makes a span condition (they were dropped when they were the only one).
func TestJaegerQueryDurationAlone(t *testing.T) {
	for _, tt := range []struct {
		params map[string][]string
		want   string
	}{
		{map[string][]string{"minDuration": {"1s"}}, "duration >= 1000000"},
		{map[string][]string{"minDuration": {"1ms"}, "maxDuration": {"2ms"}}, "duration >= 1000 AND duration <= 2000"},
		{map[string][]string{"service": {"a"}, "maxDuration": {"2ms"}}, "service = a AND duration <= 2000"},
	} {
		q, _, err := JaegerQuery(tt.params, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if q.Span == nil || q.Span.String() != tt.want {
			t.Errorf("JaegerQuery(%v).Span = %v, want %s", tt.params, q.Span, tt.want)
		}
	}
}
