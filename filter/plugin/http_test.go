package plugin_test

import (
	"cmp"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

func TestSpanKindFromDirection(t *testing.T) {
	tests := []struct {
		name, policy string
		direction    int64
		want         tracepb.Span_SpanKind
		property     string // where the host serves the direction; default xds.listener_direction
		node         string // xds.node.id, when set
	}{
		{"inbound listener", "", 1, tracepb.Span_SPAN_KIND_SERVER, "", ""},
		{"outbound listener", `{"trace": {"start_new": true}}`, 2, tracepb.Span_SPAN_KIND_CLIENT, "", ""},
		{"gateway", `{"direction": "gateway"}`, 2, tracepb.Span_SPAN_KIND_SERVER, "", ""},
		{"policy outbound overrides listener", `{"direction": "outbound", "trace": {"start_new": true}}`, 1, tracepb.Span_SPAN_KIND_CLIENT, "", ""},
		{"policy inbound overrides listener", `{"direction": "inbound"}`, 2, tracepb.Span_SPAN_KIND_SERVER, "", ""},
		{"older proxies' listener_direction", `{"trace": {"start_new": true}}`, 2, tracepb.Span_SPAN_KIND_CLIENT,
			"listener_direction", ""},
		{"auto on an Istio gateway", `{"trace": {"start_new": true}}`, 2, tracepb.Span_SPAN_KIND_SERVER, "",
			"router~10.1.2.3~istio-ingressgateway-5d8f.istio-system~istio-system.svc.cluster.local"},
		{"auto on an Istio sidecar", `{"trace": {"start_new": true}}`, 2, tracepb.Span_SPAN_KIND_CLIENT, "",
			"sidecar~10.1.2.4~frontend-7c9.shop~shop.svc.cluster.local"},
	}
	forEachRunner(t, func(t *testing.T, r runner) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				prop := cmp.Or(tc.property, "xds.listener_direction")
				props := map[string][]byte{prop: intProp(tc.direction)}
				if tc.node != "" {
					props["xds.node.id"] = []byte(tc.node)
				}
				e := r.setup(t, tc.policy, props)
				s, _ := e.oneSpan(request{headers: get([2]string{"traceparent", inParent}), status: "200"})
				if s.Kind != tc.want {
					t.Fatalf("kind %v, want %v", s.Kind, tc.want)
				}
			})
		}
	})
}

func TestHTTPAttributes(t *testing.T) {
	forEachRunner(t, func(t *testing.T, r runner) {
		t.Run("server", func(t *testing.T) {
			e := r.setup(t, "", props("source.address", "10.0.0.7:51234"))
			s, _ := e.oneSpan(request{
				headers: get([2]string{"x-forwarded-for", "203.0.113.9, 10.0.0.1"}),
				status:  "200",
				props: map[string][]byte{
					"xds.cluster_name": []byte("inbound|8080||"), "response.code": intProp(200),
					"response.code_details": []byte("via_upstream"),
				},
			})
			want := map[string]string{
				"http.request.method": "GET", "url.path": "/orders/42", "url.scheme": "http",
				"server.address": "shop.example", "server.port": "8080", "user_agent.original": "curl/8",
				"client.address": "203.0.113.9", "network.peer.address": "10.0.0.7", "network.peer.port": "51234",
				"http.response.status_code": "200", "envoy.upstream.cluster": "inbound|8080||",
			}
			got := attrs(s.Attributes)
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			for _, k := range []string{"envoy.response_flags", "envoy.response_code_details"} {
				if _, ok := got[k]; ok {
					t.Errorf("unexpected %s on a clean response", k)
				}
			}
			if s.Name != "GET" || s.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
				t.Errorf("name %q status %v", s.Name, s.Status)
			}
		})
		t.Run("client", func(t *testing.T) {
			e := r.setup(t, "", map[string][]byte{"xds.listener_direction": intProp(2), "source.address": []byte("10.0.0.7:1")})
			s, _ := e.oneSpan(request{
				headers: get([2]string{"traceparent", inParent}),
				status:  "200",
				props: map[string][]byte{
					"upstream.address": []byte("[fd00::5]:9090"), "xds.cluster_name": []byte("outbound|9090||b.shop.svc.cluster.local"),
				},
			})
			got := attrs(s.Attributes)
			if got["network.peer.address"] != "fd00::5" || got["network.peer.port"] != "9090" ||
				got["envoy.upstream.cluster"] != "outbound|9090||b.shop.svc.cluster.local" {
				t.Errorf("client attributes %v", got)
			}
			if _, ok := got["client.address"]; ok {
				t.Errorf("client span has client.address")
			}
		})
	})
}

