// Package policy parses and validates the filter's tagging policy: the JSON plugin configuration that names
// the service identity, the trace propagation choices, the OTLP export target and the rules that turn request
// data into span attributes. It parses with fastjson (no reflection) so the same code runs inside the TinyGo
// plugin and in the tools that validate a policy before it ships. Errors name the offending field path.
package policy

import (
	"regexp"

	"github.com/valyala/fastjson"

	"github.com/meshtrace/meshtrace/filter/internal/ascii"
)

// NetworkRootID is the root id (Istio WasmPlugin pluginName, Envoy root_id) that loads the filter as a network
// filter: then every stream context is a TCP connection. Any other root id is an HTTP filter.
const NetworkRootID = "meshtrace-network"

// Direction says which side of the proxy the filter runs on; it decides span kinds.
type Direction uint8

// Directions. Auto reads Envoy's listener_direction property on every stream (except at an Istio gateway,
// where it resolves to gateway at plugin start). Client is the CLIENT side of an Istio WasmPlugin (sidecar
// outbound listeners and all of a gateway's traffic): it resolves once at plugin start, to gateway on an
// Istio gateway and to outbound elsewhere, so no stream reads the listener direction.
const (
	DirectionAuto Direction = iota
	DirectionInbound
	DirectionOutbound
	DirectionGateway
	DirectionClient
)

var directionNames = []string{"auto", "inbound", "outbound", "gateway", "client"}

// String returns the configuration spelling of d.
func (d Direction) String() string { return directionNames[d] }

// Resolve returns the direction a filter configured with d runs as at plugin start, on an Istio gateway
// when gateway is true: auto becomes gateway there (a gateway's listeners say outbound, yet it is the edge)
// and stays auto, read per stream, elsewhere; client becomes gateway or outbound; the others are fixed.
func (d Direction) Resolve(gateway bool) Direction {
	switch {
	case d == DirectionAuto && gateway, d == DirectionClient && gateway:
		return DirectionGateway
	case d == DirectionClient:
		return DirectionOutbound
	}
	return d
}

// NeedsNode reports whether Resolve depends on its gateway argument (whether the proxy is an Istio
// gateway), so a caller may skip finding that out for the other directions.
func (d Direction) NeedsNode() bool { return d == DirectionAuto || d == DirectionClient }

// SourceKind is where a tag value is read from.
type SourceKind uint8

// Tag value sources.
const (
	SourceHeader       SourceKind = iota // request header (name matched lower case)
	SourceBaggage                        // member of the W3C baggage header
	SourceCookie                         // cookie in the Cookie header
	SourceQuery                          // query parameter of the request path
	SourceJWTClaim                       // claim of the bearer token in Authorization (decoded, not verified)
	SourceRecordHeader                   // Kafka record header
)

var sourceNames = []string{"header", "baggage", "cookie", "query", "jwt_claim", "record_header"}

// String returns the configuration spelling of k.
func (k SourceKind) String() string { return sourceNames[k] }

// Source is one place to look for a tag value.
type Source struct {
	Kind SourceKind
	Name string
}

// Service is the identity put on the exported resource. Empty fields are filled from Istio node metadata.
type Service struct {
	Name      string
	Namespace string
	Workload  string
}

// TraceMode says who records the HTTP spans and owns the trace context headers.
type TraceMode uint8

// Trace modes.
const (
	// TraceModeFilter: the filter records one span per HTTP stream and rewrites traceparent (and B3) to it.
	// For meshes whose Envoy tracer is off.
	TraceModeFilter TraceMode = iota
	// TraceModeEnvoy: Envoy's own tracer records the HTTP spans and owns traceparent/B3; the filter records
	// none, leaves those headers as they are and only evaluates the tag rules (envoy_header copies for
	// Envoy's custom tags, baggage). For Istio with a Telemetry tracing provider.
	TraceModeEnvoy
)

var traceModeNames = []string{"filter", "envoy"}

// String returns the configuration spelling of m.
func (m TraceMode) String() string { return traceModeNames[m] }

// Trace holds the trace-joining choices.
type Trace struct {
	// Mode says whether the filter (default) or Envoy's tracer records the HTTP spans.
	Mode TraceMode
	// StartNew says whether a request without incoming context starts a new trace. Nil means the default:
	// yes at gateways and inbound listeners, no on outbound listeners. Refused in envoy mode.
	StartNew *bool
	// B3 enables joining (and rewriting) Zipkin B3 headers besides W3C traceparent. Refused in envoy mode.
	B3 bool
	// TrustBaggage says whether the incoming baggage header is believed: when false, baggage tag sources
	// read nothing and the members of propagated tags that arrived are dropped from the forwarded header.
	// Nil means the default: not trusted when the direction is gateway, trusted otherwise.
	TrustBaggage *bool
}

