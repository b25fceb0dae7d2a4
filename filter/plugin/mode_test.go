package plugin_test

import (
	"strings"
	"testing"

	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

// absent in a wantOut map means the header must not be there at all.
const absent = "\x00absent"

// checkOut asserts the request headers the filter passed upstream: each named header exactly once with the
// given value, or not at all when absent.
func checkOut(t *testing.T, out [][2]string, want map[string]string) {
	t.Helper()
	for name, v := range want {
		var got []string
		for _, kv := range out {
			if strings.EqualFold(kv[0], name) {
				got = append(got, kv[1])
			}
		}
		switch {
		case v == absent && len(got) != 0:
			t.Errorf("outgoing %s = %q, want absent", name, got)
		case v != absent && (len(got) != 1 || got[0] != v):
			t.Errorf("outgoing %s = %q, want exactly %q", name, got, v)
		}
	}
}

// customerTag reads customer_id from a header, else the baggage, propagates it and copies it for Envoy.
const customerTag = `{"attribute": "customer_id", "from": [{"header": "x-customer-id"}, {"baggage": "customer_id"}],
  "regex": "^(?:cust-)?([0-9]+)$", "propagate": true, "envoy_header": "x-meshtrace-customer-id"}`

// TestEnvoyMode checks trace.mode "envoy": no HTTP span, the trace context headers as received, and still
// the tag rules' Envoy header copy and baggage.
func TestEnvoyMode(t *testing.T) {
	const b3 = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"
	tests := []struct {
		name, policy string
		headers      [][2]string
		want         map[string]string
	}{
		{"joined context left as received",
			`{"trace": {"mode": "envoy"}, "tags": [` + customerTag + `]}`,
			[][2]string{{"traceparent", inParent}, {"tracestate", "rojo=1"}, {"b3", b3}, {"x-customer-id", "cust-42"}},
			map[string]string{"traceparent": inParent, "tracestate": "rojo=1", "b3": b3,
				"x-meshtrace-customer-id": "42", "baggage": "customer_id=42"}},
		{"no context: none started",
			`{"direction": "gateway", "trace": {"mode": "envoy"}, "tags": [` + customerTag + `]}`,
			[][2]string{{"x-customer-id", "7"}, {"baggage", "other=1"}},
			map[string]string{"traceparent": absent, "b3": absent, "x-meshtrace-customer-id": "7",
				"baggage": "other=1,customer_id=7"}},
		{"multi b3 untouched",
			`{"trace": {"mode": "envoy"}, "tags": [` + customerTag + `]}`,
			[][2]string{{"x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"}, {"x-b3-spanid", "a2fb4a1d1a96d312"},
				{"baggage", "customer_id=9"}},
			map[string]string{"x-b3-spanid": "a2fb4a1d1a96d312", "x-b3-parentspanid": absent, "traceparent": absent,
				"x-meshtrace-customer-id": "9", "baggage": "customer_id=9"}},
		{"no tag rules",
			`{"trace": {"mode": "envoy"}}`,
			[][2]string{{"traceparent", inParent}, {"x-meshtrace-customer-id", "999"}},
			map[string]string{"traceparent": inParent, "x-meshtrace-customer-id": "999", "baggage": absent}},
	}
	forEachRunner(t, func(t *testing.T, r runner) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e := r.setup(t, tc.policy, nil)
				out := e.do(request{headers: get(tc.headers...), status: "200"})
				if spans := e.spans(); len(spans) != 0 {
					t.Fatalf("envoy mode exported %d HTTP spans, want none", len(spans))
				}
				checkOut(t, out, tc.want)
			})
		}
	})
}

// TestEnvoyModeKeepsNetworkSpans checks that the network filter records TCP spans in envoy mode too.
func TestEnvoyModeKeepsNetworkSpans(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		policy := strings.Replace(networkPolicy, "{", `{"trace": {"mode": "envoy"},`, 1)
		e := setup(t, m, policy, networkHost(2))
		c := e.connect(props("upstream.address", "10.0.3.4:5432", "xds.cluster_name", "outbound|5432||db.data.svc.cluster.local"))
		e.downstream(c, []byte("q"))
		if err := c.Close(wasmhost.PeerRemote); err != nil {
			t.Fatal(err)
		}
		if spans := e.spans(); len(spans) != 1 || attrs(spans[0].Attributes)["peer.service"] != "postgres" {
			t.Fatalf("spans %v, want one TCP span to postgres", spans)
		}
	})
}

