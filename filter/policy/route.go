package policy

import (
	"strconv"
	"strings"

	"github.com/valyala/fastjson"
)

// Limits of the routes list.
const (
	// MaxRoutes bounds the number of route templates: they are tried in order on every traced request.
	MaxRoutes = 64
	// MaxRouteLength bounds one template, in bytes.
	MaxRouteLength = 256
)

// Route is a compiled route template: a low-cardinality name for the request paths it matches, which
// becomes the http.route attribute and the second half of the span name ("GET /api/orders/{id}").
//
// A template is a path starting with '/' whose segments (between slashes) are each one of
//   - a literal, matched exactly (case-sensitive, percent-encoding not decoded);
//   - {name}: any one non-empty segment (name: letters, digits, '_', '-', '.');
//   - *, as the last segment only: whatever follows that slash, possibly nothing.
//
// So /api/orders/{id} matches /api/orders/42 but not /api/orders, /api/orders/ or /api/orders/42/items,
// and /api/cart/* matches /api/cart/, /api/cart/7 and /api/cart/7/items but not /api/cart. A trailing
// slash is a literal empty segment: /api/orders/ matches only /api/orders/. Matching sees the request's
// :path without its query string and allocates nothing.
type Route struct {
	// Template is the template as configured, the http.route value.
	Template string
	segs     []routeSeg
	rest     bool                         // the template ends in "*"
	names    [len(spanMethods) + 1]string // span names per method of spanMethods, then "HTTP {template}"
}

// routeSeg is one segment of a template: a literal or a {name} parameter.
type routeSeg struct {
	lit   string
	param bool
}

// spanMethods are the HTTP methods (RFC 9110 and PATCH) whose span names are built when the policy is
// parsed; a request with another method pays one concatenation.
var spanMethods = [...]string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"}

// Match reports whether path (a request path without its query string) matches the template.
func (r *Route) Match(path string) bool {
	if path == "" || path[0] != '/' {
		return false
	}
	rest := path[1:]
	for i := range r.segs {
		s := &r.segs[i]
		seg, j := rest, strings.IndexByte(rest, '/')
		if j >= 0 {
			seg = rest[:j]
		}
		if s.param {
			if seg == "" {
				return false
			}
		} else if seg != s.lit {
			return false
		}
		if j < 0 { // the path's last segment
			return i == len(r.segs)-1 && !r.rest
		}
		rest = rest[j+1:]
	}
	// Every segment matched and the path goes on after a slash: only "*" takes the remainder.
	return r.rest
}

// SpanName returns the span name of a request with method on this route: "{method} {template}", or
// "HTTP {template}" when the method is empty (OpenTelemetry HTTP span names).
func (r *Route) SpanName(method string) string {
	if method == "" {
		return r.names[len(spanMethods)]
	}
	for i, m := range spanMethods {
		if m == method {
			return r.names[i]
		}
	}
	return method + " " + r.Template
}

// Route returns the first route whose template matches path (without query string), nil if none does.
func (p *Policy) Route(path string) *Route {
	for i := range p.Routes {
		if p.Routes[i].Match(path) {
			return &p.Routes[i]
		}
	}
	return nil
}

// covers reports whether r matches every path that o matches, so that o, after r, can never match.
func (r *Route) covers(o *Route) bool {
	if r.rest {
		if len(o.segs) < len(r.segs) || (len(o.segs) == len(r.segs) && !o.rest) {
			return false
		}
	} else if o.rest || len(o.segs) != len(r.segs) {
		return false
	}
	for i := range r.segs {
		a, b := &r.segs[i], &o.segs[i]
		switch {
		case a.param && !b.param && b.lit == "":
			return false // a parameter does not match an empty segment
		case !a.param && (b.param || a.lit != b.lit):
			return false
		}
	}
	return true
}

// compileRoute parses a route template; the error reason is "" when it is valid.
func compileRoute(t string) (Route, string) {
	r := Route{Template: t}
	switch {
	case t == "":
		return r, "must not be empty"
	case len(t) > MaxRouteLength:
		return r, "longer than " + strconv.Itoa(MaxRouteLength) + " bytes"
	case t[0] != '/':
		return r, "must start with '/'"
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c == 0x7f || c == '?' || c == '#' {
			return r, "must not contain spaces, control characters, '?' or '#' (a template matches the path only)"
		}
	}
	segs := strings.Split(t[1:], "/")
	var names []string
	for i, s := range segs {
		last := i == len(segs)-1
		switch {
		case s == "*":
			if !last {
				return r, `"*" must be the last segment`
			}
			r.rest = true
			continue
		case strings.Contains(s, "*"):
			return r, `"*" must be a whole segment`
		case s == "" && !last:
			return r, "empty segment (\"//\")"
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			name := s[1 : len(s)-1]
			if strings.HasSuffix(name, "...") {
				return r, "\"" + s + "\" is not supported: end the template with \"*\" to match the rest of the path"
			}
			if !isParamName(name) {
				return r, "parameter \"" + s + "\" must be {name} with letters, digits, '_', '-' or '.'"
			}
			for _, n := range names {
				if n == name {
					return r, "duplicate parameter \"" + s + "\""
				}
			}
			names = append(names, name)
			r.segs = append(r.segs, routeSeg{param: true})
			continue
		case strings.ContainsAny(s, "{}"):
			return r, "a {name} parameter must be a whole segment"
		}
		r.segs = append(r.segs, routeSeg{lit: s})
	}
	for i, m := range spanMethods {
		r.names[i] = m + " " + t
	}
	r.names[len(spanMethods)] = "HTTP " + t
	return r, ""
}

func isParamName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// routes decodes the routes list: each template compiled, at most MaxRoutes, none made unreachable by an
// earlier one (a duplicate included).
func (d *decoder) routes(v *fastjson.Value, path string, p *Policy) {
	d.array(v, path, func(i int, v *fastjson.Value, path string) {
		if i >= MaxRoutes {
			d.fail(path, "too many routes: the limit is "+strconv.Itoa(MaxRoutes))
			return
		}
		t := d.str(v, path)
		if d.err != nil {
			return
		}
		r, reason := compileRoute(t)
		if reason != "" {
			d.fail(path, reason)
			return
		}
		for j := range p.Routes {
			if p.Routes[j].covers(&r) {
				d.fail(path, "never matches: "+indexPath("routes", j)+" ("+strconv.Quote(p.Routes[j].Template)+
					") before it matches every path it does")
				return
			}
		}
		p.Routes = append(p.Routes, r)
	})
}