// TrustsBaggageAt resolves TrustBaggage for a filter running in direction dir (the one the plugin resolved
// the policy's to at start, see Direction.Resolve): trusted unless dir is a gateway.
func (p *Policy) TrustsBaggageAt(dir Direction) bool {
	if p.Trace.TrustBaggage != nil {
		return *p.Trace.TrustBaggage
	}
	return dir != DirectionGateway
}

// Export configures the OTLP/HTTP exporter.
type Export struct {
	Cluster         string // Envoy cluster the export call is dispatched to
	Authority       string // :authority of the export request
	Path            string // :path of the export request
	BatchSize       int    // spans per export request
	MaxBuffered     int    // spans held at most; more are dropped and counted
	FlushIntervalMS int    // tick period; a non-empty batch is sent at least this often
	TimeoutMS       int    // export call timeout
	MaxRetries      int    // retries of a failed export call before its spans are dropped
	// TokenEnv is token_env: the name of the Wasm VM's environment variable holding the indexer's ingest
	// token (empty: no token is sent).
	TokenEnv string
	// Token is the value of TokenEnv, read when the policy is parsed (at plugin configure time); every
	// export call carries "authorization: Bearer <Token>". It is never logged.
	Token string
}

// Policy is a validated tagging policy.
type Policy struct {
	Service   Service
	Direction Direction
	Trace     Trace
	Export    Export
	// HMACKey is the key of the hashed tags: hmac_key as written, or the value of the environment
	// variable hmac_key_env names, read when the policy is parsed (at plugin configure time).
	HMACKey string
	// HMACKeyEnv is hmac_key_env: the name of the Wasm VM's environment variable holding the key.
	HMACKeyEnv string
	// Warnings are what is accepted but unsafe (an inline hmac_key); Parse also logs them.
	Warnings []string
	Tags     []Tag
	Network  Network
	Egress   Egress
	// Routes name HTTP spans "{method} {route}" and set http.route: the first template matching the
	// request path wins; with none the span is named by its method alone.
	Routes []Route
}

// Defaults used for fields the configuration leaves out.
const (
	DefaultCluster         = "outbound|4318||meshtrace-indexer.meshtrace.svc.cluster.local"
	DefaultAuthority       = "meshtrace-indexer"
	DefaultPath            = "/v1/traces"
	DefaultBatchSize       = 256
	DefaultMaxBuffered     = 4096
	DefaultFlushIntervalMS = 1000
	DefaultTimeoutMS       = 2000
	DefaultMaxRetries      = 2
)

// Default returns the policy used when the plugin configuration is empty.
func Default() *Policy {
	return &Policy{Export: Export{
		Cluster: DefaultCluster, Authority: DefaultAuthority, Path: DefaultPath,
		BatchSize: DefaultBatchSize, MaxBuffered: DefaultMaxBuffered, FlushIntervalMS: DefaultFlushIntervalMS,
		TimeoutMS: DefaultTimeoutMS, MaxRetries: DefaultMaxRetries,
	}}
}

// Error is a validation failure at a field path such as "tags[1].hash".
type Error struct {
	Path   string
	Reason string
}

// Error returns "path: reason".
func (e *Error) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return e.Path + ": " + e.Reason
}

// Parse parses and validates a JSON policy, reading the key hmac_key_env and the token export.token_env
// name from the process environment (in Envoy, the Wasm VM's: vm_config.environment_variables), and logs
// its Warnings through the proxy's log when it runs under a proxy-wasm host (see logWarning). Empty or whitespace-only input yields
// Default(). The error, if any, is an *Error naming the first offending field. The plugin calls it at
// configure time (proxy_on_configure).
func Parse(data []byte) (*Policy, error) {
	p, err := ParseEnv(data, lookupEnv)
	if p != nil {
		for _, w := range p.Warnings {
			logWarning("meshtrace: policy: " + w)
		}
	}
	return p, err
}

// LookupEnv reads an environment variable, as os.LookupEnv does.
type LookupEnv func(name string) (string, bool)

