package api

import (
	"reflect"
	"testing"

	"github.com/meshtrace/meshtrace/indexer/document"
)

func TestToJaegerShowsOverflowedAttributes(t *testing.T) {
	for _, tt := range []struct {
		overflow string
		want     []JaegerKeyValue
	}{
		{"", nil},
		{`{"attr.k":"v","resource.r":2,"events[1].attr.e":true}`, []JaegerKeyValue{
			{Key: "events[1].attr.e", Type: "bool", Value: true},
			{Key: "k", Type: "string", Value: "v"},
			{Key: "resource.r", Type: "int64", Value: int64(2)},
		}},
		{`not json`, []JaegerKeyValue{{Key: "meshtrace.overflow", Type: "string", Value: "not json"}}},
	} {
		sp := document.Span{TraceID: "t", SpanID: "s", Service: "svc", Kind: "unspecified", StatusCode: "unset", Overflow: tt.overflow}
		got := ToJaeger("t", []document.Span{sp}).Spans[0].Tags
		if len(got) == 0 && len(tt.want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("overflow %q: tags %+v, want %+v", tt.overflow, got, tt.want)
		}
	}
}
