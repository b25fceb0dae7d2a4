// Package ascii holds the one text check the filter needs that the standard library does not export: whether
// a string is an RFC 7230 token (net/http keeps its own unexported; golang.org/x/net/http/httpguts has one but
// pulls in idna's Unicode tables, too large for the TinyGo build). The policy (tag attributes propagated as
// baggage keys, header names) and tracecontext (baggage member keys, on every request) share it.
package ascii

// IsToken reports whether s is a non-empty RFC 7230 token (section 3.2.6): ASCII letters, digits and
// !#$%&'*+-.^_`|~ only.
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' || c == '*' || c == '+' ||
			c == '-' || c == '.' || c == '^' || c == '_' || c == '`' || c == '|' || c == '~':
		default:
			return false
		}
	}
	return true
}
