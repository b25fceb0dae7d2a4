// Package percent decodes percent-encoded text: RFC 3986 %XX escapes (W3C baggage values) and, optionally,
// the form encoding's '+' for a space (query strings). It returns its input unchanged, without allocating,
// when nothing in it is encoded, which is the common case on a proxy's request path.
package percent

import "strings"

// Decode returns v with every %XX escape decoded and, when plusIsSpace, every '+' turned into a space. ok is
// false when an escape is cut short or is not two hex digits.
func Decode(v string, plusIsSpace bool) (decoded string, ok bool) {
	special := "%"
	if plusIsSpace {
		special = "%+"
	}
	if !strings.ContainsAny(v, special) {
		return v, true
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '+' && plusIsSpace:
			out = append(out, ' ')
		case c == '%':
			if i+2 >= len(v) {
				return "", false
			}
			hi, ok1 := unhex(v[i+1])
			lo, ok2 := unhex(v[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			out = append(out, hi<<4|lo)
			i += 2
		default:
			out = append(out, c)
		}
	}
	return string(out), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
