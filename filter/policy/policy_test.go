package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("testdata/example.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if p.Service != (Service{Name: "checkout", Namespace: "shop", Workload: "checkout-v2"}) {
		t.Errorf("service = %+v", p.Service)
	}
	if p.Direction != DirectionAuto || p.Trace.StartNew == nil || !*p.Trace.StartNew || !p.Trace.B3 {
		t.Errorf("direction/trace = %v %+v", p.Direction, p.Trace)
	}
	if p.Export.BatchSize != 256 || p.Export.MaxRetries != 2 || p.Export.Path != "/v1/traces" {
		t.Errorf("export = %+v", p.Export)
	}
	if len(p.Tags) != 6 {
		t.Fatalf("tags = %d", len(p.Tags))
	}
	first := p.Tags[0]
	if first.Attribute != "customer_id" || len(first.From) != 2 || first.From[1] != (Source{SourceBaggage, "customer_id"}) ||
		!first.Propagate || first.EnvoyHeader != "x-meshtrace-customer-id" || first.Regex == nil {
		t.Errorf("tags[0] = %+v", first)
	}
	if p.Tags[5].From[0].Kind != SourceRecordHeader {
		t.Errorf("tags[5].from = %+v", p.Tags[5].From)
	}
	if len(p.Network.PeerServices) != 2 || p.Network.PeerServices[0].Port != 5432 || p.Network.Kafka.Ports[0] != 9092 {
		t.Errorf("network = %+v", p.Network)
	}
}

