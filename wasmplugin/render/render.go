// Package render turns a meshtrace policy into proxy configuration: Istio WasmPlugin resources (HTTP and
// NETWORK) and a Gloo Edge Enterprise Gateway carrying the filter in httpGateway.options.wasm. The policy is
// validated with the parser the plugin itself uses, so a policy the plugin would refuse never reaches a proxy.
package render

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	istioExt "istio.io/api/extensions/v1alpha1"
	istioType "istio.io/api/type/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/meshtrace/meshtrace/filter/policy"
)

// TargetRef names a Service or a gateway.networking.k8s.io Gateway a WasmPlugin applies to, in the
// WasmPlugin's own namespace (Istio refuses cross-namespace references).
type TargetRef struct {
	Group, Kind, Name string
}

// ParseTargetRef parses "Service/NAME" or "GROUP/KIND/NAME", e.g. "Service/checkout" or
// "gateway.networking.k8s.io/Gateway/ingress".
func ParseTargetRef(s string) (TargetRef, error) {
	parts := strings.Split(s, "/")
	switch {
	case len(parts) == 2 && parts[0] == "Service":
		return TargetRef{Kind: parts[0], Name: parts[1]}, nil
	case len(parts) == 3 && parts[0] != "" && parts[1] != "" && parts[2] != "":
		return TargetRef{Group: parts[0], Kind: parts[1], Name: parts[2]}, nil
	}
	return TargetRef{}, fmt.Errorf("target ref %q: want Service/NAME or GROUP/KIND/NAME", s)
}

// Istio holds what an Istio WasmPlugin needs besides the policy.
type Istio struct {
	Name      string // base name; "-http" (or "-http-inbound" and "-http-outbound") and "-network" are appended
	Namespace string
	URL       string // oci://registry/repo:tag, file:// or http(s)://
	// SHA256 pins the module: the image manifest digest for oci:// (what `wasmplugin push` prints), the
	// module's own SHA-256 otherwise. Hex, without "sha256:".
	SHA256          string
	ImagePullPolicy string            // IfNotPresent or Always; empty leaves Istio's default
	ImagePullSecret string            // name of a Secret in Namespace holding the registry credentials
	Selector        map[string]string // workload labels; exclusive with TargetRefs
	TargetRefs      []TargetRef       // exclusive with Selector
	Phase           string            // AUTHN, AUTHZ, STATS (default) or UNSPECIFIED_PHASE
	Priority        *int32            // order among plugins of the same phase, higher first; nil leaves Istio's 0
	FailStrategy    string            // FAIL_OPEN (default), FAIL_CLOSE or FAIL_RELOAD
	// HTTPMode is CLIENT, SERVER or CLIENT_AND_SERVER; by default the policy's direction decides (see sides:
	// with direction auto, one HTTP WasmPlugin per side).
	HTTPMode  string
	HTTPPorts []uint32 // ports the HTTP plugin applies to; empty: all
	// NetworkMode and NetworkPorts select connections for the NETWORK plugin; ports default to the
	// policy's Kafka ports and peer service ports, mode to CLIENT (connections the workload opens).
	NetworkMode  string
	NetworkPorts []uint32
}

// PluginType is the kind of Envoy filter a WasmPlugin inserts.
type PluginType string

// Plugin types.
const (
	HTTP    PluginType = "HTTP"
	Network PluginType = "NETWORK"
)

var sha256Hex = regexp.MustCompile(`^[a-f0-9]{64}$`)

// Policy validates a policy document and returns it parsed and as a protobuf Struct for pluginConfig (nil
// for a blank document). The environment variable hmac_key_env names is not read: it is the proxy's, not
// this process's (the plugin reads it at configure time).
func Policy(data []byte) (*policy.Policy, *structpb.Struct, error) {
	p, err := policy.ParseEnv(data, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return p, nil, nil // no pluginConfig: the plugin uses its defaults
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, nil, fmt.Errorf("policy: %w", err)
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: %w", err)
	}
	return p, s, nil
}

