package meilitest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

const key = "master-key"

// client sends raw requests, so the tests see exactly what the server accepts and answers.
type client struct {
	t   *testing.T
	srv *Server
}

func newClient(t *testing.T, opts Options) *client {
	opts.MasterKey = key
	srv := Start(opts)
	t.Cleanup(srv.Close)
	return &client{t: t, srv: srv}
}

// do sends a request with the master key and a JSON content type (when there is a body) and decodes the
// answer.
func (c *client) do(method, path, body string) (int, map[string]any) {
	c.t.Helper()
	h := http.Header{"Authorization": {"Bearer " + key}}
	if body != "" {
		h.Set("Content-Type", "application/json")
	}
	return c.raw(method, path, h, body)
}

func (c *client) raw(method, path string, h http.Header, body string) (int, map[string]any) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.srv.URL+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		c.t.Fatalf("%s %s: decoding the answer: %v", method, path, err)
	}
	return resp.StatusCode, out
}

// task sends a write, checks the 202 answer and waits for the task to finish.
func (c *client) task(method, path, body string) map[string]any {
	c.t.Helper()
	status, out := c.do(method, path, body)
	if status != http.StatusAccepted {
		c.t.Fatalf("%s %s = %d %v, want 202", method, path, status, out)
	}
	if out["status"] != "enqueued" {
		c.t.Fatalf("%s %s: task summary %v, want status enqueued", method, path, out)
	}
	uid := int(out["taskUid"].(float64))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_, tk := c.do(http.MethodGet, fmt.Sprintf("/tasks/%d", uid), "")
		if s := tk["status"]; s == "succeeded" || s == "failed" {
			return tk
		}
		time.Sleep(time.Millisecond)
	}
	c.t.Fatalf("task %d did not finish", uid)
	return nil
}

func (c *client) mustSucceed(method, path, body string) {
	c.t.Helper()
	if tk := c.task(method, path, body); tk["status"] != "succeeded" {
		c.t.Fatalf("%s %s: task %v, want succeeded", method, path, tk)
	}
}

func errCode(out map[string]any) string {
	if e, ok := out["error"].(map[string]any); ok {
		return fmt.Sprint(e["code"])
	}
	return fmt.Sprint(out["code"])
}

func TestAuthAndRouting(t *testing.T) {
	c := newClient(t, Options{})
	tests := []struct {
		name   string
		header http.Header
		method string
		path   string
		status int
		code   string
	}{
		{"health needs no key", nil, http.MethodGet, "/health", 200, "<nil>"},
		{"missing key", nil, http.MethodGet, "/tasks/0", 401, "missing_authorization_header"},
		{"wrong key", http.Header{"Authorization": {"Bearer nope"}}, http.MethodGet, "/tasks/0", 403, "invalid_api_key"},
		{"not bearer", http.Header{"Authorization": {"Basic " + key}}, http.MethodGet, "/tasks/0", 403, "invalid_api_key"},
		{"unknown task", http.Header{"Authorization": {"Bearer " + key}}, http.MethodGet, "/tasks/9", 404, "task_not_found"},
		{"unknown index", http.Header{"Authorization": {"Bearer " + key}}, http.MethodGet, "/indexes/nope", 404, "index_not_found"},
		{"bad index uid", http.Header{"Authorization": {"Bearer " + key}}, http.MethodGet, "/indexes/a.b", 400, "invalid_index_uid"},
		{"unknown route", http.Header{"Authorization": {"Bearer " + key}}, http.MethodGet, "/stats", 404, "not_found"},
	}
	for _, tt := range tests {
		status, out := c.raw(tt.method, tt.path, tt.header, "")
		if status != tt.status || errCode(out) != tt.code {
			t.Errorf("%s: %s %s = %d %s, want %d %s", tt.name, tt.method, tt.path, status, errCode(out), tt.status, tt.code)
		}
	}
}