// ParseEnv is Parse with lookup as the environment, and without logging. A nil lookup checks the policy
// without reading the variables hmac_key_env and export.token_env name (HMACKey and Export.Token stay
// empty): for tools that validate a policy away from the proxy, such as wasmplugin render. Such a Policy
// must not transform values of hashed tags (Tag.Transform panics) nor configure an exporter.
func ParseEnv(data []byte, lookup LookupEnv) (*Policy, error) {
	p := Default()
	if isBlank(data) {
		return p, nil
	}
	var parser fastjson.Parser
	root, err := parser.ParseBytes(data)
	if err != nil {
		return nil, &Error{Reason: "invalid JSON: " + err.Error()}
	}
	d := decoder{}
	d.object(root, "", func(key string, v *fastjson.Value, path string) bool {
		switch key {
		case "service":
			d.service(v, path, &p.Service)
		case "direction":
			d.direction(v, path, &p.Direction)
		case "trace":
			d.trace(v, path, &p.Trace)
		case "export":
			d.export(v, path, &p.Export)
		case "hmac_key":
			p.HMACKey = d.str(v, path)
			d.inlineKey = true
		case "hmac_key_env":
			p.HMACKeyEnv = d.envName(v, path)
		case "tags":
			d.array(v, path, func(i int, v *fastjson.Value, path string) {
				p.Tags = append(p.Tags, d.tag(v, path))
			})
		case "network":
			d.network(v, path, &p.Network)
		case "egress":
			d.egress(v, path, &p.Egress)
		case "routes":
			d.routes(v, path, p)
		default:
			return false
		}
		return true
	})
	if d.err == nil {
		d.key(p, lookup)
	}
	if d.err == nil && p.Export.TokenEnv != "" {
		d.token(&p.Export, lookup)
	}
	if d.err == nil {
		d.check(p)
	}
	if d.err != nil {
		return nil, d.err
	}
	return p, nil
}

// InlineKeyWarning is the warning of a policy with an inline hmac_key.
const InlineKeyWarning = "hmac_key is inline: anyone who can read the WasmPlugin (or the Envoy configuration) " +
	"can read the key, and with it reverse hashed values of a small id space by hashing every candidate; " +
	"put the key in a Secret and name the variable holding it in hmac_key_env (see docs/filter.md)"

// check runs the validations that span several fields.
func (d *decoder) check(p *Policy) {
	if p.Export.MaxBuffered < p.Export.BatchSize {
		d.fail("export.max_buffered", "must be at least export.batch_size")
		return
	}
	if p.Trace.Mode == TraceModeEnvoy {
		const reason = "has no effect with trace.mode \"envoy\" (Envoy's tracer joins and starts traces)"
		switch {
		case p.Trace.StartNew != nil:
			d.fail("trace.start_new", reason)
			return
		case p.Trace.B3:
			d.fail("trace.b3", reason)
			return
		case len(p.Routes) > 0:
			d.fail("routes", "has no effect with trace.mode \"envoy\" (the filter records no HTTP span; Envoy's tracer names its own)")
			return
		}
	}
	seen := make(map[string]bool, len(p.Tags))
	headers := make(map[string]bool)
	for i := range p.Tags {
		t := &p.Tags[i]
		path := indexPath("tags", i)
		switch {
		case seen[t.Attribute]:
			d.fail(path+".attribute", "duplicate attribute \""+t.Attribute+"\"")
		case t.Hash && p.HMACKey == "" && p.HMACKeyEnv == "":
			d.fail(path+".hash", "requires \"hmac_key\" or \"hmac_key_env\"")
		case t.EnvoyHeader != "" && headers[t.EnvoyHeader]:
			d.fail(path+".envoy_header", "duplicate envoy_header \""+t.EnvoyHeader+"\"")
		}
		if d.err != nil {
			return
		}
		seen[t.Attribute] = true
		if t.EnvoyHeader != "" {
			headers[t.EnvoyHeader] = true
		}
		if t.Hash && p.HMACKey != "" {
			t.hmacKey = []byte(p.HMACKey)
		}
	}
}

func (d *decoder) service(v *fastjson.Value, path string, s *Service) {
	d.object(v, path, func(key string, v *fastjson.Value, path string) bool {
		switch key {
		case "name":
			s.Name = d.str(v, path)
		case "namespace":
			s.Namespace = d.str(v, path)
		case "workload":
			s.Workload = d.str(v, path)
		default:
			return false
		}
		return true
	})
}

