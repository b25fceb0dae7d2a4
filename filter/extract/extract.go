// Package extract reads single values out of request data the tagging policy can name: a cookie from a
// Cookie header, a query parameter from a request path, and a claim from a JWT bearer token. The JWT is
// decoded, not verified: a tag taken from it says what the client sent, not what an issuer signed.
package extract

import (
	"encoding/base64"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/valyala/fastjson"
)

// jwtDecoder holds what decoding one token needs, so that it is allocated once and reused.
type jwtDecoder struct {
	payload []byte          // the decoded payload
	parser  fastjson.Parser // keeps its value cache across tokens
}

// decoders reuses jwtDecoders across tokens.
var decoders = sync.Pool{New: func() any { return new(jwtDecoder) }}

// maxJWTBytes bounds the token size the filter is willing to decode.
const maxJWTBytes = 16 << 10

// Cookie returns the value of the first cookie called name in a Cookie header value
// ("a=1; b=2"). Surrounding double quotes are removed.
func Cookie(header, name string) (string, bool) {
	for len(header) > 0 {
		var pair string
		pair, header = cut(header, ';')
		k, v := cut(pair, '=')
		if strings.Trim(k, " \t") != name || len(k) == len(pair) {
			continue
		}
		v = strings.Trim(v, " \t")
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, true
	}
	return "", false
}

// Query returns the first value of parameter name in the query string of a request path
// ("/p?a=1&b=2"). '+' and percent escapes are decoded; a malformed escape makes the value unusable.
func Query(path, name string) (string, bool) {
	_, q := cut(path, '?')
	q, _ = cut(q, '#')
	for len(q) > 0 {
		var pair string
		pair, q = cut(q, '&')
		k, v := cut(pair, '=')
		key, ok := unescapeQuery(k)
		if !ok || key != name {
			continue
		}
		return unescapeQuery(v)
	}
	return "", false
}

// JWTClaim returns top-level claim name from the bearer token in an Authorization header value
// ("Bearer <header>.<payload>.<signature>"). String claims are returned as is, numbers and booleans in
// their JSON form; objects, arrays and null are not tag values.
func JWTClaim(authorization, name string) (string, bool) {
	const prefix = "bearer "
	if len(authorization) <= len(prefix) || !equalFold(authorization[:len(prefix)], prefix) {
		return "", false
	}
	token := strings.Trim(authorization[len(prefix):], " \t")
	if len(token) > maxJWTBytes {
		return "", false
	}
	_, rest := cut(token, '.')
	payload, sig := cut(rest, '.')
	if payload == "" || len(payload) == len(rest) || containsByte(sig, '.') {
		return "", false
	}
	payload = trimPadding(payload)
	d := decoders.Get().(*jwtDecoder)
	defer decoders.Put(d)
	// The decoder only reads its source, so the payload's bytes are passed without a copy.
	raw, err := base64.RawURLEncoding.AppendDecode(d.payload[:0], unsafe.Slice(unsafe.StringData(payload), len(payload)))
	d.payload = raw
	if err != nil {
		return "", false
	}
	v, err := d.parser.ParseBytes(raw)
	if err != nil || v.Type() != fastjson.TypeObject {
		return "", false
	}
	c := v.Get(name)
	if c == nil {
		return "", false
	}
	switch c.Type() {
	case fastjson.TypeString:
		return string(c.GetStringBytes()), true
	case fastjson.TypeNumber:
		return string(c.MarshalTo(nil)), true
	case fastjson.TypeTrue:
		return strconv.FormatBool(true), true
	case fastjson.TypeFalse:
		return strconv.FormatBool(false), true
	}
	return "", false
}

func unescapeQuery(v string) (string, bool) {
	if !containsByte(v, '%') && !containsByte(v, '+') {
		return v, true
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '+':
			out = append(out, ' ')
		case '%':
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

func cut(v string, sep byte) (before, after string) {
	for i := 0; i < len(v); i++ {
		if v[i] == sep {
			return v[:i], v[i+1:]
		}
	}
	return v, ""
}

func containsByte(v string, c byte) bool {
	for i := 0; i < len(v); i++ {
		if v[i] == c {
			return true
		}
	}
	return false
}

func trimPadding(v string) string {
	for len(v) > 0 && v[len(v)-1] == '=' {
		v = v[:len(v)-1]
	}
	return v
}

// equalFold compares ASCII strings case-insensitively (b must be lower case).
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != b[i] {
			return false
		}
	}
	return true
}