func TestRequestValidation(t *testing.T) {
	c := newClient(t, Options{MaxPayload: 1 << 10})
	c.mustSucceed(http.MethodPost, "/indexes", `{"uid":"docs","primaryKey":"id"}`)
	auth := func(ct string) http.Header {
		h := http.Header{"Authorization": {"Bearer " + key}}
		if ct != "" {
			h.Set("Content-Type", ct)
		}
		return h
	}
	tests := []struct {
		name   string
		path   string
		ct     string
		body   string
		status int
		code   string
	}{
		{"no content type", "/indexes/docs/documents", "", `[{"id":1}]`, 415, "missing_content_type"},
		{"csv not accepted", "/indexes/docs/documents", "text/csv", "id\n1", 415, "invalid_content_type"},
		{"malformed json", "/indexes/docs/documents", "application/json", `[{"id":1}`, 400, "malformed_payload"},
		{"not objects", "/indexes/docs/documents", "application/json", `[1, 2]`, 400, "malformed_payload"},
		{"malformed ndjson", "/indexes/docs/documents", "application/x-ndjson", "{\"id\":1}\n{\"id\":", 400, "malformed_payload"},
		{"empty payload", "/indexes/docs/documents", "application/json", ` `, 400, "missing_payload"},
		{"too large", "/indexes/docs/documents", "application/json", `[{"id":"` + strings.Repeat("a", 2000) + `"}]`, 413, "payload_too_large"},
		{"unknown query parameter", "/indexes/docs/documents?primary_key=id", "application/json", `[{"id":1}]`, 400, "bad_request"},
		{"unknown search field", "/indexes/docs/search", "application/json", `{"query":"x"}`, 400, "bad_request"},
		{"mistyped search field", "/indexes/docs/search", "application/json", `{"limit":"10"}`, 400, "invalid_search_limit"},
		{"search needs json", "/indexes/docs/search", "text/plain", `{}`, 415, "invalid_content_type"},
		{"filter syntax", "/indexes/docs/search", "application/json", `{"filter":"a = "}`, 400, "invalid_search_filter"},
		{"filter not filterable", "/indexes/docs/search", "application/json", `{"filter":"a = 1"}`, 400, "invalid_search_filter"},
		{"sort not sortable", "/indexes/docs/search", "application/json", `{"sort":["a:asc"]}`, 400, "invalid_search_sort"},
		{"bad sort syntax", "/indexes/docs/search", "application/json", `{"sort":["a"]}`, 400, "invalid_search_sort"},
		{"bad matching strategy", "/indexes/docs/search", "application/json", `{"matchingStrategy":"any"}`, 400, "invalid_search_matching_strategy"},
		{"unimplemented parameter", "/indexes/docs/search", "application/json", `{"facets":["a"]}`, 501, "not_implemented"},
		{"delete without filter", "/indexes/docs/documents/delete", "application/json", `{}`, 400, "missing_document_filter"},
		{"delete with bad filter", "/indexes/docs/documents/delete", "application/json", `{"filter":"a IN [1"}`, 400, "invalid_document_filter"},
		{"fetch with bad field", "/indexes/docs/documents/fetch", "application/json", `{"limits":1}`, 400, "bad_request"},
		{"unknown setting", "/indexes/docs/settings", "application/json", `{"filterable":["a"]}`, 400, "bad_request"},
		{"mistyped setting", "/indexes/docs/settings", "application/json", `{"filterableAttributes":"a"}`, 400, "invalid_settings_filterable_attributes"},
		{"bad typo setting", "/indexes/docs/settings", "application/json", `{"typoTolerance":{"minWordSizeForTypos":{"oneTypo":9,"twoTypos":5}}}`, 400, "invalid_settings_typo_tolerance"},
		{"unknown typo setting", "/indexes/docs/settings", "application/json", `{"typoTolerance":{"disableOn":["id"]}}`, 400, "invalid_settings_typo_tolerance"},
		{"bad ranking rule", "/indexes/docs/settings", "application/json", `{"rankingRules":["fast"]}`, 400, "invalid_settings_ranking_rules"},
		{"bad index uid", "/indexes", "application/json", `{"uid":"a b"}`, 400, "invalid_index_uid"},
	}
	for _, tt := range tests {
		method := http.MethodPost
		if strings.HasSuffix(tt.path, "/settings") {
			method = http.MethodPatch
		}
		status, out := c.raw(method, tt.path, auth(tt.ct), tt.body)
		if status != tt.status || errCode(out) != tt.code {
			t.Errorf("%s: %d %s (%v), want %d %s", tt.name, status, errCode(out), out["message"], tt.status, tt.code)
		}
		if status >= 400 && (out["message"] == "" || out["type"] == "" || out["link"] == "") {
			t.Errorf("%s: error object %v lacks message, type or link", tt.name, out)
		}
	}
}

