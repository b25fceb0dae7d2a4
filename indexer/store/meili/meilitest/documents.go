package meilitest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/meshtrace/meshtrace/indexer/store/meili/meilifilter"
)

// addDocuments handles POST /indexes/{uid}/documents: the payload is checked now (400 malformed_payload),
// the documents (ids, primary key) when the task runs, all or nothing.
func (s *Server) addDocuments(w http.ResponseWriter, r *http.Request, uid string) error {
	for k := range r.URL.Query() {
		if k != "primaryKey" && k != "customMetadata" {
			return errorf(http.StatusBadRequest, "bad_request", "Unknown parameter `%s`: expected one of `primaryKey`, `csvDelimiter`, `customMetadata`", k)
		}
	}
	pk := r.URL.Query().Get("primaryKey")
	objs, err := readDocuments(r)
	if err != nil {
		return err
	}
	details := map[string]any{"receivedDocuments": len(objs), "indexedDocuments": nil}
	return s.enqueue(w, uid, "documentAdditionOrUpdate", details, func(t *task) *apiError {
		ix := s.indexes[uid]
		key := pk
		if ix != nil && ix.primaryKey != "" {
			if pk != "" && pk != ix.primaryKey {
				return errorf(http.StatusBadRequest, "index_primary_key_already_exists",
					"Index `%s`: Index already has a primary key: `%s`.", uid, ix.primaryKey)
			}
			key = ix.primaryKey
		}
		if key == "" {
			var err *apiError
			if key, err = inferPrimaryKey(uid, objs); err != nil {
				return err
			}
		}
		ids := make([]string, len(objs))
		for i, o := range objs {
			id, err := documentID(uid, key, o)
			if err != nil {
				return err
			}
			ids[i] = id
		}
		if ix == nil {
			ix = newIndex(uid, "", t.EnqueuedAt)
			s.indexes[uid] = ix
		}
		ix.primaryKey = key
		for i, o := range objs {
			d := &doc{obj: o, flat: meilifilter.Flatten(o)}
			if old := ix.docs[ids[i]]; old != nil {
				d.seq = old.seq
			} else {
				ix.seq++
				d.seq = ix.seq
			}
			ix.docs[ids[i]] = d
		}
		t.Details["indexedDocuments"] = len(objs)
		return nil
	})
}

// readDocuments decodes a JSON (array or single object) or NDJSON payload, gzip-compressed or not.
func readDocuments(r *http.Request) ([]map[string]any, error) {
	accepted := "`application/json`, `application/x-ndjson`"
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil, errorf(http.StatusUnsupportedMediaType, "missing_content_type",
			"A Content-Type header is missing. Accepted values for the Content-Type header are: %s", accepted)
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && mt != "application/x-ndjson") {
		return nil, errorf(http.StatusUnsupportedMediaType, "invalid_content_type",
			"The Content-Type `%s` is invalid. Accepted values for the Content-Type header are: %s", ct, accepted)
	}
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "malformed_payload", "The gzip payload is malformed: %v", err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			return nil, errorf(http.StatusBadRequest, "malformed_payload", "The gzip payload is malformed: %v", err)
		}
	default:
		return nil, errorf(http.StatusUnsupportedMediaType, "invalid_content_type",
			"meilitest: Content-Encoding `%s` is not supported (gzip and identity are)", enc)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errorf(http.StatusBadRequest, "missing_payload", "A %s payload is missing.", mt)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var objs []map[string]any
	if mt == "application/x-ndjson" {
		for line := 1; ; line++ {
			var o map[string]any
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil || o == nil {
				return nil, errorf(http.StatusBadRequest, "malformed_payload",
					"The `ndjson` payload provided is malformed. `Couldn't serialize document value: %v` (document %d).", err, line)
			}
			objs = append(objs, o)
		}
		return objs, nil
	}
	trimmed := bytes.TrimSpace(body)
	if trimmed[0] == '{' {
		var o map[string]any
		if err := dec.Decode(&o); err != nil {
			return nil, errorf(http.StatusBadRequest, "malformed_payload", "The `json` payload provided is malformed. `%v`.", err)
		}
		objs = append(objs, o)
	} else if err := dec.Decode(&objs); err != nil {
		return nil, errorf(http.StatusBadRequest, "malformed_payload", "The `json` payload provided is malformed. `%v`.", err)
	}
	if dec.More() {
		return nil, errorf(http.StatusBadRequest, "malformed_payload", "The `json` payload provided is malformed: trailing data.")
	}
	for i, o := range objs {
		if o == nil {
			return nil, errorf(http.StatusBadRequest, "malformed_payload", "The `json` payload provided is malformed: document %d is not an object.", i)
		}
	}
	return objs, nil
}