// IstioPlugins renders the WasmPlugins of the requested types (default both) as a YAML stream: one NETWORK
// plugin, and one HTTP plugin per side the policy's direction needs (see sides).
func IstioPlugins(o Istio, policyJSON []byte, types ...PluginType) ([]byte, error) {
	if o.Name == "" {
		return nil, errors.New("name is required")
	}
	if o.SHA256 != "" && !sha256Hex.MatchString(o.SHA256) {
		return nil, fmt.Errorf("sha256 %q: want 64 lowercase hex digits", o.SHA256)
	}
	if err := checkURL(o.URL); err != nil {
		return nil, err
	}
	if len(o.Selector) > 0 && len(o.TargetRefs) > 0 {
		return nil, errors.New("selector and targetRefs are exclusive")
	}
	for k, v := range o.Selector {
		if k == "" || strings.Contains(k, "*") || strings.Contains(v, "*") {
			return nil, fmt.Errorf("selector %q=%q: keys must be non-empty and neither may hold a wildcard", k, v)
		}
	}
	if len(types) == 0 {
		types = []PluginType{HTTP, Network}
	}
	pol, cfg, err := Policy(policyJSON)
	if err != nil {
		return nil, err
	}
	phase, err := enum(istioExt.PluginPhase_value, o.Phase, "STATS", "phase")
	if err != nil {
		return nil, err
	}
	fail, err := enum(istioExt.FailStrategy_value, o.FailStrategy, "FAIL_OPEN", "failStrategy")
	if err != nil {
		return nil, err
	}
	pull, err := enum(istioExt.PullPolicy_value, o.ImagePullPolicy, "UNSPECIFIED_POLICY", "imagePullPolicy")
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	writeNotes(&out, pol)
	for _, t := range types {
		if t != HTTP && t != Network {
			return nil, fmt.Errorf("plugin type %q: want HTTP or NETWORK", t)
		}
		sds, err := sides(t, pol.Direction, o)
		if err != nil {
			return nil, err
		}
		for _, sd := range sds {
			if err := writePlugin(&out, o, t, sd, pol, cfg, phase, fail, pull); err != nil {
				return nil, err
			}
		}
	}
	return out.Bytes(), nil
}

// side is one WasmPlugin of a type: its name suffix after the type's, its match mode and the direction
// its pluginConfig carries in place of the policy's (empty: the policy's as written).
type side struct {
	suffix, mode, direction string
}

// sides lists the WasmPlugins rendered for plugin type t. The NETWORK plugin is one, in NetworkMode
// (default CLIENT), with direction client (CLIENT) or inbound (SERVER) for a direction auto policy. The HTTP plugin of a policy with direction auto is one per side, so that no stream has
// to read Envoy's listener direction: "-http-inbound" in SERVER mode with direction inbound, and
// "-http-outbound" in CLIENT mode (sidecar outbound listeners, and all of a gateway's traffic) with
// direction client (outbound on a sidecar, gateway on an Istio gateway); an HTTPMode of SERVER or CLIENT
// keeps only that side, CLIENT_AND_SERVER (or UNDEFINED) both. With an explicit direction the HTTP plugin
// is one, "-http", in the mode the direction implies (SERVER for inbound; CLIENT for outbound, client and
// gateway) unless HTTPMode says otherwise; an HTTPMode of the other side contradicts the direction and is
// refused.
func sides(t PluginType, dir policy.Direction, o Istio) ([]side, error) {
	if t == Network {
		// A direction auto policy gets the side's direction fixed, so no connection reads it either.
		sd := side{mode: cmp.Or(o.NetworkMode, "CLIENT")}
		if dir == policy.DirectionAuto {
			switch sd.mode {
			case "CLIENT":
				sd.direction = policy.DirectionClient.String()
			case "SERVER":
				sd.direction = policy.DirectionInbound.String()
			}
		}
		return []side{sd}, nil
	}
	mode := o.HTTPMode
	if dir != policy.DirectionAuto {
		implied := "CLIENT"
		if dir == policy.DirectionInbound {
			implied = "SERVER"
		}
		switch mode {
		case "":
			mode = implied
		case "SERVER", "CLIENT":
			if mode != implied {
				return nil, fmt.Errorf("http mode %s: the policy's direction %s runs on the %s side", mode, dir, implied)
			}
		}
		return []side{{mode: mode}}, nil
	}
	inbound := side{suffix: "-inbound", mode: "SERVER", direction: policy.DirectionInbound.String()}
	outbound := side{suffix: "-outbound", mode: "CLIENT", direction: policy.DirectionClient.String()}
	switch mode {
	case "SERVER":
		return []side{inbound}, nil
	case "CLIENT":
		return []side{outbound}, nil
	case "", "CLIENT_AND_SERVER", "UNDEFINED":
		return []side{inbound, outbound}, nil
	}
	return []side{{mode: mode}}, nil // not a mode: writePlugin refuses it
}