func TestStatus(t *testing.T) {
	tests := []struct {
		name     string
		status   string
		props    map[string][]byte
		outbound bool
		want     tracepb.Status_StatusCode
		attrs    map[string]string
	}{
		{"2xx", "200", nil, false, tracepb.Status_STATUS_CODE_UNSET, map[string]string{"http.response.status_code": "200"}},
		{"4xx server", "404", nil, false, tracepb.Status_STATUS_CODE_UNSET, nil},
		{"4xx client", "404", nil, true, tracepb.Status_STATUS_CODE_ERROR, nil},
		{"5xx", "503", map[string][]byte{"response.code_details": []byte("via_upstream")}, false, tracepb.Status_STATUS_CODE_ERROR, nil},
		{"local reply", "", map[string][]byte{
			"response.code": intProp(503), "response.flags": intProp(0x20 | 0x8000),
			"response.code_details": []byte("upstream_reset_before_response_started{connection_failure}"),
		}, false, tracepb.Status_STATUS_CODE_ERROR, map[string]string{
			"http.response.status_code": "503", "envoy.response_flags": "UF,URX",
			"envoy.response_code_details": "upstream_reset_before_response_started{connection_failure}",
		}},
		{"local reply below 500", "", map[string][]byte{
			"response.code": intProp(404), "response.flags": intProp(0x100), "response.code_details": []byte("route_not_found"),
		}, false, tracepb.Status_STATUS_CODE_ERROR, map[string]string{"envoy.response_flags": "NR"}},
		{"property wins over header", "200", map[string][]byte{"response.code": intProp(502)}, false,
			tracepb.Status_STATUS_CODE_ERROR, map[string]string{"http.response.status_code": "502"}},
	}
	forEachRunner(t, func(t *testing.T, r runner) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				dir := int64(1)
				if tc.outbound {
					dir = 2
				}
				e := r.setup(t, "", map[string][]byte{"xds.listener_direction": intProp(dir)})
				s, _ := e.oneSpan(request{headers: get([2]string{"traceparent", inParent}), status: tc.status, props: tc.props})
				if s.Status.GetCode() != tc.want {
					t.Errorf("status %v, want %v", s.Status, tc.want)
				}
				got := attrs(s.Attributes)
				for k, v := range tc.attrs {
					if got[k] != v {
						t.Errorf("%s = %q, want %q", k, got[k], v)
					}
				}
			})
		}
	})
}

// TestHostClock runs on the compiled builds only: the native build reads the wall clock, not the host's.
func TestHostClock(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		e := setup(t, m, "", nil)
		start := e.clock.unixNano()
		s, _ := e.oneSpan(request{headers: get(), status: "200", duration: 250 * time.Millisecond})
		if s.StartTimeUnixNano != start || s.EndTimeUnixNano != start+uint64(250*time.Millisecond) {
			t.Fatalf("start %d end %d, want %d and +250ms", s.StartTimeUnixNano, s.EndTimeUnixNano, start)
		}
	})
}

func jwt(payload string) string {
	enc := base64.RawURLEncoding
	return "Bearer " + enc.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." + enc.EncodeToString([]byte(payload)) + ".c2ln"
}