func TestDocumentTasks(t *testing.T) {
	c := newClient(t, Options{TaskDelay: time.Millisecond})

	// Primary key inference: several fields end in "id", so the task fails and creates nothing.
	tk := c.task(http.MethodPost, "/indexes/spans/documents", `[{"id":"a","trace_id":"t"}]`)
	if tk["status"] != "failed" || errCode(tk) != "index_primary_key_multiple_candidates_found" || tk["type"] != "documentAdditionOrUpdate" {
		t.Fatalf("inference task = %v", tk)
	}
	if status, _ := c.do(http.MethodGet, "/indexes/spans", ""); status != 404 {
		t.Errorf("failed addition created the index (status %d)", status)
	}

	c.mustSucceed(http.MethodPost, "/indexes", `{"uid":"spans","primaryKey":"id"}`)
	if tk := c.task(http.MethodPost, "/indexes", `{"uid":"spans"}`); errCode(tk) != "index_already_exists" {
		t.Errorf("second creation = %v, want index_already_exists", tk)
	}

	// One bad id fails the whole batch.
	tk = c.task(http.MethodPost, "/indexes/spans/documents", `[{"id":"ok","n":1},{"id":"bad id","n":2}]`)
	if tk["status"] != "failed" || errCode(tk) != "invalid_document_id" {
		t.Fatalf("bad id task = %v", tk)
	}
	if msg := tk["error"].(map[string]any)["message"].(string); !strings.Contains(msg, `"bad id"`) {
		t.Errorf("message %q does not name the bad id", msg)
	}
	if tk := c.task(http.MethodPost, "/indexes/spans/documents", `{"n":1}`); errCode(tk) != "missing_document_id" {
		t.Errorf("missing id task = %v", tk)
	}
	if tk := c.task(http.MethodPost, "/indexes/spans/documents?primaryKey=n", `{"id":"x","n":1}`); errCode(tk) != "index_primary_key_already_exists" {
		t.Errorf("other primary key task = %v", tk)
	}

	// NDJSON and JSON additions; a later document replaces an earlier one with the same id.
	c.mustSucceed(http.MethodPost, "/indexes/spans/documents",
		`[{"id":"a","service":"Checkout","start":10},{"id":"b","service":"inventory","start":20},{"id":3,"service":"x","start":30}]`)
	h := http.Header{"Authorization": {"Bearer " + key}, "Content-Type": {"application/x-ndjson"}}
	status, out := c.raw(http.MethodPost, "/indexes/spans/documents", h, "{\"id\":\"c\",\"service\":\"inventory\",\"start\":5}\n{\"id\":\"a\",\"service\":\"checkout\",\"start\":40}\n")
	if status != http.StatusAccepted {
		t.Fatalf("ndjson addition = %d %v", status, out)
	}

	// Filters name filterable attributes only; settings are a task too.
	if status, out := c.do(http.MethodPost, "/indexes/spans/documents/fetch", `{"filter":"service = inventory"}`); status != 400 || errCode(out) != "invalid_document_filter" {
		t.Errorf("fetch before filterable = %d %v", status, out)
	}
	c.mustSucceed(http.MethodPatch, "/indexes/spans/settings", `{"filterableAttributes":["service","start"],"sortableAttributes":["start"]}`)
	status, out = c.do(http.MethodPost, "/indexes/spans/documents/fetch", `{"filter":"service = INVENTORY","limit":10}`)
	if status != 200 || out["total"].(float64) != 2 {
		t.Fatalf("fetch = %d %v, want 2 documents", status, out)
	}

	// Delete by filter.
	tk = c.task(http.MethodPost, "/indexes/spans/documents/delete", `{"filter":"start < 25"}`)
	if tk["status"] != "succeeded" || tk["details"].(map[string]any)["deletedDocuments"].(float64) != 2 {
		t.Fatalf("delete task = %v, want 2 deleted (b and c)", tk)
	}
	if tk := c.task(http.MethodPost, "/indexes/spans/documents/delete", `{"filter":"n = 1"}`); errCode(tk) != "invalid_document_filter" {
		t.Errorf("delete on a non-filterable attribute = %v", tk)
	}
	status, out = c.do(http.MethodPost, "/indexes/spans/search", `{"sort":["start:asc"],"hybrid":null}`)
	if status != 200 {
		t.Fatalf("search = %d %v", status, out)
	}
	var ids []string
	for _, h := range out["hits"].([]any) {
		ids = append(ids, fmt.Sprint(h.(map[string]any)["id"]))
	}
	if strings.Join(ids, ",") != "3,a" {
		t.Errorf("remaining documents by start = %v, want [3 a] (a replaced with start 40)", ids)
	}

	// Deleting the index.
	c.mustSucceed(http.MethodDelete, "/indexes/spans", "")
	if status, _ := c.do(http.MethodGet, "/indexes/spans", ""); status != 404 {
		t.Errorf("index still there after deletion (status %d)", status)
	}
}