// writePlugin appends the WasmPlugin of type t for one side.
func writePlugin(out *bytes.Buffer, o Istio, t PluginType, sd side, pol *policy.Policy, cfg *structpb.Struct,
	phase, fail, pull int32) error {
	mode, ports := sd.mode, o.HTTPPorts
	if t == Network {
		ports = o.NetworkPorts
		if len(ports) == 0 {
			ports = networkPorts(pol)
		}
	}
	if sd.direction != "" {
		cfg = withDirection(cfg, sd.direction)
	}
	spec := &istioExt.WasmPlugin{
		Url:             o.URL,
		Sha256:          o.SHA256,
		ImagePullPolicy: istioExt.PullPolicy(pull),
		ImagePullSecret: o.ImagePullSecret,
		PluginConfig:    cfg,
		Phase:           istioExt.PluginPhase(phase),
		FailStrategy:    istioExt.FailStrategy(fail),
		Type:            istioExt.PluginType(istioExt.PluginType_value[string(t)]),
	}
	if t == Network {
		spec.PluginName = policy.NetworkRootID // the root id that makes the plugin a network filter
	}
	spec.VmConfig = vmConfig(pol)
	if o.Priority != nil {
		spec.Priority = wrapperspb.Int32(*o.Priority)
	}
	if len(o.Selector) > 0 {
		spec.Selector = &istioType.WorkloadSelector{MatchLabels: o.Selector}
	}
	for _, r := range o.TargetRefs {
		spec.TargetRefs = append(spec.TargetRefs, &istioType.PolicyTargetReference{
			Group: r.Group, Kind: r.Kind, Name: r.Name})
	}
	if mode != "" || len(ports) > 0 {
		m, err := enum(istioType.WorkloadMode_value, mode, "UNDEFINED", "match mode")
		if err != nil {
			return err
		}
		sel := &istioExt.WasmPlugin_TrafficSelector{Mode: istioType.WorkloadMode(m)}
		for _, p := range ports {
			sel.Ports = append(sel.Ports, &istioType.PortSelector{Number: p})
		}
		spec.Match = []*istioExt.WasmPlugin_TrafficSelector{sel}
	}
	name := o.Name + "-" + strings.ToLower(string(t)) + sd.suffix
	return writeObject(out, "extensions.istio.io/v1alpha1", "WasmPlugin", name, o.Namespace, spec)
}

// secretVar is how the notes show a variable the policy reads (policy.EnvVar) set from a Secret, and where
// the docs explain it, by the policy field naming it.
type secretVar struct {
	secret, key, docs string
	glooHint          string // what to do instead under Gloo, which cannot set the VM's environment
}

var secretVars = map[string]secretVar{
	"hmac_key_env": {"meshtrace-hmac-key", "key", "docs/filter.md#the-hmac-key",
		"or use an inline hmac_key (readable by whoever reads the Gateway)"},
	"export.token_env": {"meshtrace-ingest-token", "token", "docs/filter.md#the-ingest-token",
		"an ingest token has no inline form"},
}

// vmConfig is the WasmPlugin vmConfig giving the VM every environment variable the policy reads (nil:
// none), each once. HOST: Envoy passes its own process's variable (host_env_keys), which it inherits from
// the istio-proxy container; the value never appears in the WasmPlugin or the Envoy configuration.
func vmConfig(pol *policy.Policy) *istioExt.VmConfig {
	var env []*istioExt.EnvVar
	for _, v := range pol.EnvVars() {
		if !slices.ContainsFunc(env, func(e *istioExt.EnvVar) bool { return e.Name == v.Name }) {
			env = append(env, &istioExt.EnvVar{Name: v.Name, ValueFrom: istioExt.EnvValueSource_HOST})
		}
	}
	if env == nil {
		return nil
	}
	return &istioExt.VmConfig{Env: env}
}

// noVMEnv refuses a policy reading environment variables for a target that cannot give the VM any (Gloo).
func noVMEnv(pol *policy.Policy, target string) error {
	vars := pol.EnvVars()
	if len(vars) == 0 {
		return nil
	}
	v := vars[0]
	return fmt.Errorf("policy: %s: %s cannot set the Wasm VM's environment (Envoy vm_config.environment_variables), "+
		"so the filter could not read its %s; render for Istio, %s", v.Field, target, v.What, secretVars[v.Field].glooHint)
}