func TestParseDefaults(t *testing.T) {
	for _, in := range []string{"", " \n", "{}"} {
		p, err := Parse([]byte(in))
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		if p.Export != Default().Export || p.Trace.StartNew != nil || len(p.Tags) != 0 {
			t.Errorf("Parse(%q) = %+v", in, p)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tag := func(extra string) string {
		return `{"attribute": "a", "from": [{"header": "x-a"}]` + extra + `}`
	}
	tests := []struct {
		name, in, want string
	}{
		{"invalid JSON", `{"tags": [}`, "invalid JSON: "},
		{"not an object", `[1]`, "must be an object"},
		{"unknown top-level field", `{"servce": {}}`, "servce: unknown field"},
		{"unknown tag field", `{"tags": [` + tag("") + `,` + tag("") + `,{"attribute": "c", "frm": []}]}`, "tags[2].frm: unknown field"},
		{"wrong type string", `{"hmac_key": 5}`, "hmac_key: must be a string"},
		{"wrong type bool", `{"trace": {"b3": "yes"}}`, "trace.b3: must be a boolean"},
		{"wrong type array", `{"tags": {}}`, "tags: must be an array"},
		{"batch size zero", `{"export": {"batch_size": 0}}`, "export.batch_size: must be a positive integer"},
		{"batch size fraction", `{"export": {"batch_size": 1.5}}`, "export.batch_size: must be a positive integer"},
		{"negative retries", `{"export": {"max_retries": -1}}`, "export.max_retries: must be an integer >= 0"},
		{"buffer below batch", `{"export": {"batch_size": 100, "max_buffered": 10}}`, "export.max_buffered: must be at least export.batch_size"},
		{"relative path", `{"export": {"path": "v1/traces"}}`, "export.path: must start with '/'"},
		{"empty cluster", `{"export": {"cluster": ""}}`, "export.cluster: must not be empty"},
		{"bad direction", `{"direction": "sideways"}`, "direction: must be one of auto, inbound, outbound, gateway, client"},
		{"bad regex", `{"tags": [` + tag(`, "regex": "(["`) + `]}`, "tags[0].regex: error parsing regexp: "},
		{"hash without key", `{"tags": [` + tag("") + `,{"attribute": "b", "from": [{"header": "x"}], "hash": true}]}`, `tags[1].hash: requires "hmac_key"`},
		{"duplicate attribute", `{"tags": [` + tag("") + `,` + tag("") + `]}`, `tags[1].attribute: duplicate attribute "a"`},
		{"missing attribute", `{"tags": [{"from": [{"header": "x"}]}]}`, "tags[0].attribute: is required"},
		{"missing from", `{"tags": [{"attribute": "a"}]}`, "tags[0].from: must name at least one source"},
		{"two sources in one", `{"tags": [{"attribute": "a", "from": [{"header": "x", "cookie": "y"}]}]}`, "tags[0].from[0]: must have exactly one of"},
		{"unknown source", `{"tags": [{"attribute": "a", "from": [{"form": "x"}]}]}`, "tags[0].from[0].form: unknown field"},
		{"hash and redact", `{"hmac_key": "k", "tags": [` + tag(`, "hash": true, "redact": true`) + `]}`, `tags[0].redact: cannot be combined with "hash"`},
		{"propagate bad key", `{"tags": [{"attribute": "a b", "from": [{"header": "x"}], "propagate": true}]}`, "tags[0].propagate: attribute \"a b\" is not a valid baggage key"},
		{"bad envoy header", `{"tags": [` + tag(`, "envoy_header": "X-Upper"`) + `]}`, "tags[0].envoy_header: must be a lower-case HTTP header name"},
		{"zero max length", `{"tags": [` + tag(`, "max_length": 0`) + `]}`, "tags[0].max_length: must be a positive integer"},
		{"port out of range", `{"network": {"kafka": {"ports": [70000]}}}`, "network.kafka.ports[0]: must be a port number (1-65535)"},
		{"peer service both", `{"network": {"peer_services": [{"port": 1, "cluster": "c", "service": "s"}]}}`, "network.peer_services[0]: must have exactly one of port, cluster"},
		{"bad trace mode", `{"trace": {"mode": "zipkin"}}`, "trace.mode: must be one of filter, envoy"},
		{"trace mode not a string", `{"trace": {"mode": 1}}`, "trace.mode: must be a string"},
		{"trust baggage not a bool", `{"trace": {"trust_baggage": "no"}}`, "trace.trust_baggage: must be a boolean"},
		{"egress host upper case", `{"egress": {"hosts": ["API.stripe.com"]}}`, "egress.hosts[0]: must be lower case"},
		{"egress host with a port", `{"egress": {"hosts": ["ok.com", "api.stripe.com:443"]}}`, `egress.hosts[1]: must be a host name or "*." and a host name`},
		{"egress bare wildcard", `{"egress": {"hosts": ["*."]}}`, `egress.hosts[0]: must be a host name`},
		{"egress unknown field", `{"egress": {"host": []}}`, "egress.host: unknown field"},
		{"egress too many hosts", `{"egress": {"hosts": [` + strings.TrimSuffix(strings.Repeat(`"a.b",`, MaxEgressHosts+1), ",") + `]}}`, "egress.hosts[64]: too many hosts: the limit is 64"},
		{"b3 in envoy mode", `{"trace": {"b3": true, "mode": "envoy"}}`, `trace.b3: has no effect with trace.mode "envoy"`},
		{"start_new in envoy mode", `{"trace": {"mode": "envoy", "start_new": false}}`, `trace.start_new: has no effect with trace.mode "envoy"`},
		{"duplicate envoy header", `{"tags": [` + tag(`, "envoy_header": "x-h"`) + `,{"attribute": "b", "from": [{"header": "x"}], "envoy_header": "x-h"}]}`,
			`tags[1].envoy_header: duplicate envoy_header "x-h"`},
		{"peer service nameless", `{"network": {"peer_services": [{"port": 1}]}}`, "network.peer_services[0].service: is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", p)
			}
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("error %T is not *Error", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error = %q, want prefix %q", err, tc.want)
			}
		})
	}
}

func TestParseTraceModeAndBaggageTrust(t *testing.T) {
	tests := []struct {
		name, in string
		mode     TraceMode
		trusted  bool
	}{
		{"defaults", `{}`, TraceModeFilter, true},
		{"gateway distrusts by default", `{"direction": "gateway"}`, TraceModeFilter, false},
		{"outbound trusts by default", `{"direction": "outbound"}`, TraceModeFilter, true},
		{"explicit trust at a gateway", `{"direction": "gateway", "trace": {"trust_baggage": true}}`, TraceModeFilter, true},
		{"explicit distrust", `{"trace": {"trust_baggage": false}}`, TraceModeFilter, false},
		{"filter mode", `{"trace": {"mode": "filter", "b3": true, "start_new": true}}`, TraceModeFilter, true},
		{"envoy mode", `{"direction": "gateway", "trace": {"mode": "envoy", "b3": false}}`, TraceModeEnvoy, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if p.Trace.Mode != tc.mode || p.TrustsBaggageAt(p.Direction) != tc.trusted {
				t.Fatalf("mode %v, trusts baggage %v; want %v, %v", p.Trace.Mode, p.TrustsBaggageAt(p.Direction), tc.mode, tc.trusted)
			}
		})
	}
}

