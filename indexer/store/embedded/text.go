package embedded

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/meshtrace/meshtrace/indexer/query"
)

// normalize is how string values are compared for equality: case-insensitively.
func normalize(s string) string {
	if isNormal(s) {
		return s
	}
	return strings.ToLower(s)
}

// isNormal reports whether a value is its own normalized form: no upper-case ASCII letter, nothing beyond
// ASCII.
func isNormal[T ~string | ~[]byte](v T) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= utf8.RuneSelf || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// filterPrefix mirrors Meilisearch, which indexes the first query.MaxValueBytes (468) bytes of a filterable
// string, after normalizing it: a longer value is found by that prefix, never by the whole value.
func filterPrefix[T ~string | ~[]byte](v T) T {
	if len(v) <= query.MaxValueBytes {
		return v
	}
	cut := query.MaxValueBytes
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut]
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// words splits text into its whole words, lower-cased: the runs of letters and digits.
func words(s string) []string {
	var out []string
	start := -1
	for i, r := range s {
		if isWordRune(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			out = append(out, normalize(s[start:i]))
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, normalize(s[start:]))
	}
	return out
}

// textTerms calls add with the terms of the text field a searchable value adds: each word, lower-cased, and
// each pair of adjacent words joined by a space (a word never holds one), so a two-word phrase is one term
// and a longer phrase the conjunction of its pairs, checked against the document. The words are those of
// words; add gets each term in a scratch buffer, valid until it returns.
func textTerms(value []byte, scratch *termScratch, add func([]byte)) {
	prev, cur := scratch.prev[:0], scratch.cur[:0]
	for i := 0; i < len(value); {
		r, n := decodeRune(value[i:])
		if !isWordRune(r) {
			i += n
			continue
		}
		cur = cur[:0]
		for ; i < len(value); i += n {
			if r, n = decodeRune(value[i:]); !isWordRune(r) {
				break
			}
			if 'A' <= r && r <= 'Z' {
				cur = append(cur, byte(r+'a'-'A'))
			} else if r < utf8.RuneSelf {
				cur = append(cur, byte(r))
			} else {
				cur = utf8.AppendRune(cur, unicode.ToLower(r))
			}
		}
		add(cur)
		if len(prev) > 0 {
			scratch.pair = append(append(append(scratch.pair[:0], prev...), ' '), cur...)
			add(scratch.pair)
		}
		prev, cur = cur, prev
	}
	scratch.prev, scratch.cur = prev, cur
}

// termScratch holds textTerms' buffers between calls.
type termScratch struct{ prev, cur, pair []byte }

func decodeRune(p []byte) (rune, int) {
	if p[0] < utf8.RuneSelf {
		return rune(p[0]), 1
	}
	return utf8.DecodeRune(p)
}

// phraseTerms are the terms every value holding the phrase (already split into words) has.
func phraseTerms(ws []string) []string {
	if len(ws) == 1 {
		return ws
	}
	out := make([]string, 0, len(ws)-1)
	for i := 1; i < len(ws); i++ {
		out = append(out, ws[i-1]+" "+ws[i])
	}
	return out
}

// containsPhrase reports whether the words of value hold ws consecutively.
func containsPhrase(value string, ws []string) bool {
	vs := words(value)
	for i := 0; i+len(ws) <= len(vs); i++ {
		match := true
		for j, w := range ws {
			if vs[i+j] != w {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}