// inferPrimaryKey picks the only top-level attribute whose name ends in "id" (case-insensitive).
func inferPrimaryKey(uid string, objs []map[string]any) (string, *apiError) {
	if len(objs) == 0 {
		return "", errorf(http.StatusBadRequest, "index_primary_key_no_candidate_found",
			"Index `%s`: The primary key inference failed as the engine did not find any field ending with `id` in its name. Please specify the primary key manually using the `primaryKey` query parameter.", uid)
	}
	var candidates []string
	for k := range objs[0] {
		if strings.HasSuffix(strings.ToLower(k), "id") {
			candidates = append(candidates, k)
		}
	}
	slices.Sort(candidates)
	switch len(candidates) {
	case 0:
		return "", errorf(http.StatusBadRequest, "index_primary_key_no_candidate_found",
			"Index `%s`: The primary key inference failed as the engine did not find any field ending with `id` in its name. Please specify the primary key manually using the `primaryKey` query parameter.", uid)
	case 1:
		return candidates[0], nil
	}
	return "", errorf(http.StatusBadRequest, "index_primary_key_multiple_candidates_found",
		"Index `%s`: The primary key inference failed as the engine found %d fields ending with `id` in their names: '%s' and '%s'. Please specify the primary key manually using the `primaryKey` query parameter.",
		uid, len(candidates), candidates[0], candidates[1])
}

// documentID validates a document's id: a string of [A-Za-z0-9_-]{1,511} or a non-negative integer.
func documentID(uid, key string, o map[string]any) (string, *apiError) {
	v, ok := o[key]
	if !ok {
		return "", errorf(http.StatusBadRequest, "missing_document_id",
			"Index `%s`: Document doesn't have a `%s` attribute: `%s`.", uid, key, compact(o))
	}
	switch id := v.(type) {
	case string:
		if docIDRe.MatchString(id) {
			return id, nil
		}
	case json.Number:
		if n, ok := parseUint(id.String()); ok {
			return fmt.Sprint(n), nil
		}
	}
	return "", errorf(http.StatusBadRequest, "invalid_document_id",
		"Index `%s`: Document identifier `%s` is invalid. A document identifier can be of type integer or string, only composed of alphanumeric characters (a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be more than 511 bytes.",
		uid, compact(v))
}

func compact(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// filterParam decodes a `filter` parameter: a string, or an array whose elements are AND-ed and whose nested
// arrays are OR-ed.
func filterParam(raw json.RawMessage, code string) (meilifilter.Node, error) {
	if raw == nil {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		n, err := meilifilter.Parse(s)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, code, "%v\n%s", err, s)
		}
		return n, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errorf(http.StatusBadRequest, code, "Invalid syntax for the filter parameter: `expected String, Array, found: %s`.", raw)
	}
	and := &meilifilter.And{}
	for _, el := range list {
		var inner []string
		if json.Unmarshal(el, &inner) == nil {
			or := &meilifilter.Or{}
			for _, f := range inner {
				n, err := filterParam(mustJSON(f), code)
				if err != nil {
					return nil, err
				}
				if n != nil {
					or.Terms = append(or.Terms, n)
				}
			}
			if len(or.Terms) > 0 {
				and.Terms = append(and.Terms, or)
			}
			continue
		}
		var f string
		if err := json.Unmarshal(el, &f); err != nil {
			return nil, errorf(http.StatusBadRequest, code, "Invalid syntax for the filter parameter: `expected String, Array, found: %s`.", el)
		}
		n, err := filterParam(mustJSON(f), code)
		if err != nil {
			return nil, err
		}
		if n != nil {
			and.Terms = append(and.Terms, n)
		}
	}
	if len(and.Terms) == 0 {
		return nil, nil
	}
	return and, nil
}

