package embedded

import (
	"slices"
	"testing"
)

// wantTerms is what textTerms must give: the words of value and their adjacent pairs, in order.
func wantTerms(value string) []string {
	var out []string
	ws := words(value)
	for i, w := range ws {
		out = append(out, w)
		if i > 0 {
			out = append(out, ws[i-1]+" "+w)
		}
	}
	return out
}

func gotTerms(value string) []string {
	var out []string
	var scratch termScratch
	textTerms([]byte(value), &scratch, func(t []byte) { out = append(out, string(t)) })
	return out
}

func TestTextTerms(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  ,;  ", nil},
		{"Connection", []string{"connection"}},
		{"upstream connect error: Connection RESET", []string{"upstream", "connect", "upstream connect", "error",
			"connect error", "connection", "error connection", "reset", "connection reset"}},
		{"GET /api/v1/items", []string{"get", "api", "get api", "v1", "api v1", "items", "v1 items"}},
		{"ÄPFEL über Straße", []string{"äpfel", "über", "äpfel über", "straße", "über straße"}},
		{"日本語 テキスト", []string{"日本語", "テキスト", "日本語 テキスト"}},
	} {
		if got := gotTerms(c.in); !slices.Equal(got, c.want) {
			t.Errorf("textTerms(%q) = %q, want %q", c.in, got, c.want)
		}
		if want := wantTerms(c.in); !slices.Equal(want, c.want) {
			t.Errorf("words-based terms of %q = %q, want %q", c.in, want, c.want)
		}
	}
}

// FuzzTextTerms checks that the byte-level tokenizer the index uses agrees with words, which splits queries.
func FuzzTextTerms(f *testing.F) {
	for _, s := range []string{"a b", "Connection RESET by peer", "ÄÖÜ ß İstanbul", "x\xffy z", "ǅ ǈ Ω", "1.5 -2 +3e4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := gotTerms(s), wantTerms(s); !slices.Equal(got, want) {
			t.Fatalf("textTerms(%q) = %q, words give %q", s, got, want)
		}
	})
}
