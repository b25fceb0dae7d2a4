package manifest

import (
	"encoding/json"
	"fmt"

	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"
)

// schema is the OpenAPI v3 schema of one served version of a CustomResourceDefinition.
type schema struct {
	validator *validate.SchemaValidator
}

// crd holds the parts of an apiextensions.k8s.io/v1 CustomResourceDefinition used here.
type crd struct {
	Kind string `json:"kind"`
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
		Versions []struct {
			Name   string `json:"name"`
			Served bool   `json:"served"`
			Schema struct {
				OpenAPIV3Schema json.RawMessage `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

func (v *Validator) loadCRDs(stream []byte) error {
	docs, err := Split(stream)
	if err != nil {
		return fmt.Errorf("CRDs: %w", err)
	}
	for _, doc := range docs {
		var c crd
		if err := json.Unmarshal(doc, &c); err != nil {
			return fmt.Errorf("CRD: %w", err)
		}
		if c.Kind != "CustomResourceDefinition" {
			continue
		}
		for _, ver := range c.Spec.Versions {
			if !ver.Served || len(ver.Schema.OpenAPIV3Schema) == 0 {
				continue
			}
			var s spec.Schema
			if err := json.Unmarshal(ver.Schema.OpenAPIV3Schema, &s); err != nil {
				return fmt.Errorf("CRD %s/%s %s schema: %w", c.Spec.Group, ver.Name, c.Spec.Names.Kind, err)
			}
			key := c.Spec.Group + "/" + ver.Name + "/" + c.Spec.Names.Kind
			v.schemas[key] = &schema{validator: validate.NewSchemaValidator(&s, nil, "", strfmt.Default)}
		}
	}
	return nil
}

// validate checks the JSON object doc against the schema (types, enums, patterns, required fields, bounds;
// CEL rules in x-kubernetes-validations are not evaluated).
func (s *schema) validate(doc []byte) error {
	var obj any
	if err := json.Unmarshal(doc, &obj); err != nil {
		return err
	}
	return s.validator.Validate(obj).AsError()
}

// HasSchema reports whether the validator has a CRD schema for apiVersion/kind (e.g.
// "extensions.istio.io/v1alpha1/WasmPlugin").
func (v *Validator) HasSchema(apiVersionKind string) bool {
	_, ok := v.schemas[apiVersionKind]
	return ok
}