func TestTags(t *testing.T) {
	const policy = `{
	  "hmac_key": "key",
	  "tags": [
	    {"attribute": "customer_id", "from": [{"header": "x-customer-id"}, {"baggage": "customer_id"}],
	     "regex": "^(?:cust-)?([0-9]+)$", "propagate": true, "envoy_header": "x-meshtrace-customer-id"},
	    {"attribute": "tenant", "from": [{"jwt_claim": "tenant"}, {"cookie": "tenant"}], "lowercase": true, "default": "none"},
	    {"attribute": "campaign", "from": [{"query": "utm_campaign"}], "max_length": 5},
	    {"attribute": "session", "from": [{"cookie": "session"}], "redact": true},
	    {"attribute": "user", "from": [{"jwt_claim": "sub"}], "hash": true}
	  ]}`
	tests := []struct {
		name    string
		headers [][2]string
		want    map[string]string // "" = absent
		baggage string
		envoy   string
	}{
		{"header with regex, jwt, query, redact, hash",
			[][2]string{{"x-customer-id", "cust-42"}, {"authorization", jwt(`{"tenant":"ACME","sub":"42"}`)},
				{"cookie", "session=s3cr3t; tenant=other"}},
			map[string]string{"customer_id": "42", "tenant": "acme", "session": "[REDACTED]",
				// echo -n 42 | openssl dgst -sha256 -hmac key
				"user": "f2991b7ce981d0b5adc5e6a0f31acaeb407bfc21354bbcc31a0c43eaffa83d65", "campaign": ""},
			"customer_id=42", "42"},
		{"fallback to baggage and cookie, default",
			[][2]string{{"x-customer-id", "not-a-number"}, {"baggage", "other=1,customer_id=cust-7"}, {"cookie", "tenant=Globex"}},
			map[string]string{"customer_id": "7", "tenant": "globex", "session": "", "user": ""},
			"other=1,customer_id=7", "7"},
		{"default and query truncation",
			[][2]string{{":path", "/p?utm_campaign=black-friday"}},
			map[string]string{"customer_id": "", "tenant": "none", "campaign": "black"},
			"", ""},
		{"baggage already carries the value",
			[][2]string{{"baggage", "customer_id=9;p=1"}},
			map[string]string{"customer_id": "9"},
			"customer_id=9;p=1", "9"},
	}
	forEachRunner(t, func(t *testing.T, r runner) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e := r.setup(t, policy, nil)
				headers := get()
				for _, h := range tc.headers {
					if h[0] == ":path" {
						headers[1] = h
						continue
					}
					headers = append(headers, h)
				}
				s, out := e.oneSpan(request{headers: headers, status: "200"})
				got := attrs(s.Attributes)
				for k, v := range tc.want {
					if v == "" {
						if g, ok := got[k]; ok {
							t.Errorf("%s = %q, want absent", k, g)
						}
					} else if got[k] != v {
						t.Errorf("%s = %q, want %q", k, got[k], v)
					}
				}
				if b := header(out, "baggage"); b != tc.baggage {
					t.Errorf("outgoing baggage %q, want %q", b, tc.baggage)
				}
				if v := header(out, "x-meshtrace-customer-id"); v != tc.envoy {
					t.Errorf("envoy header %q, want %q", v, tc.envoy)
				}
			})
		}
	})
}

// TestPropagatedTagReachesLaterHop checks that a hop which never sees the original header still gets the
// tag through the baggage the first hop wrote.
func TestPropagatedTagReachesLaterHop(t *testing.T) {
	forEachRunner(t, func(t *testing.T, r runner) {
		first := r.setup(t, `{"tags": [{"attribute": "customer_id", "from": [{"header": "x-customer-id"}], "propagate": true}]}`, nil)
		out := first.do(request{headers: get([2]string{"x-customer-id", "42"}), status: "200"})
		first.close() // the native runner holds one filter at a time
		later := r.setup(t, `{"tags": [{"attribute": "customer_id", "from": [{"baggage": "customer_id"}]}]}`, nil)
		var next [][2]string
		for _, h := range out {
			if h[0] != "x-customer-id" {
				next = append(next, h)
			}
		}
		s, _ := later.oneSpan(request{headers: next, status: "200"})
		if got := attrs(s.Attributes)["customer_id"]; got != "42" {
			t.Fatalf("later hop customer_id = %q", got)
		}
	})
}