func TestSearch(t *testing.T) {
	c := newClient(t, Options{})
	c.mustSucceed(http.MethodPatch, "/indexes/s/settings", `{
		"filterableAttributes":["service","trace","attr"],
		"sortableAttributes":["start","id"],
		"searchableAttributes":["name","attr"],
		"rankingRules":["sort","words","typo","proximity","attribute","exactness"],
		"pagination":{"maxTotalHits":4}}`)
	var docs []string
	for i := range 6 {
		docs = append(docs, fmt.Sprintf(`{"id":"d%d","trace":"t%d","service":"svc%d","start":%d,"name":"GET /stock/%d","attr":{"msg":"Connection reset by peer #%d"}}`,
			i, i/2, i%2, 100-i, i, i))
	}
	c.mustSucceed(http.MethodPost, "/indexes/s/documents?primaryKey=id", "["+strings.Join(docs, ",")+"]")

	tests := []struct {
		body  string
		want  string
		total string
	}{
		{`{"sort":["start:asc"],"limit":2}`, "d5,d4", "estimatedTotalHits=4"}, // maxTotalHits caps what a search reaches
		{`{"sort":["start:desc"],"page":2,"hitsPerPage":3}`, "d3", "totalHits=4"},
		{`{"sort":["start:desc"],"distinct":"trace","page":1,"hitsPerPage":10}`, "d0,d2,d4", "totalHits=3"},
		{`{"q":"\"connection reset\"","filter":"service = SVC1","sort":["id:desc"],"matchingStrategy":"all"}`, "d5,d3,d1", "estimatedTotalHits=3"},
		{`{"q":"\"reset connection\"","matchingStrategy":"all"}`, "", "estimatedTotalHits=0"},
		{`{"q":"conn"}`, "", "estimatedTotalHits=0"}, // whole words only
		{`{"q":"stock 4 peer","matchingStrategy":"all"}`, "d4", "estimatedTotalHits=1"},
		{`{"filter":[["service = svc0","trace = t2"],"attr.msg EXISTS"],"sort":["id:asc"]}`, "d0,d2,d4,d5", "estimatedTotalHits=4"},
		{`{"filter":"NOT trace IN [t0, t1]","attributesToRetrieve":["id"]}`, "d4,d5", "estimatedTotalHits=2"},
	}
	for _, tt := range tests {
		status, out := c.do(http.MethodPost, "/indexes/s/search", tt.body)
		if status != 200 {
			t.Errorf("%s: %d %v", tt.body, status, out)
			continue
		}
		var ids []string
		for _, h := range out["hits"].([]any) {
			ids = append(ids, fmt.Sprint(h.(map[string]any)["id"]))
		}
		name, _, _ := strings.Cut(tt.total, "=")
		total := fmt.Sprintf("%s=%v", name, out[name])
		if strings.Join(ids, ",") != tt.want || total != tt.total {
			t.Errorf("%s: hits %v %s, want %s %s", tt.body, ids, total, tt.want, tt.total)
		}
	}
	_, out := c.do(http.MethodPost, "/indexes/s/search", `{"filter":"service = svc1 AND trace = t0","attributesToRetrieve":["id","start"]}`)
	if hit := out["hits"].([]any); len(hit) != 1 || len(hit[0].(map[string]any)) != 2 {
		t.Errorf("attributesToRetrieve: hits %v, want one hit with id and start only", hit)
	}
}

func TestGzipBody(t *testing.T) {
	c := newClient(t, Options{})
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write([]byte(`[{"id":"a"}]`))
	_ = zw.Close()
	h := http.Header{"Authorization": {"Bearer " + key}, "Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}
	status, out := c.raw(http.MethodPost, "/indexes/z/documents?primaryKey=id", h, buf.String())
	if status != http.StatusAccepted {
		t.Fatalf("gzip addition = %d %v", status, out)
	}
	h.Set("Content-Encoding", "br")
	if status, out := c.raw(http.MethodPost, "/indexes/z/documents", h, buf.String()); status != 415 {
		t.Errorf("brotli addition = %d %v, want 415", status, out)
	}
}