// TestEnvoyHeaderTrustBoundary checks that a client-sent copy of an envoy_header never survives: removed
// when the rule has no value, replaced when it has one, in both modes and on streams the filter does not
// trace.
func TestEnvoyHeaderTrustBoundary(t *testing.T) {
	const spoof = "x-meshtrace-customer-id"
	tests := []struct {
		name, policy string
		direction    int64
		headers      [][2]string
		want         string // outgoing copy; absent for none
		attr         string // the span's customer_id in filter mode ("" = none or no span)
	}{
		{"filter mode, no value: removed", `{"tags": [` + customerTag + `]}`, 1,
			[][2]string{{spoof, "999"}}, absent, ""},
		{"filter mode, value: replaced", `{"tags": [` + customerTag + `]}`, 1,
			[][2]string{{spoof, "999"}, {"x-customer-id", "42"}}, "42", "42"},
		{"filter mode, several copies: one left", `{"tags": [` + customerTag + `]}`, 1,
			[][2]string{{spoof, "999"}, {spoof, "998"}, {"x-customer-id", "42"}}, "42", "42"},
		{"filter mode, untraced stream: removed", `{"tags": [` + customerTag + `]}`, 2,
			[][2]string{{spoof, "999"}, {"x-customer-id", "42"}}, absent, ""},
		{"envoy mode, no value: removed", `{"trace": {"mode": "envoy"}, "tags": [` + customerTag + `]}`, 1,
			[][2]string{{spoof, "999"}, {"x-customer-id", "no-number"}}, absent, ""},
		{"envoy mode, value: replaced", `{"trace": {"mode": "envoy"}, "tags": [` + customerTag + `]}`, 1,
			[][2]string{{spoof, "999"}, {spoof, "998"}, {"x-customer-id", "cust-5"}}, "5", ""},
	}
	forEachRunner(t, func(t *testing.T, r runner) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e := r.setup(t, tc.policy, map[string][]byte{"xds.listener_direction": intProp(tc.direction)})
				out := e.do(request{headers: get(tc.headers...), status: "200"})
				checkOut(t, out, map[string]string{spoof: tc.want})
				spans := e.spans()
				if tc.attr != "" {
					if len(spans) != 1 || attrs(spans[0].Attributes)["customer_id"] != tc.attr {
						t.Fatalf("spans %v, want one with customer_id %q", spans, tc.attr)
					}
				}
			})
		}
	})
}

// TestBaggageTrust checks trace.trust_baggage: untrusted baggage (by default at a gateway) is not read by
// baggage sources and its propagated members are not forwarded (own values are); trusted baggage is both.
func TestBaggageTrust(t *testing.T) {
	const tenantTag = `{"attribute": "tenant", "from": [{"baggage": "tenant"}], "default": "none"}`
	policy := func(direction, trace string) string {
		return `{"direction": "` + direction + `", "trace": {` + trace + `}, "tags": [` + customerTag + `,` + tenantTag + `]}`
	}
	const spoofed = "customer_id=999,tenant=evil,other=1"
	tests := []struct {
		name, policy string
		headers      [][2]string
		attrs        map[string]string // span attributes in filter mode ("" = absent)
		want         map[string]string // outgoing headers
	}{
		{"gateway ignores and drops", policy("gateway", ""),
			[][2]string{{"baggage", spoofed}},
			map[string]string{"customer_id": "", "tenant": "none"},
			map[string]string{"baggage": "tenant=evil,other=1", "x-meshtrace-customer-id": absent}},
		{"gateway writes own value", policy("gateway", ""),
			[][2]string{{"baggage", spoofed}, {"x-customer-id", "42"}},
			map[string]string{"customer_id": "42", "tenant": "none"},
			map[string]string{"baggage": "tenant=evil,other=1,customer_id=42", "x-meshtrace-customer-id": "42"}},
		{"gateway drops every copy", policy("gateway", ""),
			[][2]string{{"baggage", "customer_id=1,customer_id=2;p"}},
			map[string]string{"customer_id": ""},
			map[string]string{"baggage": absent}},
		{"gateway drops an oversized header", policy("gateway", ""),
			[][2]string{{"baggage", "customer_id=999," + strings.Repeat("k=v,", 3000)}},
			map[string]string{"customer_id": ""},
			map[string]string{"baggage": absent}},
		{"gateway without baggage", policy("gateway", ""),
			[][2]string{{"x-customer-id", "3"}},
			map[string]string{"customer_id": "3"},
			map[string]string{"baggage": "customer_id=3"}},
		{"gateway trusting explicitly", policy("gateway", `"trust_baggage": true`),
			[][2]string{{"baggage", spoofed}},
			map[string]string{"customer_id": "999", "tenant": "evil"},
			map[string]string{"baggage": spoofed, "x-meshtrace-customer-id": "999"}},
		{"inbound trusts by default", policy("inbound", ""),
			[][2]string{{"baggage", spoofed}},
			map[string]string{"customer_id": "999", "tenant": "evil"},
			map[string]string{"baggage": spoofed, "x-meshtrace-customer-id": "999"}},
		{"inbound distrusting explicitly", policy("inbound", `"trust_baggage": false`),
			[][2]string{{"baggage", spoofed}},
			map[string]string{"customer_id": "", "tenant": "none"},
			map[string]string{"baggage": "tenant=evil,other=1"}},
		{"envoy mode gateway drops", policy("gateway", `"mode": "envoy"`),
			[][2]string{{"baggage", spoofed}, {"x-meshtrace-customer-id", "999"}},
			nil,
			map[string]string{"baggage": "tenant=evil,other=1", "x-meshtrace-customer-id": absent}},
		{"envoy mode trusted honoured", policy("inbound", `"mode": "envoy"`),
			[][2]string{{"baggage", spoofed}},
			nil,
			map[string]string{"baggage": spoofed, "x-meshtrace-customer-id": "999"}},
	}
	forEachRunner(t, func(t *testing.T, r runner) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e := r.setup(t, tc.policy, nil)
				out := e.do(request{headers: get(tc.headers...), status: "200"})
				checkOut(t, out, tc.want)
				spans := e.spans()
				if tc.attrs == nil {
					if len(spans) != 0 {
						t.Fatalf("envoy mode exported %d spans", len(spans))
					}
					return
				}
				if len(spans) != 1 {
					t.Fatalf("%d spans, want 1", len(spans))
				}
				got := attrs(spans[0].Attributes)
				for k, v := range tc.attrs {
					if g, ok := got[k]; v == "" && ok {
						t.Errorf("%s = %q, want absent", k, g)
					} else if v != "" && g != v {
						t.Errorf("%s = %q, want %q", k, g, v)
					}
				}
			})
		}
	})
}

