package render

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"

	glooWasm "github.com/solo-io/solo-apis/pkg/api/gloo.solo.io/v1/options/wasm"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Gloo holds what a Gloo Edge Enterprise Gateway with the filter needs besides the policy.
type Gloo struct {
	Name        string   // Gateway name, e.g. gateway-proxy
	Namespace   string   // e.g. gloo-system
	BindAddress string   // default "::"
	BindPort    uint32   // default 8080
	ProxyNames  []string // Gloo proxies serving the Gateway; empty: Gloo's default, gateway-proxy
	// Image is the OCI reference Gloo pulls (no oci:// scheme); FilePath a module already on the proxy's
	// file system. Exactly one is set.
	Image    string
	FilePath string
	// Stage and Predicate place the filter in Gloo's HTTP filter chain; default AuthNStage/Before, so
	// requests refused by authentication are traced too.
	Stage     string
	Predicate string
	// RootID is the filter's root_id; anything but policy.NetworkRootID (empty too) loads the HTTP filter.
	RootID string
}

// GlooGateway renders a gateway.solo.io/v1 Gateway whose httpGateway.options.wasm.filters[] holds the filter
// with the policy as its configuration (a google.protobuf.StringValue: Envoy hands its value to the plugin).
func GlooGateway(g Gloo, policyJSON []byte) ([]byte, error) {
	if g.Name == "" {
		return nil, errors.New("gateway name is required")
	}
	if (g.Image == "") == (g.FilePath == "") {
		return nil, errors.New("exactly one of image and file path is required")
	}
	pol, _, err := Policy(policyJSON)
	if err != nil {
		return nil, err
	}
	if err := noVMEnv(pol, "Gloo's wasm filter options"); err != nil {
		return nil, err
	}
	stage, err := enum(glooWasm.FilterStage_Stage_value, g.Stage, "AuthNStage", "stage")
	if err != nil {
		return nil, err
	}
	pred, err := enum(glooWasm.FilterStage_Predicate_value, g.Predicate, "Before", "predicate")
	if err != nil {
		return nil, err
	}
	cfg, err := anypb.New(wrapperspb.String(string(compact(policyJSON))))
	if err != nil {
		return nil, err
	}
	filter := &glooWasm.WasmFilter{
		Name:        "meshtrace",
		RootId:      g.RootID,
		Config:      cfg,
		VmType:      glooWasm.WasmFilter_V8,
		FilterStage: &glooWasm.FilterStage{Stage: glooWasm.FilterStage_Stage(stage), Predicate: glooWasm.FilterStage_Predicate(pred)},
	}
	if g.Image != "" {
		filter.Src = &glooWasm.WasmFilter_Image{Image: g.Image}
	} else {
		filter.Src = &glooWasm.WasmFilter_FilePath{FilePath: g.FilePath}
	}
	wasm, err := protojson.Marshal(&glooWasm.PluginSource{Filters: []*glooWasm.WasmFilter{filter}})
	if err != nil {
		return nil, fmt.Errorf("gloo wasm options: %w", err)
	}
	spec := map[string]any{
		"bindAddress": cmp.Or(g.BindAddress, "::"),
		"bindPort":    cmp.Or(g.BindPort, 8080),
		"httpGateway": map[string]any{"options": map[string]any{"wasm": json.RawMessage(wasm)}},
	}
	if len(g.ProxyNames) > 0 {
		spec["proxyNames"] = g.ProxyNames
	}
	var out bytes.Buffer
	writeNotes(&out, pol)
	if err := writeDoc(&out, "gateway.solo.io/v1", "Gateway", g.Name, g.Namespace, spec); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// compact removes insignificant white space from a JSON document already validated by Policy.
func compact(doc []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, doc); err != nil {
		return doc
	}
	return b.Bytes()
}
