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

	"github.com/meshtrace/meshtrace/filter/internal/percent"
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
		pair, header, _ = strings.Cut(header, ";")
		k, v, _ := strings.Cut(pair, "=")
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
	_, q, _ := strings.Cut(path, "?")
	q, _, _ = strings.Cut(q, "#")
	for len(q) > 0 {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(pair, "=")
		key, ok := percent.Decode(k, true)
		if !ok || key != name {
			continue
		}
		return percent.Decode(v, true)
	}
	return "", false
}

// JWTClaim returns top-level claim name from the bearer token in an Authorization header value
// ("Bearer <header>.<payload>.<signature>"). String claims are returned as is, numbers and booleans in
// their JSON form; objects, arrays and null are not tag values.
func JWTClaim(authorization, name string) (string, bool) {
	const prefix = "bearer "
	if len(authorization) <= len(prefix) || !strings.EqualFold(authorization[:len(prefix)], prefix) {
		return "", false
	}
	token := strings.Trim(authorization[len(prefix):], " \t")
	if len(token) > maxJWTBytes {
		return "", false
	}
	_, rest, _ := strings.Cut(token, ".")
	payload, sig, _ := strings.Cut(rest, ".")
	if payload == "" || len(payload) == len(rest) || strings.IndexByte(sig, '.') >= 0 {
		return "", false
	}
	payload = strings.TrimRight(payload, "=")
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
