package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"testing"
)

// TestQueryDependencies checks GET /api/v1/dependencies over the store fixture: the whole graph without a
// query, the graph of the traces a span condition selects (the shop's only), and a query error's position.
func TestQueryDependencies(t *testing.T) {
	srv := newFixtureServer(t)
	get := func(q string) (int, DependenciesResponse, ErrorResponse) {
		t.Helper()
		r, err := http.Get(srv.URL + "/api/v1/dependencies?q=" + url.QueryEscape(q))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var ok DependenciesResponse
		var bad ErrorResponse
		if r.StatusCode == http.StatusOK {
			err = json.NewDecoder(r.Body).Decode(&ok)
		} else {
			err = json.NewDecoder(r.Body).Decode(&bad)
		}
		if err != nil {
			t.Fatal(err)
		}
		return r.StatusCode, ok, bad
	}
	shop := []JaegerDependency{{"checkout", "inventory-service", 4}, {"checkout", "postgres", 4}, {"frontend", "checkout", 4}, {"gateway", "frontend", 4}}
	if code, res, _ := get("service=inventory-service"); code != http.StatusOK || !reflect.DeepEqual(res.Data, shop) || res.Partial {
		t.Errorf("service=inventory-service: %d %+v, want %+v", code, res, shop)
	}
	if _, res, _ := get(""); len(res.Data) != 7 || res.Until-res.Since != DefaultDependencyLookback.Microseconds() {
		t.Errorf("no query: %+v, want the 7 edges of the last %s", res, DefaultDependencyLookback)
	}
	if _, res, _ := get("error=true since=1h"); len(res.Data) != 7 || res.Data[0].CallCount != 1 {
		t.Errorf("error=true: %+v, want 7 edges of one trace each", res.Data)
	}
	if _, res, _ := get("service=nobody"); res.Data == nil || len(res.Data) != 0 {
		t.Errorf("no match: data %#v, want []", res.Data)
	}
	if code, _, e := get("customer_id==123"); code != http.StatusBadRequest || e.Position != 13 {
		t.Errorf("query error: %d %+v, want 400 at position 13", code, e)
	}
}
