package plugin

import (
	"strings"

	"github.com/meshtrace/meshtrace/filter/otlp"
	"github.com/meshtrace/meshtrace/filter/policy"
	"github.com/meshtrace/meshtrace/filter/span"
)

// Istio node metadata read for the workload identity, below the node metadata root (see nodeMetadata).
var (
	pathCanonicalName = []string{"LABELS", "service.istio.io/canonical-name"}
	pathAppLabel      = []string{"LABELS", "app"}
	pathWorkloadName  = []string{"WORKLOAD_NAME"}
	pathNamespace     = []string{"NAMESPACE"}
	pathPodName       = []string{"NAME"}
)

// nodeMetadata reads a node metadata value. Envoy serves the node as xds.node (Envoy 1.40 answers only that
// name; the end-to-end suite checks it); older proxies served the Wasm attribute node. The current name is
// asked first.
func nodeMetadata(key []string) string {
	if v := propertyString(append([]string{"xds", "node", "metadata"}, key...)); v != "" {
		return v
	}
	return propertyString(append([]string{"node", "metadata"}, key...))
}

// istioGatewayPrefix starts the node id of an Istio gateway proxy ("router~IP~POD.NS~NS.svc.cluster.local");
// sidecars' start with "sidecar~".
const istioGatewayPrefix = "router~"

// istioGateway reports whether the proxy is an Istio gateway (its node id, served as xds.node.id or, on
// older proxies, node.id). Its listeners say outbound, but for the filter it is the mesh's edge: direction
// "auto" resolves to gateway there.
func istioGateway() bool {
	id := propertyString([]string{"xds", "node", "id"})
	if id == "" {
		id = propertyString([]string{"node", "id"})
	}
	return strings.HasPrefix(id, istioGatewayPrefix)
}

// unknownService is the OTel default service name, used when neither the policy nor the node names one.
const unknownService = "unknown_service"

// resourceFor builds the exported resource: the policy's service fields, filled from Istio node metadata
// where empty (service name: canonical-name label, app label, workload name).
func resourceFor(s policy.Service) *otlp.Resource {
	name := firstNonEmpty(s.Name, nodeMetadata(pathCanonicalName), nodeMetadata(pathAppLabel),
		nodeMetadata(pathWorkloadName), unknownService)
	namespace := firstNonEmpty(s.Namespace, nodeMetadata(pathNamespace))
	workload := firstNonEmpty(s.Workload, nodeMetadata(pathWorkloadName))
	attrs := []span.Attr{span.String("service.name", name)}
	if namespace != "" {
		attrs = append(attrs, span.String("service.namespace", namespace), span.String("k8s.namespace.name", namespace))
	}
	if workload != "" {
		attrs = append(attrs, span.String("meshtrace.workload", workload))
	}
	if pod := nodeMetadata(pathPodName); pod != "" {
		attrs = append(attrs, span.String("k8s.pod.name", pod))
	}
	attrs = append(attrs, span.String("telemetry.sdk.name", ScopeName), span.String("telemetry.sdk.version", Version))
	return &otlp.Resource{Attrs: attrs, ScopeName: ScopeName, ScopeVersion: Version}
}

func serviceName(r *otlp.Resource) string { return r.Attrs[0].Str }

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
