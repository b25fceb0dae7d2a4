// Package manifest checks Kubernetes manifests without a cluster. Every object is decoded strictly (unknown
// or duplicate fields are errors) into the official Go type of its kind: k8s.io/api for core kinds, the
// istio.io/api protobuf messages for Istio kinds, and Gloo's generated protobuf messages for the Gloo Edge
// options meshtrace writes. Custom resources are also validated against the OpenAPI schemas of the
// CustomResourceDefinitions handed to New (Istio ships them in istio.io/api, Gloo in solo-apis).
package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	glooStatic "github.com/solo-io/solo-apis/pkg/api/gloo.solo.io/v1/options/static"
	glooWasm "github.com/solo-io/solo-apis/pkg/api/gloo.solo.io/v1/options/wasm"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	istioExt "istio.io/api/extensions/v1alpha1"
	istioTelemetry "istio.io/api/telemetry/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Object is the identity of one checked manifest object.
type Object struct {
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	// JSON is the object as JSON, for further checks by the caller.
	JSON []byte
}

// String identifies the object as Kind/Name, or Kind/Namespace/Name when it has a namespace.
func (o Object) String() string {
	if o.Namespace == "" {
		return o.Kind + "/" + o.Name
	}
	return o.Kind + "/" + o.Namespace + "/" + o.Name
}

// decoder strictly decodes one JSON object of a known kind.
type decoder func(doc []byte) error

// kinds maps "apiVersion/kind" to its decoder. A kind missing here is refused: nothing goes unchecked.
var kinds = map[string]decoder{
	"v1/Namespace":                            typed[corev1.Namespace],
	"v1/ConfigMap":                            typed[corev1.ConfigMap],
	"v1/Secret":                               typed[corev1.Secret],
	"v1/Service":                              typed[corev1.Service],
	"v1/ServiceAccount":                       typed[corev1.ServiceAccount],
	"apps/v1/Deployment":                      typed[appsv1.Deployment],
	"apps/v1/StatefulSet":                     typed[appsv1.StatefulSet],
	"networking.k8s.io/v1/NetworkPolicy":      typed[networkingv1.NetworkPolicy],
	"extensions.istio.io/v1alpha1/WasmPlugin": istio(func() proto.Message { return &istioExt.WasmPlugin{} }),
	"telemetry.istio.io/v1/Telemetry":         istio(func() proto.Message { return &istioTelemetry.Telemetry{} }),
	"gateway.solo.io/v1/Gateway":              glooGateway,
	"gloo.solo.io/v1/Upstream":                glooUpstream,
}

// Validator checks manifests; the zero value checks Go types only.
type Validator struct {
	schemas map[string]*schema // by "apiVersion/kind", from CRDs
}

