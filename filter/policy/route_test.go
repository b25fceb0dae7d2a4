package policy

import (
	"strings"
	"testing"
)

func TestRouteMatch(t *testing.T) {
	tests := []struct {
		template string
		match    []string
		miss     []string
	}{
		{"/api/orders/{id}",
			[]string{"/api/orders/42", "/api/orders/a%2Fb", "/api/orders/{id}"},
			[]string{"/api/orders", "/api/orders/", "/api/orders/42/", "/api/orders/42/items", "/api/Orders/42", "api/orders/42", "", "/"}},
		{"/api/cart/*",
			[]string{"/api/cart/", "/api/cart/7", "/api/cart/7/items", "/api/cart//x"},
			[]string{"/api/cart", "/api/carts/7", "/api/cart7", "/api"}},
		{"/*", []string{"/", "/x", "/x/y/"}, []string{"", "x"}},
		{"/", []string{"/"}, []string{"/x", "//", ""}},
		{"/api/orders/", []string{"/api/orders/"}, []string{"/api/orders", "/api/orders/1"}},
		{"/healthz", []string{"/healthz"}, []string{"/healthz/", "/healthzz", "/health"}},
		{"/{tenant}/users/{id}/*",
			[]string{"/acme/users/1/", "/acme/users/1/orders/2"},
			[]string{"/acme/users/1", "//users/1/x", "/acme/users//x"}},
		{"/v1/{a}/{b}", []string{"/v1/x/y"}, []string{"/v1/x", "/v1/x/y/z", "/v1//y", "/v1/x/"}},
	}
	for _, tc := range tests {
		r, reason := compileRoute(tc.template)
		if reason != "" {
			t.Fatalf("compileRoute(%q): %s", tc.template, reason)
		}
		for _, p := range tc.match {
			if !r.Match(p) {
				t.Errorf("%q does not match %q", tc.template, p)
			}
		}
		for _, p := range tc.miss {
			if r.Match(p) {
				t.Errorf("%q matches %q", tc.template, p)
			}
		}
	}
}

