package deploy_test

import (
	"os"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshtrace/meshtrace/filter/policy"
	"github.com/meshtrace/meshtrace/wasmplugin/manifest/manifesttest"
)

// telemetry is the part of an Istio Telemetry resource the overlay sets.
type telemetry struct {
	Spec struct {
		Tracing []struct {
			Providers []struct {
				Name string `json:"name"`
			} `json:"providers"`
			RandomSamplingPercentage *float64 `json:"randomSamplingPercentage"`
			CustomTags               map[string]struct {
				Header *struct {
					Name string `json:"name"`
				} `json:"header"`
			} `json:"customTags"`
		} `json:"tracing"`
	} `json:"spec"`
}

// TestTelemetryOverlayIsConsistent checks that the Istio-with-tracing overlay configures Istio consistently:
// the filter runs in trace mode "envoy"; the Telemetry resource selects the provider meshconfig.yaml
// declares, samples every request, and has a customTag, named after the attribute, for every policy tag
// with an envoy_header; and the provider points at the indexer Service's OTLP/gRPC port.
func TestTelemetryOverlayIsConsistent(t *testing.T) {
	v := manifesttest.Validator(t)
	objs := build(t, v, "overlays/telemetry")
	pol, err := policy.Parse(pluginConfig(t, objs, "WasmPlugin", "meshtrace-http-inbound"))
	if err != nil {
		t.Fatal(err)
	}
	if pol.Trace.Mode != policy.TraceModeEnvoy {
		t.Errorf("the overlay's policy runs trace mode %v, want envoy (Envoy's tracer records the HTTP spans)", pol.Trace.Mode)
	}
	var tel telemetry
	var svc corev1.Service
	for _, o := range objs {
		switch {
		case o.Kind == "Telemetry":
			decode(t, o, &tel)
		case o.Kind == "Service" && o.Name == "meshtrace-indexer":
			decode(t, o, &svc)
		}
	}
	if len(tel.Spec.Tracing) != 1 || len(tel.Spec.Tracing[0].Providers) != 1 {
		t.Fatalf("Telemetry tracing = %+v, want one entry with one provider", tel.Spec.Tracing)
	}
	tr := tel.Spec.Tracing[0]
	if tr.RandomSamplingPercentage == nil || *tr.RandomSamplingPercentage != 100 {
		t.Errorf("randomSamplingPercentage = %v, want 100: an unsampled request would have no HTTP span", tr.RandomSamplingPercentage)
	}
	for _, tag := range pol.Tags {
		if tag.EnvoyHeader == "" {
			t.Errorf("tag %s has no envoy_header: Envoy's spans cannot carry it", tag.Attribute)
			continue
		}
		ct, ok := tr.CustomTags[tag.Attribute]
		if !ok || ct.Header == nil || ct.Header.Name != tag.EnvoyHeader {
			t.Errorf("customTags[%s] = %+v, want a header tag reading %s", tag.Attribute, ct, tag.EnvoyHeader)
		}
	}

	raw, err := os.ReadFile("overlays/telemetry/meshconfig.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var mc struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			MeshConfig struct {
				ExtensionProviders []struct {
					Name          string `json:"name"`
					OpenTelemetry *struct {
						Service string `json:"service"`
						Port    int32  `json:"port"`
					} `json:"opentelemetry"`
				} `json:"extensionProviders"`
			} `json:"meshConfig"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(raw, &mc); err != nil {
		t.Fatalf("meshconfig.yaml: %v", err)
	}
	var found bool
	for _, p := range mc.Spec.MeshConfig.ExtensionProviders {
		if p.Name != tr.Providers[0].Name {
			continue
		}
		found = true
		if p.OpenTelemetry == nil {
			t.Fatalf("provider %s is not an opentelemetry provider", p.Name)
		}
		want := svc.Name + "." + svc.Namespace + ".svc.cluster.local"
		if p.OpenTelemetry.Service != want {
			t.Errorf("provider service %s, want %s", p.OpenTelemetry.Service, want)
		}
		var grpc bool
		for _, port := range svc.Spec.Ports {
			grpc = grpc || (port.Port == p.OpenTelemetry.Port && port.Name == "grpc-otlp")
		}
		if !grpc {
			t.Errorf("provider port %s is not the indexer Service's OTLP/gRPC port (%+v)", strconv.Itoa(int(p.OpenTelemetry.Port)), svc.Spec.Ports)
		}
	}
	if !found {
		t.Errorf("meshconfig.yaml declares no provider %q", tr.Providers[0].Name)
	}
}