func mustJSON(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// checkFilter applies meilifilter.Check, mapping its error to code.
func checkFilter(n meilifilter.Node, ix *index, code string) error {
	if n == nil {
		return nil
	}
	if err := meilifilter.Check(n, ix.settings.filterable); err != nil {
		return errorf(http.StatusBadRequest, code, "%v", err)
	}
	return nil
}

// fetchDocuments handles POST /indexes/{uid}/documents/fetch.
func (s *Server) fetchDocuments(w http.ResponseWriter, r *http.Request, uid string) error {
	obj, err := decodeObject(r, []string{"offset", "limit", "fields", "filter", "retrieveVectors", "ids", "sort"})
	if err != nil {
		return err
	}
	offset, limit := 0, 20
	var fields, ids, sortBy []string
	var vectors bool
	for _, f := range []struct {
		key  string
		dst  any
		code string
	}{
		{"offset", &offset, "invalid_document_offset"}, {"limit", &limit, "invalid_document_limit"},
		{"fields", &fields, "invalid_document_fields"}, {"ids", &ids, "invalid_document_ids"},
		{"sort", &sortBy, "invalid_document_sort"}, {"retrieveVectors", &vectors, "invalid_document_retrieve_vectors"},
	} {
		if err := field(obj, f.key, f.dst, f.code); err != nil {
			return err
		}
	}
	if offset < 0 || limit < 0 {
		return errorf(http.StatusBadRequest, "invalid_document_offset", "Invalid value: offset and limit must be positive integers")
	}
	filter, err := filterParam(obj["filter"], "invalid_document_filter")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ix, err := s.index(uid)
	if err != nil {
		return err
	}
	if err := checkFilter(filter, ix, "invalid_document_filter"); err != nil {
		return err
	}
	order, err := sortOrder(ix, sortBy, "invalid_document_sort")
	if err != nil {
		return err
	}
	var hits []*doc
	for _, d := range ix.ordered() {
		if ids != nil && !slices.Contains(ids, docKey(ix, d)) {
			continue
		}
		if meilifilter.Match(filter, d.flat) {
			hits = append(hits, d)
		}
	}
	order(hits)
	total := len(hits)
	hits = window(hits, offset, limit)
	results := make([]map[string]any, len(hits))
	for i, d := range hits {
		results[i] = project(d.obj, fields)
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results, "offset": offset, "limit": limit, "total": total})
	return nil
}

func docKey(ix *index, d *doc) string {
	switch v := d.obj[ix.primaryKey].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

func window(hits []*doc, offset, limit int) []*doc {
	if offset >= len(hits) {
		return nil
	}
	hits = hits[offset:]
	if limit < len(hits) {
		hits = hits[:limit]
	}
	return hits
}

// project keeps the requested top-level fields (all when fields is empty or holds "*").
func project(obj map[string]any, fields []string) map[string]any {
	if len(fields) == 0 || slices.Contains(fields, "*") {
		return obj
	}
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		if v, ok := obj[f]; ok {
			out[f] = v
		}
	}
	return out
}

// deleteByFilter handles POST /indexes/{uid}/documents/delete: syntax is checked now, filterable
// attributes when the task runs.
func (s *Server) deleteByFilter(w http.ResponseWriter, r *http.Request, uid string) error {
	obj, err := decodeObject(r, []string{"filter"})
	if err != nil {
		return err
	}
	raw, ok := obj["filter"]
	if !ok {
		return errorf(http.StatusBadRequest, "missing_document_filter", "Missing field `filter`")
	}
	filter, err := filterParam(raw, "invalid_document_filter")
	if err != nil {
		return err
	}
	if filter == nil {
		return errorf(http.StatusBadRequest, "invalid_document_filter", "Sending an empty filter is forbidden.")
	}
	details := map[string]any{"providedIds": 0, "deletedDocuments": nil, "originalFilter": string(raw)}
	return s.enqueue(w, uid, "documentDeletion", details, func(t *task) *apiError {
		ix, err := s.index(uid)
		if err != nil {
			return err.(*apiError)
		}
		if err := checkFilter(filter, ix, "invalid_document_filter"); err != nil {
			return err.(*apiError)
		}
		deleted := 0
		for id, d := range ix.docs {
			if meilifilter.Match(filter, d.flat) {
				delete(ix.docs, id)
				deleted++
			}
		}
		t.Details["deletedDocuments"] = deleted
		return nil
	})
}