// TestHostileInput sends malformed and huge values: the filter must pass every request unchanged in
// outcome (continue, no local reply), keep recording spans and never trap.
func TestHostileInput(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	cases := [][][2]string{
		{{":path", huge}, {"user-agent", huge}, {":authority", huge}},
		{{"baggage", huge}, {"cookie", huge}, {"authorization", "Bearer " + huge}},
		{{"baggage", "=,;;,%%%,k=%zz,\x00=\xff"}, {"cookie", ";;==;"}, {"authorization", "Bearer ..."}},
		{{"authorization", jwt(`{"tenant": {"nested": [1,2,3]}, "sub": 1e999}`)}},
		{{"x-customer-id", "\xff\xfe\x00"}, {"traceparent", "00-" + inTrace + "-" + inSpan}},
		{{":authority", "[::1"}, {":authority", ":::::"}, {"x-forwarded-for", ",,,"}},
		{},
	}
	const policy = `{"hmac_key": "k", "trace": {"b3": true}, "tags": [
	  {"attribute": "customer_id", "from": [{"header": "x-customer-id"}], "propagate": true, "envoy_header": "x-c", "hash": true},
	  {"attribute": "tenant", "from": [{"jwt_claim": "tenant"}, {"jwt_claim": "sub"}, {"cookie": "t"}, {"baggage": "t"}, {"query": "t"}], "regex": "(a+)+$"}]}`
	// The same tag rules in envoy mode (which refuses b3) and with untrusted baggage: no spans at all.
	envoyPolicy := strings.Replace(policy, `"trace": {"b3": true}`, `"trace": {"mode": "envoy", "trust_baggage": false}`, 1)
	modes := []struct {
		name, policy string
		spans        int
	}{{"filter mode", policy, len(cases)}, {"envoy mode", envoyPolicy, 0}}
	forEachRunner(t, func(t *testing.T, r runner) {
		for _, m := range modes {
			t.Run(m.name, func(t *testing.T) {
				e := r.setup(t, m.policy, props("xds.listener_direction", "not an int", "source.address", "::::"))
				for _, c := range cases {
					e.do(request{headers: append(get(), c...), status: "not a number", props: map[string][]byte{"response.code": []byte("x")}})
				}
				if spans := e.spans(); len(spans) != m.spans {
					t.Fatalf("%d spans, want %d", len(spans), m.spans)
				}
				if r.native() {
					return // live contexts are counted by the wasm host only
				}
				if live := e.h.LiveContexts(); live != 1 {
					t.Fatalf("%d live contexts after all streams completed, want only the root", live)
				}
			})
		}
	})
}

