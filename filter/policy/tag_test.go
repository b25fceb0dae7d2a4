package policy

import (
	"regexp"
	"testing"
)

func TestTagTransform(t *testing.T) {
	tests := []struct {
		name string
		tag  Tag
		in   string
		want string
		ok   bool
	}{
		{"identity", Tag{}, "Cust-42", "Cust-42", true},
		{"lowercase", Tag{Lowercase: true}, "Cust-42", "cust-42", true},
		{"regex group", Tag{Regex: regexp.MustCompile(`^(?:cust-)?([0-9]+)$`)}, "cust-42", "42", true},
		{"regex after lowercase", Tag{Lowercase: true, Regex: regexp.MustCompile(`^cust-([0-9]+)$`)}, "CUST-7", "7", true},
		{"regex whole match", Tag{Regex: regexp.MustCompile(`[0-9]+`)}, "id=123;", "123", true},
		{"regex unmatched optional group", Tag{Regex: regexp.MustCompile(`^x|(y)$`)}, "x", "x", true},
		{"regex no match", Tag{Regex: regexp.MustCompile(`^[0-9]+$`)}, "abc", "", false},
		{"max length", Tag{MaxLength: 3}, "abcdef", "abc", true},
		{"max length utf8 boundary", Tag{MaxLength: 2}, "aéb", "a", true},
		{"redact", Tag{Redact: true}, "secret", Redacted, true},
		// echo -n 42 | openssl dgst -sha256 -hmac key
		{"hash", Tag{Hash: true, hmacKey: []byte("key")}, "42", "f2991b7ce981d0b5adc5e6a0f31acaeb407bfc21354bbcc31a0c43eaffa83d65", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.tag.Transform(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("Transform(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}