func TestRouteFirstMatchAndSpanName(t *testing.T) {
	p, err := Parse([]byte(`{"routes": ["/api/orders/export", "/api/orders/{id}", "/api/*"]}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, route string }{
		{"/api/orders/export", "/api/orders/export"},
		{"/api/orders/42", "/api/orders/{id}"},
		{"/api/orders/42/items", "/api/*"},
		{"/other", ""},
	}
	for _, tc := range tests {
		got := ""
		if r := p.Route(tc.path); r != nil {
			got = r.Template
		}
		if got != tc.route {
			t.Errorf("Route(%q) = %q, want %q", tc.path, got, tc.route)
		}
	}
	r := &p.Routes[1]
	for method, want := range map[string]string{
		"GET": "GET /api/orders/{id}", "PATCH": "PATCH /api/orders/{id}", "": "HTTP /api/orders/{id}",
		"PROPFIND": "PROPFIND /api/orders/{id}",
	} {
		if got := r.SpanName(method); got != want {
			t.Errorf("SpanName(%q) = %q, want %q", method, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		if p.Route("/api/orders/42").SpanName("GET") == "" {
			t.Fatal("no name")
		}
		p.Route("/nowhere/at/all")
	}); n != 0 {
		t.Errorf("%v allocations per match", n)
	}
}

func TestRouteErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"routes": "/a"}`, "routes: must be an array"},
		{`{"routes": ["/a", 5]}`, "routes[1]: must be a string"},
		{`{"routes": [""]}`, "routes[0]: must not be empty"},
		{`{"routes": ["api/x"]}`, "routes[0]: must start with '/'"},
		{`{"routes": ["/a", "/b", "/c", "/x?y=1"]}`, "routes[3]: must not contain spaces, control characters, '?' or '#'"},
		{`{"routes": ["/a b"]}`, "routes[0]: must not contain spaces"},
		{`{"routes": ["/a/*/b"]}`, `routes[0]: "*" must be the last segment`},
		{`{"routes": ["/a/b*"]}`, `routes[0]: "*" must be a whole segment`},
		{`{"routes": ["/a//b"]}`, `routes[0]: empty segment`},
		{`{"routes": ["/a/{rest...}"]}`, `routes[0]: "{rest...}" is not supported: end the template with "*"`},
		{`{"routes": ["/a/{}"]}`, `routes[0]: parameter "{}" must be {name}`},
		{`{"routes": ["/a/{x y}"]}`, `routes[0]: must not contain spaces`},
		{`{"routes": ["/a/{a/b}"]}`, `routes[0]: a {name} parameter must be a whole segment`},
		{`{"routes": ["/a/{id}.json"]}`, `routes[0]: a {name} parameter must be a whole segment`},
		{`{"routes": ["/a/{id}/{id}"]}`, `routes[0]: duplicate parameter "{id}"`},
		{`{"routes": ["/` + strings.Repeat("a", MaxRouteLength) + `"]}`, "routes[0]: longer than 256 bytes"},
		{`{"routes": ["/a", "/a"]}`, `routes[1]: never matches: routes[0] ("/a") before it matches every path it does`},
		{`{"routes": ["/api/*", "/api/orders/{id}"]}`, `routes[1]: never matches: routes[0] ("/api/*")`},
		{`{"routes": ["/x", "/api/{v}/orders", "/api/v1/orders"]}`, `routes[2]: never matches: routes[1]`},
		{`{"routes": ["/api/*", "/api/"]}`, `routes[1]: never matches`},
		{`{"routes": ["/*", "/"]}`, `routes[1]: never matches`},
		{`{"trace": {"mode": "envoy"}, "routes": ["/a"]}`, `routes: has no effect with trace.mode "envoy"`},
	}
	for _, tc := range tests {
		_, err := Parse([]byte(tc.in))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Parse(%s) = %v, want prefix %q", tc.in, err, tc.want)
		}
	}
	var many []string
	for i := 0; i <= MaxRoutes; i++ {
		many = append(many, `"/r`+strings.Repeat("x", i)+`"`)
	}
	if _, err := Parse([]byte(`{"routes": [` + strings.Join(many, ",") + `]}`)); err == nil ||
		err.Error() != "routes[64]: too many routes: the limit is 64" {
		t.Errorf("too many routes: %v", err)
	}
}

// TestRoutesAccepted checks templates that must not be refused: ones an earlier template does not cover.
func TestRoutesAccepted(t *testing.T) {
	for _, in := range []string{
		`{"routes": ["/api/orders/{id}", "/api/orders", "/api/orders/", "/api/orders/{id}/*", "/api/*", "/*"]}`,
		`{"routes": ["/api/v1/orders", "/api/{version}/orders"]}`,
		`{"routes": ["/api/cart/*", "/api/cart"]}`,
		`{"routes": ["/{a}", "/"]}`,
		`{"routes": ["/a/{snake_case}/{kebab-case}/{dotted.name}/{Camel9}"]}`,
		`{"routes": []}`,
	} {
		if _, err := Parse([]byte(in)); err != nil {
			t.Errorf("Parse(%s): %v", in, err)
		}
	}
}

func FuzzRouteMatch(f *testing.F) {
	f.Add("/api/orders/{id}", "/api/orders/42")
	f.Add("/api/cart/*", "/api/cart/1/2")
	f.Add("/", "//")
	f.Fuzz(func(t *testing.T, template, path string) {
		r, reason := compileRoute(template)
		if reason != "" {
			return
		}
		if r.Match(path) && !strings.HasPrefix(path, "/") {
			t.Fatalf("%q matches %q", template, path)
		}
		if !r.Match(template) { // "{id}" is a segment "{id}" matches, "*" one "*" matches
			t.Fatalf("%q does not match itself", template)
		}
	})
}