// writeNotes starts the YAML stream with comments on what the WasmPlugins need besides themselves: the
// istio-proxy container's variables holding the HMAC key (hmac_key_env) and the ingest token
// (export.token_env), and the policy's warnings (an inline hmac_key).
func writeNotes(out *bytes.Buffer, pol *policy.Policy) {
	vars := pol.EnvVars()
	for _, v := range vars {
		fmt.Fprintf(out, `# The filter reads its %s (%s) from the environment variable %s of the
# istio-proxy container (vmConfig.env, valueFrom HOST): without it the plugin refuses to start.
`, v.What, v.Field, v.Name)
	}
	if len(vars) > 0 {
		it := "it"
		if len(vars) > 1 {
			it = "each"
		}
		out.WriteString(`# Set ` + it + ` from a Secret in the pod template of every workload these WasmPlugins select (and of gateway
# Deployments), with a container named istio-proxy that the sidecar injector merges into the one it
# injects:
#   containers:
#   - name: istio-proxy
#     image: auto
#     env:
`)
		var names, docs []string
		for _, v := range vars {
			if sv := secretVars[v.Field]; !slices.Contains(names, v.Name) {
				names = append(names, v.Name)
				fmt.Fprintf(out, "#     - name: %s\n#       valueFrom: {secretKeyRef: {name: %s, key: %s}}\n", v.Name, sv.secret, sv.key)
			}
			if d := secretVars[v.Field].docs; !slices.Contains(docs, d) {
				docs = append(docs, d)
			}
		}
		out.WriteString("# See " + strings.Join(docs, " and ") + ".\n")
	}
	for _, w := range pol.Warnings {
		out.WriteString("# WARNING: " + w + "\n")
	}
}

// withDirection returns a copy of the pluginConfig cfg (nil: the plugin's defaults) whose direction is dir.
func withDirection(cfg *structpb.Struct, dir string) *structpb.Struct {
	c := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	if cfg != nil {
		c = proto.Clone(cfg).(*structpb.Struct)
	}
	c.Fields["direction"] = structpb.NewStringValue(dir)
	return c
}

// checkURL applies the WasmPlugin CRD's rule on url: a scheme of oci, http, https or file (none means oci).
func checkURL(u string) error {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		scheme, rest = "", u
	}
	if rest == "" || !slices.Contains([]string{"", "oci", "http", "https", "file"}, scheme) {
		return fmt.Errorf("url %q: want oci://, http(s):// or file://", u)
	}
	return nil
}

// networkPorts lists the destination ports the policy names for TCP and Kafka spans, sorted and unique.
func networkPorts(p *policy.Policy) []uint32 {
	var ports []uint32
	for _, k := range p.Network.Kafka.Ports {
		ports = append(ports, uint32(k))
	}
	for _, s := range p.Network.PeerServices {
		if s.Port > 0 {
			ports = append(ports, uint32(s.Port))
		}
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// enum resolves the protobuf enum value name v (def when empty) for the named field.
func enum(values map[string]int32, v, def, field string) (int32, error) {
	if v == "" {
		v = def
	}
	n, ok := values[v]
	if !ok {
		return 0, fmt.Errorf("%s %q: want one of %s", field, v, strings.Join(slices.Sorted(maps.Keys(values)), ", "))
	}
	return n, nil
}

// writeObject appends one YAML document with the spec marshalled by protojson (field names as the CRDs
// spell them, enums by name).
func writeObject(out *bytes.Buffer, apiVersion, kind, name, namespace string, spec proto.Message) error {
	specJSON, err := protojson.Marshal(spec)
	if err != nil {
		return err
	}
	return writeDoc(out, apiVersion, kind, name, namespace, json.RawMessage(specJSON))
}

func writeDoc(out *bytes.Buffer, apiVersion, kind, name, namespace string, spec any) error {
	meta := map[string]string{"name": name}
	if namespace != "" {
		meta["namespace"] = namespace
	}
	doc, err := json.Marshal(map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": meta, "spec": spec})
	if err != nil {
		return err
	}
	y, err := yaml.JSONToYAML(doc)
	if err != nil {
		return err
	}
	out.WriteString("---\n")
	out.Write(y)
	return nil
}
