package plugin_test

import (
	"strings"
	"testing"
)

// TestBadPolicyFailsStart checks that each kind of policy error stops the plugin with one log line naming
// the field and the reason.
func TestBadPolicyFailsStart(t *testing.T) {
	tests := []struct {
		name, policy, want string
	}{
		{"unknown field", `{"tags": [{"attribute": "a", "frm": []}]}`, "tags[0].frm: unknown field"},
		{"wrong type", `{"export": {"batch_size": "many"}}`, "export.batch_size: must be a positive integer"},
		{"bad regex", `{"tags": [{"attribute": "a", "from": [{"header": "x"}], "regex": "(["}]}`, "tags[0].regex: error parsing regexp"},
		{"hmac without key", `{"tags": [{"attribute": "a", "from": [{"header": "x"}], "hash": true}]}`, `tags[0].hash: requires "hmac_key"`},
		{"duplicate attribute", `{"tags": [{"attribute": "a", "from": [{"header": "x"}]}, {"attribute": "a", "from": [{"cookie": "y"}]}]}`, `tags[1].attribute: duplicate attribute "a"`},
		{"invalid JSON", `{"tags": `, "invalid JSON"},
		{"unknown trace mode", `{"trace": {"mode": "both"}}`, "trace.mode: must be one of filter, envoy"},
		{"b3 in envoy mode", `{"trace": {"mode": "envoy", "b3": true}}`, `trace.b3: has no effect with trace.mode "envoy"`},
	}
	forEachRunner(t, func(t *testing.T, r runner) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := r.load(t, tc.policy, nil)
				if err == nil {
					t.Fatal("plugin started with a bad policy")
				}
				if !strings.Contains(err.Error(), "meshtrace: invalid policy: "+tc.want) {
					t.Fatalf("error %q does not name %q", err, tc.want)
				}
				if n := strings.Count(err.Error(), "invalid policy"); n != 1 {
					t.Fatalf("%d log lines about the policy, want 1: %v", n, err)
				}
			})
		}
	})
}

func TestEmptyPolicyStarts(t *testing.T) {
	forEachRunner(t, func(t *testing.T, r runner) {
		e := r.setup(t, "", nil)
		if got := e.tickPeriod().Milliseconds(); got != 1000 {
			t.Errorf("tick period %d ms, want the default 1000", got)
		}
		e.do(request{headers: get(), status: "200"})
		if spans := e.spans(); len(spans) != 1 || len(attrs(spans[0].Attributes)) == 0 {
			t.Errorf("spans = %v", spans)
		}
	})
}

func TestIdentity(t *testing.T) {
	istio := props(
		"xds.node.metadata.LABELS.service.istio.io/canonical-name", "checkout",
		"xds.node.metadata.LABELS.app", "checkout-app",
		"xds.node.metadata.WORKLOAD_NAME", "checkout-v2",
		"xds.node.metadata.NAMESPACE", "shop",
		"xds.node.metadata.NAME", "checkout-v2-5d9f-abcde",
	)
	tests := []struct {
		name   string
		policy string
		props  map[string][]byte
		want   map[string]string
	}{
		{"from node metadata", "", istio, map[string]string{
			"service.name": "checkout", "service.namespace": "shop", "k8s.namespace.name": "shop",
			"meshtrace.workload": "checkout-v2", "k8s.pod.name": "checkout-v2-5d9f-abcde",
			"telemetry.sdk.name": "meshtrace-filter",
		}},
		{"app label fallback", "", props("xds.node.metadata.LABELS.app", "cart", "xds.node.metadata.WORKLOAD_NAME", "cart-v1"),
			map[string]string{"service.name": "cart", "meshtrace.workload": "cart-v1"}},
		{"workload fallback", "", props("xds.node.metadata.WORKLOAD_NAME", "cart-v1"), map[string]string{"service.name": "cart-v1"}},
		{"older proxies' node attribute", "", props("node.metadata.WORKLOAD_NAME", "cart-v0"),
			map[string]string{"service.name": "cart-v0"}},
		{"no metadata", "", nil, map[string]string{"service.name": "unknown_service"}},
		{"policy overrides", `{"service": {"name": "orders", "namespace": "prod", "workload": "orders-blue"}}`, istio,
			map[string]string{"service.name": "orders", "service.namespace": "prod", "meshtrace.workload": "orders-blue"}},
	}
	forEachRunner(t, func(t *testing.T, r runner) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e := r.setup(t, tc.policy, tc.props)
				e.do(request{headers: get(), status: "200"})
				reqs := e.export("200")
				if len(reqs) != 1 || len(reqs[0].ResourceSpans) != 1 {
					t.Fatalf("want one request with one ResourceSpans, got %v", reqs)
				}
				rs := reqs[0].ResourceSpans[0]
				got := attrs(rs.Resource.Attributes)
				for k, v := range tc.want {
					if got[k] != v {
						t.Errorf("resource %s = %q, want %q (all: %v)", k, got[k], v, got)
					}
				}
				if scope := rs.ScopeSpans[0].Scope; scope.Name != "meshtrace-filter" || scope.Version == "" {
					t.Errorf("scope = %v", scope)
				}
			})
		}
	})
}
