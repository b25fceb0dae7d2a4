package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/meshtrace/meshtrace/indexer/store"
)

// FacetResponse is the body of GET /api/v1/facets: the values of one field over the documents a query
// matches, most frequent first, ties by value ascending (querysvc.Service.Facet).
type FacetResponse struct {
	Query  string             `json:"query"`
	Field  string             `json:"field"` // the document field counted: "customer_id" is counted as "attr.customer_id"
	Values []store.FacetCount `json:"values"`
	// Truncated means more distinct values than the answer holds may exist (the limit was reached).
	Truncated bool `json:"truncated,omitempty"`
	// Partial means the counts cover part of the matching documents (a scope join or free text cut at
	// store.MaxLimit): they are then lower bounds.
	Partial bool `json:"partial,omitempty"`
	// IndexLagSeconds is as in SearchResponse.
	IndexLagSeconds float64 `json:"index_lag_seconds"`
}

// errFacetField answers a facet request without a field.
var errFacetField = errors.New("field is required: the field to count, as a query names it (service, name, kind, status, " +
	"customer_id or attr.<key>, resource.<key>, trace.service, trace.root_service)")

// facets serves GET /api/v1/facets?q=QUERY&field=FIELD[&limit=N]: "the top customer_id values among the
// failing spans of the last hour" is q=error=true since=1h&field=customer_id. limit is 0 (the default,
// store.DefaultFacetLimit) to store.MaxFacetValues. A query that does not compile, a missing field, a field
// that cannot be counted or a bad limit answer 400 with the reason.
func (s *Server) facets(w http.ResponseWriter, r *http.Request) {
	src, q, ok := s.compileQ(w, r, s.now())
	if !ok {
		return
	}
	v := r.URL.Query()
	field := v.Get("field")
	if field == "" {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: errFacetField.Error()})
		return
	}
	limit, err := limitOf(v.Get("limit"), store.MaxFacetValues)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: err.Error()})
		return
	}
	res, err := s.svc.Facet(r.Context(), q, field, limit)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, FacetResponse{Query: src, Field: res.Field, Values: res.Values, Truncated: res.Truncated,
		Partial: res.Partial, IndexLagSeconds: s.lag().Seconds()})
}

// limitOf parses a limit parameter: empty is 0, otherwise an integer from 0 to max.
func limitOf(s string, max int) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > max {
		return 0, errors.New("limit must be an integer from 0 to " + strconv.Itoa(max))
	}
	return n, nil
}