func (d *decoder) direction(v *fastjson.Value, path string, dir *Direction) {
	s := d.str(v, path)
	for i, name := range directionNames {
		if s == name {
			*dir = Direction(i)
			return
		}
	}
	d.fail(path, "must be one of auto, inbound, outbound, gateway, client")
}

func (d *decoder) trace(v *fastjson.Value, path string, t *Trace) {
	d.object(v, path, func(key string, v *fastjson.Value, path string) bool {
		switch key {
		case "start_new":
			b := d.boolean(v, path)
			t.StartNew = &b
		case "b3":
			t.B3 = d.boolean(v, path)
		case "mode":
			t.Mode = d.traceMode(v, path)
		case "trust_baggage":
			b := d.boolean(v, path)
			t.TrustBaggage = &b
		default:
			return false
		}
		return true
	})
}

func (d *decoder) traceMode(v *fastjson.Value, path string) TraceMode {
	s := d.str(v, path)
	for i, name := range traceModeNames {
		if s == name {
			return TraceMode(i)
		}
	}
	d.fail(path, "must be one of filter, envoy")
	return TraceModeFilter
}

func (d *decoder) export(v *fastjson.Value, path string, e *Export) {
	d.object(v, path, func(key string, v *fastjson.Value, path string) bool {
		switch key {
		case "cluster":
			e.Cluster = d.nonEmpty(v, path)
		case "authority":
			e.Authority = d.nonEmpty(v, path)
		case "path":
			if e.Path = d.nonEmpty(v, path); e.Path != "" && e.Path[0] != '/' {
				d.fail(path, "must start with '/'")
			}
		case "batch_size":
			e.BatchSize = d.integer(v, path, 1)
		case "max_buffered":
			e.MaxBuffered = d.integer(v, path, 1)
		case "flush_interval_ms":
			e.FlushIntervalMS = d.integer(v, path, 1)
		case "timeout_ms":
			e.TimeoutMS = d.integer(v, path, 1)
		case "max_retries":
			e.MaxRetries = d.integer(v, path, 0)
		case "token_env":
			e.TokenEnv = d.envName(v, path)
		default:
			return false
		}
		return true
	})
}

func (d *decoder) tag(v *fastjson.Value, path string) Tag {
	var t Tag
	d.object(v, path, func(key string, v *fastjson.Value, path string) bool {
		switch key {
		case "attribute":
			t.Attribute = d.nonEmpty(v, path)
		case "from":
			d.array(v, path, func(i int, v *fastjson.Value, path string) {
				t.From = append(t.From, d.source(v, path))
			})
		case "regex":
			re, err := regexp.Compile(d.str(v, path))
			if err != nil {
				d.fail(path, err.Error())
			}
			t.Regex = re
		case "lowercase":
			t.Lowercase = d.boolean(v, path)
		case "max_length":
			t.MaxLength = d.integer(v, path, 1)
		case "hash":
			t.Hash = d.boolean(v, path)
		case "redact":
			t.Redact = d.boolean(v, path)
		case "default":
			t.Default = d.str(v, path)
		case "propagate":
			t.Propagate = d.boolean(v, path)
		case "envoy_header":
			t.EnvoyHeader = d.str(v, path)
			if !isHeaderName(t.EnvoyHeader) {
				d.fail(path, "must be a lower-case HTTP header name")
			}
		default:
			return false
		}
		return true
	})
	switch {
	case d.err != nil:
	case t.Attribute == "":
		d.fail(path+".attribute", "is required")
	case len(t.From) == 0:
		d.fail(path+".from", "must name at least one source")
	case t.Hash && t.Redact:
		d.fail(path+".redact", "cannot be combined with \"hash\"")
	case t.Propagate && !ascii.IsToken(t.Attribute):
		d.fail(path+".propagate", "attribute \""+t.Attribute+"\" is not a valid baggage key")
	}
	return t
}

func (d *decoder) source(v *fastjson.Value, path string) Source {
	var s Source
	n := 0
	d.object(v, path, func(key string, v *fastjson.Value, path string) bool {
		for i, name := range sourceNames {
			if key == name {
				n++
				s = Source{Kind: SourceKind(i), Name: d.nonEmpty(v, path)}
				if s.Kind == SourceHeader || s.Kind == SourceRecordHeader {
					s.Name = lower(s.Name)
				}
				return true
			}
		}
		return false
	})
	if d.err == nil && n != 1 {
		d.fail(path, "must have exactly one of header, baggage, cookie, query, jwt_claim, record_header")
	}
	return s
}