// TestSpanNameFromRoute checks the span names "{method} {route}" and http.route from the policy's routes:
// first match wins, the query is ignored, and with no match the name is the method alone and there is no
// http.route.
func TestSpanNameFromRoute(t *testing.T) {
	const policy = `{"routes": ["/orders/export", "/orders/{id}", "/api/cart/*", "/"]}`
	tests := []struct {
		name, method, path string
		direction          int64
		wantName, route    string // route "" = no http.route
	}{
		{"parameter, query ignored", "GET", "/orders/42?x=1", 1, "GET /orders/{id}", "/orders/{id}"},
		{"literal before parameter", "POST", "/orders/export", 1, "POST /orders/export", "/orders/export"},
		{"rest of the path", "DELETE", "/api/cart/7/items?all=1", 1, "DELETE /api/cart/*", "/api/cart/*"},
		{"root", "GET", "/", 1, "GET /", "/"},
		{"no match: method alone", "GET", "/orders/42/items", 1, "GET", ""},
		{"no match without the slash", "GET", "/api/cart", 1, "GET", ""},
		{"other method", "PROPFIND", "/orders/1", 1, "PROPFIND /orders/{id}", "/orders/{id}"},
		{"no method", "", "/orders/1", 1, "HTTP /orders/{id}", "/orders/{id}"},
		{"client span", "PUT", "/orders/9", 2, "PUT /orders/{id}", "/orders/{id}"},
	}
	forEachRunner(t, func(t *testing.T, r runner) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e := r.setup(t, policy, map[string][]byte{"xds.listener_direction": intProp(tc.direction)})
				var headers [][2]string
				if tc.method != "" {
					headers = append(headers, [2]string{":method", tc.method})
				}
				headers = append(headers, [2]string{":path", tc.path}, [2]string{"traceparent", inParent})
				s, _ := e.oneSpan(request{headers: headers, status: "200"})
				if s.Name != tc.wantName {
					t.Errorf("name %q, want %q", s.Name, tc.wantName)
				}
				route, ok := attrs(s.Attributes)["http.route"]
				if tc.route == "" && ok {
					t.Errorf("http.route %q, want none", route)
				} else if route != tc.route {
					t.Errorf("http.route %q, want %q", route, tc.route)
				}
			})
		}
	})
	t.Run("no routes", func(t *testing.T) {
		forEachRunner(t, func(t *testing.T, r runner) {
			e := r.setup(t, "", nil)
			s, _ := e.oneSpan(request{headers: get(), status: "200"})
			if _, ok := attrs(s.Attributes)["http.route"]; ok || s.Name != "GET" {
				t.Errorf("name %q, attributes %v", s.Name, attrs(s.Attributes))
			}
		})
	})
}

// TestStreamContextReuse checks that a stream carries nothing of the one before it: a finished stream's
// context is reused for the next (rootContext.releaseHTTP). The first stream has a tag, a propagated baggage
// member and an error; the second has none of them.
func TestStreamContextReuse(t *testing.T) {
	forEachRunner(t, func(t *testing.T, r runner) {
		r.skipIfManyHeaderWrites(t) // traceparent and baggage
		e := r.setup(t, `{"direction": "inbound", "trace": {"trust_baggage": true}, "tags": [
			{"attribute": "customer_id", "from": [{"header": "x-customer-id"}], "propagate": true}]}`, nil)
		first := e.do(request{headers: get([2]string{"x-customer-id", "42"}, [2]string{"baggage", "region=eu"}), status: "503"})
		second := e.do(request{headers: get(), status: "200"})
		third := e.do(request{headers: get([2]string{"baggage", "tier=gold"}), status: "200"})
		if b := header(first, "baggage"); !strings.Contains(b, "customer_id=42") || !strings.Contains(b, "region=eu") {
			t.Errorf("first stream's baggage %q", b)
		}
		if b := header(second, "baggage"); b != "" {
			t.Errorf("second stream got baggage %q, from the stream before it", b)
		}
		if b := header(third, "baggage"); b != "tier=gold" {
			t.Errorf("third stream's baggage %q, want its own, unchanged", b)
		}
		spans := e.spans()
		if len(spans) != 3 {
			t.Fatalf("%d spans, want 3", len(spans))
		}
		for i, s := range spans[1:] {
			a := attrs(s.Attributes)
			if a["customer_id"] != "" || a["http.response.status_code"] != "200" || s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
				t.Errorf("stream %d: customer_id %q, status %s %v: left over from the first stream", i+2, a["customer_id"], a["http.response.status_code"], s.GetStatus())
			}
			if hexID(s.TraceId) == hexID(spans[0].TraceId) {
				t.Errorf("stream %d shares the first stream's trace", i+2)
			}
		}
	})
}