func TestParseDirection(t *testing.T) {
	// Resolve runs as the plugin's start does: gateway says whether the node is an Istio gateway (router~).
	tests := []struct {
		in                string
		want              Direction
		atSidecar, atGate Direction
		needsNode         bool
		trustedAtSidecar  bool
		trustedAtGateway  bool
	}{
		{"auto", DirectionAuto, DirectionAuto, DirectionGateway, true, true, false},
		{"inbound", DirectionInbound, DirectionInbound, DirectionInbound, false, true, true},
		{"outbound", DirectionOutbound, DirectionOutbound, DirectionOutbound, false, true, true},
		{"gateway", DirectionGateway, DirectionGateway, DirectionGateway, false, false, false},
		{"client", DirectionClient, DirectionOutbound, DirectionGateway, true, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			p, err := Parse([]byte(`{"direction": "` + tc.in + `"}`))
			if err != nil {
				t.Fatal(err)
			}
			d := p.Direction
			if d != tc.want || d.String() != tc.in {
				t.Fatalf("direction %v (%d), want %v", d, d, tc.want)
			}
			if got := d.Resolve(false); got != tc.atSidecar {
				t.Errorf("Resolve(sidecar) = %v, want %v", got, tc.atSidecar)
			}
			if got := d.Resolve(true); got != tc.atGate {
				t.Errorf("Resolve(gateway) = %v, want %v", got, tc.atGate)
			}
			if d.NeedsNode() != tc.needsNode {
				t.Errorf("NeedsNode = %v, want %v", d.NeedsNode(), tc.needsNode)
			}
			if got := p.TrustsBaggageAt(d.Resolve(false)); got != tc.trustedAtSidecar {
				t.Errorf("trusts baggage at a sidecar = %v, want %v", got, tc.trustedAtSidecar)
			}
			if got := p.TrustsBaggageAt(d.Resolve(true)); got != tc.trustedAtGateway {
				t.Errorf("trusts baggage at a gateway = %v, want %v", got, tc.trustedAtGateway)
			}
		})
	}
}

func TestSourceHeaderNamesLowerCased(t *testing.T) {
	p, err := Parse([]byte(`{"tags": [{"attribute": "a", "from": [{"header": "X-Customer"}, {"cookie": "Sess"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Tags[0].From; got[0].Name != "x-customer" || got[1].Name != "Sess" {
		t.Fatalf("from = %+v", got)
	}
}

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("testdata/example.json"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"tags": [{"attribute": "a", "from": [{"header": "x"}], "regex": "a(b)"}]}`))
	f.Add([]byte(`{"routes": ["/api/orders/{id}", "/api/cart/*", "/"]}`))
	f.Add([]byte(`{"hmac_key_env": "MESHTRACE_HMAC_KEY", "tags": [{"attribute": "a", "from": [{"header": "x"}], "hash": true}]}`))
	f.Add([]byte(`{"export": {"token_env": "PATH", "cluster": "c"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if (p == nil) == (err == nil) {
			t.Fatalf("Parse returned policy %v and error %v", p, err)
		}
		if p != nil && p.Export.BatchSize < 1 {
			t.Fatalf("accepted batch size %d", p.Export.BatchSize)
		}
		if p != nil && strings.ContainsFunc(p.Export.Token, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			t.Fatalf("accepted a token with a space, control or non-ASCII character")
		}
	})
}

func TestEgressLeavesMesh(t *testing.T) {
	p, err := Parse([]byte(`{"egress": {"hosts": ["*.stripe.com", "api.example.org"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"api.stripe.com": true, "x.y.stripe.com": true, "stripe.com": false, "evilstripe.com": false,
		"api.example.org": true, "www.example.org": false, "checkout.shop.svc.cluster.local": false, "": false,
	} {
		if got := p.Egress.LeavesMesh(host); got != want {
			t.Errorf("LeavesMesh(%q) = %v, want %v", host, got, want)
		}
	}
}
