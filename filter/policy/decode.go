package policy

import (
	"bytes"
	"strconv"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/meshtrace/meshtrace/filter/internal/ascii"
)

// The decoder's generic parts: reading fastjson values into Go values while recording the first failure with
// the path of the field it is about, as every Error names it.

// decoder walks the JSON tree and keeps the first error.
type decoder struct {
	err       *Error
	inlineKey bool // hmac_key was given (even empty)
}

func (d *decoder) fail(path, reason string) {
	if d.err == nil {
		d.err = &Error{Path: path, Reason: reason}
	}
}

// object calls field for each member of an object; field reports false for an unknown key.
func (d *decoder) object(v *fastjson.Value, path string, field func(key string, v *fastjson.Value, path string) bool) {
	o, err := v.Object()
	if err != nil {
		d.fail(path, "must be an object")
		return
	}
	o.Visit(func(k []byte, v *fastjson.Value) {
		if d.err != nil {
			return
		}
		key := string(k)
		p := key
		if path != "" {
			p = path + "." + key
		}
		if !field(key, v, p) {
			d.fail(p, "unknown field")
		}
	})
}

func (d *decoder) array(v *fastjson.Value, path string, elem func(i int, v *fastjson.Value, path string)) {
	a, err := v.Array()
	if err != nil {
		d.fail(path, "must be an array")
		return
	}
	for i, e := range a {
		if d.err != nil {
			return
		}
		elem(i, e, indexPath(path, i))
	}
}

func (d *decoder) str(v *fastjson.Value, path string) string {
	if v.Type() != fastjson.TypeString {
		d.fail(path, "must be a string")
		return ""
	}
	return string(v.GetStringBytes())
}

func (d *decoder) boolean(v *fastjson.Value, path string) bool {
	b, err := v.Bool()
	if err != nil {
		d.fail(path, "must be a boolean")
	}
	return b
}

// integer returns a whole number >= min.
func (d *decoder) integer(v *fastjson.Value, path string, min int) int {
	n, err := v.Int()
	if err != nil || n < min {
		if min == 1 {
			d.fail(path, "must be a positive integer")
		} else {
			d.fail(path, "must be an integer >= "+strconv.Itoa(min))
		}
		return 0
	}
	return n
}

func (d *decoder) nonEmpty(v *fastjson.Value, path string) string {
	s := d.str(v, path)
	if s == "" {
		d.fail(path, "must not be empty")
	}
	return s
}

func (d *decoder) port(v *fastjson.Value, path string) int {
	p := d.integer(v, path, 1)
	if p > 65535 {
		d.fail(path, "must be a port number (1-65535)")
	}
	return p
}

func indexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// isBlank reports whether data is empty or only JSON whitespace. (bytes.TrimSpace would also drop \v, \f
// and Unicode spaces, which JSON does not allow.)
func isBlank(data []byte) bool { return len(bytes.TrimLeft(data, " \t\n\r")) == 0 }

// lower lowercases the ASCII letters of s, returning s itself when it has none. strings.ToLower is not the
// same: it also lowercases non-ASCII letters and replaces invalid UTF-8 with U+FFFD, which would change tag
// values (and so their HMAC hashes) and header names for any non-ASCII input.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return unsafe.String(&b[0], len(b)) // b is not used after this: no second copy
		}
	}
	return s
}

// isEnvName reports whether s is a portable environment variable name: [A-Za-z_][A-Za-z0-9_]*.
func isEnvName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// isHeaderName reports whether s is a lower-case token, as Envoy stores header names.
func isHeaderName(s string) bool { return ascii.IsToken(s) && lower(s) == s }
