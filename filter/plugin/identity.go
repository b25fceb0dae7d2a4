package plugin

import (
	"github.com/meshtrace/meshtrace/filter/otlp"
	"github.com/meshtrace/meshtrace/filter/policy"
	"github.com/meshtrace/meshtrace/filter/span"
)

// Istio node metadata read for the workload identity.
var (
	pathCanonicalName = []string{"node", "metadata", "LABELS", "service.istio.io/canonical-name"}
	pathAppLabel      = []string{"node", "metadata", "LABELS", "app"}
	pathWorkloadName  = []string{"node", "metadata", "WORKLOAD_NAME"}
	pathNamespace     = []string{"node", "metadata", "NAMESPACE"}
	pathPodName       = []string{"node", "metadata", "NAME"}
)

// unknownService is the OTel default service name, used when neither the policy nor the node names one.
const unknownService = "unknown_service"

// resourceFor builds the exported resource: the policy's service fields, filled from Istio node metadata
// where empty (service name: canonical-name label, app label, workload name).
func resourceFor(s policy.Service) *otlp.Resource {
	name := firstNonEmpty(s.Name, propertyString(pathCanonicalName), propertyString(pathAppLabel),
		propertyString(pathWorkloadName), unknownService)
	namespace := firstNonEmpty(s.Namespace, propertyString(pathNamespace))
	workload := firstNonEmpty(s.Workload, propertyString(pathWorkloadName))
	attrs := []span.Attr{span.String("service.name", name)}
	if namespace != "" {
		attrs = append(attrs, span.String("service.namespace", namespace), span.String("k8s.namespace.name", namespace))
	}
	if workload != "" {
		attrs = append(attrs, span.String("meshtrace.workload", workload))
	}
	if pod := propertyString(pathPodName); pod != "" {
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
