package plugin

import (
	"github.com/meshtrace/meshtrace/filter/policy"
)

// valueSource looks up raw tag values in whatever a stream carries (HTTP request, Kafka record).
type valueSource interface {
	value(src policy.Source) (string, bool)
}

// tagValue returns the final value of tag t: the first source with a value that survives the tag's
// transforms, else the tag's default.
func tagValue(t *policy.Tag, vs valueSource) (string, bool) {
	for _, src := range t.From {
		raw, ok := vs.value(src)
		if !ok {
			continue
		}
		if v, ok := t.Transform(raw); ok {
			return v, true
		}
	}
	return t.Default, t.Default != ""
}