// TestIstioGatewayDistrustsBaggage checks that direction "auto" on an Istio gateway (node id router~...)
// resolves to gateway, so incoming business keys in baggage are not believed there by default.
func TestIstioGatewayDistrustsBaggage(t *testing.T) {
	policy := `{"trace": {"start_new": true}, "tags": [` + customerTag + `]}`
	forEachRunner(t, func(t *testing.T, r runner) {
		for _, node := range []string{"router~10.1.2.3~gw.istio-system~istio-system.svc.cluster.local", "sidecar~10.1.2.4~app.shop~shop.svc.cluster.local"} {
			e := r.setup(t, policy, map[string][]byte{"xds.listener_direction": intProp(2), "xds.node.id": []byte(node)})
			out := e.do(request{headers: get([2]string{"baggage", "customer_id=999"}), status: "200"})
			want := map[string]string{"baggage": "customer_id=999", "x-meshtrace-customer-id": "999"}
			if strings.HasPrefix(node, "router~") {
				want = map[string]string{"baggage": absent, "x-meshtrace-customer-id": absent}
			}
			checkOut(t, out, want)
			e.close()
		}
	})
}

// TestEgressHostsGetNothingAdded checks that a request to a host of egress.hosts leaves the mesh without the
// envoy_header copies and the propagated baggage members (added by the filter or carried in by the app),
// while the span still records the business key; a request inside the mesh keeps them. Both modes.
func TestEgressHostsGetNothingAdded(t *testing.T) {
	for _, mode := range []string{"filter", "envoy"} {
		policy := `{"direction": "outbound", "trace": {"mode": "` + mode + `"}, "egress": {"hosts": ["*.stripe.com"]}, "tags": [` + customerTag + `]}`
		if mode == "filter" {
			policy = strings.Replace(policy, `"mode": "filter"`, `"mode": "filter", "start_new": true`, 1)
		}
		forEachRunner(t, func(t *testing.T, r runner) {
			for _, tc := range []struct {
				authority string
				want      map[string]string
			}{
				{"api.stripe.com:443", map[string]string{"x-meshtrace-customer-id": absent, "baggage": "other=1"}},
				{"payments.shop.svc.cluster.local:8080", map[string]string{"x-meshtrace-customer-id": "7", "baggage": "customer_id=7,other=1"}},
			} {
				t.Run(mode+"/"+tc.authority, func(t *testing.T) {
					e := r.setup(t, policy, nil)
					out := e.do(request{status: "200", headers: [][2]string{{":method", "POST"}, {":path", "/v1/charges"},
						{":authority", tc.authority}, {"baggage", "customer_id=7,other=1"}, {"x-meshtrace-customer-id", "7"}}})
					checkOut(t, out, tc.want)
					if mode == "filter" {
						spans := e.spans()
						if len(spans) != 1 || attrs(spans[0].Attributes)["customer_id"] != "7" {
							t.Errorf("spans %v, want one with customer_id 7", spans)
						}
					}
				})
			}
		})
	}
}