// New returns a Validator that also validates objects of the kinds defined by the given
// CustomResourceDefinition YAML streams against their OpenAPI v3 schemas.
func New(crdStreams ...[]byte) (*Validator, error) {
	v := &Validator{schemas: map[string]*schema{}}
	for _, s := range crdStreams {
		if err := v.loadCRDs(s); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Check splits a YAML (or JSON) stream into objects and checks each one. It returns the objects that pass
// and all problems found, each prefixed with the object it concerns.
func (v *Validator) Check(stream []byte) ([]Object, error) {
	docs, err := Split(stream)
	if err != nil {
		return nil, err
	}
	var objs []Object
	var errs []error
	for i, doc := range docs {
		obj, err := v.checkOne(doc)
		if err != nil {
			label := obj.String()
			if obj.Kind == "" {
				label = fmt.Sprintf("document %d", i)
			}
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
			continue
		}
		objs = append(objs, obj)
	}
	return objs, errors.Join(errs...)
}

func (v *Validator) checkOne(doc []byte) (Object, error) {
	var head struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(doc, &head); err != nil {
		return Object{}, err
	}
	obj := Object{APIVersion: head.APIVersion, Kind: head.Kind, Name: head.Metadata.Name,
		Namespace: head.Metadata.Namespace, JSON: doc}
	if obj.APIVersion == "" || obj.Kind == "" {
		return obj, errors.New("apiVersion and kind are required")
	}
	if obj.Name == "" {
		return obj, errors.New("metadata.name is required")
	}
	key := obj.APIVersion + "/" + obj.Kind
	decode, ok := kinds[key]
	if !ok {
		return obj, fmt.Errorf("no schema known for %s", key)
	}
	if err := decode(doc); err != nil {
		return obj, err
	}
	if s, ok := v.schemas[key]; ok {
		if err := s.validate(doc); err != nil {
			return obj, err
		}
	}
	return obj, nil
}

// Split returns the objects of a YAML or JSON stream as JSON documents, skipping empty ones. Duplicate keys
// are errors, as in the API server's strict decoding.
func Split(stream []byte) ([][]byte, error) {
	r := kyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var docs [][]byte
	for i := 0; ; i++ {
		doc, err := r.Read()
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		j, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || bytes.Equal(t, []byte("null")) {
			continue
		}
		docs = append(docs, j)
	}
}

// typed decodes doc into T the way the API server's strict field validation does.
func typed[T any](doc []byte) error { return decodeStrict(doc, new(T)) }

// decodeStrict unmarshals doc into v, failing on unknown and duplicate fields.
func decodeStrict(doc []byte, v any) error {
	strict, err := kjson.UnmarshalStrict(doc, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// envelope is a custom resource with its spec kept raw; status is refused as it is never written by users.
type envelope struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              json.RawMessage `json:"spec"`
}

func decodeEnvelope(doc []byte) (envelope, error) {
	var e envelope
	if err := decodeStrict(doc, &e); err != nil {
		return e, err
	}
	if len(e.Spec) == 0 {
		return e, errors.New("spec is required")
	}
	return e, nil
}

// strictProto decodes JSON into m rejecting unknown fields (protojson's default, unlike the generated
// UnmarshalJSON methods of istio.io/api, which allow them).
func strictProto(data []byte, m proto.Message) error {
	return protojson.UnmarshalOptions{}.Unmarshal(data, m)
}

// istio decodes the spec of an Istio custom resource into the istio.io/api message newMsg returns.
func istio(newMsg func() proto.Message) decoder {
	return func(doc []byte) error {
		e, err := decodeEnvelope(doc)
		if err != nil {
			return err
		}
		if err := strictProto(e.Spec, newMsg()); err != nil {
			return fmt.Errorf("spec: %w", err)
		}
		return nil
	}
}

// glooGatewaySpec mirrors the fields of gateway.solo.io/v1 GatewaySpec (gateway.proto in
// github.com/solo-io/solo-apis) that an HTTP gateway uses; the generated Go package of that message cannot be
// built against current Kubernetes libraries, so its nested options are decoded into Gloo's own messages.
type glooGatewaySpec struct {
	SSL           bool     `json:"ssl,omitempty"`
	BindAddress   string   `json:"bindAddress"`
	BindPort      uint32   `json:"bindPort"`
	UseProxyProto *bool    `json:"useProxyProto,omitempty"`
	ProxyNames    []string `json:"proxyNames,omitempty"`
	HTTPGateway   *struct {
		Options struct {
			Wasm json.RawMessage `json:"wasm"`
		} `json:"options"`
	} `json:"httpGateway"`
}

func glooGateway(doc []byte) error {
	e, err := decodeEnvelope(doc)
	if err != nil {
		return err
	}
	var spec glooGatewaySpec
	if err := decodeStrict(e.Spec, &spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	if spec.BindAddress == "" || spec.BindPort == 0 {
		return errors.New("spec: bindAddress and bindPort are required")
	}
	if spec.HTTPGateway == nil || len(spec.HTTPGateway.Options.Wasm) == 0 {
		return errors.New("spec.httpGateway.options.wasm is required")
	}
	var ps glooWasm.PluginSource
	if err := strictProto(spec.HTTPGateway.Options.Wasm, &ps); err != nil {
		return fmt.Errorf("spec.httpGateway.options.wasm: %w", err)
	}
	for i, f := range ps.GetFilters() {
		if f.GetImage() == "" && f.GetFilePath() == "" {
			return fmt.Errorf("spec.httpGateway.options.wasm.filters[%d]: image or filePath is required", i)
		}
	}
	return nil
}

// glooUpstreamSpec is the static variant of gloo.solo.io/v1 UpstreamSpec, the only one meshtrace writes.
type glooUpstreamSpec struct {
	Static json.RawMessage `json:"static"`
}

func glooUpstream(doc []byte) error {
	e, err := decodeEnvelope(doc)
	if err != nil {
		return err
	}
	var spec glooUpstreamSpec
	if err := decodeStrict(e.Spec, &spec); err != nil {
		return fmt.Errorf("spec (only static upstreams are checked): %w", err)
	}
	if len(spec.Static) == 0 {
		return errors.New("spec.static is required")
	}
	var us glooStatic.UpstreamSpec
	if err := strictProto(spec.Static, &us); err != nil {
		return fmt.Errorf("spec.static: %w", err)
	}
	if len(us.GetHosts()) == 0 {
		return errors.New("spec.static.hosts is empty")
	}
	return nil
}
