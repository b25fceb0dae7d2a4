package engines

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// The SQL candidates share one relational model (the dialects differ in types, ingest and free text):
//
//	spans(sid, id, trace_id, service, name, start, duration, error, status_message, doc)
//	attrs(sid, key, sval, nval)          -- every span and resource attribute: "attr.K" / "resource.K"
//	traces(tid, id, start, duration, span_count, error_count, root_service, doc)
//	trace_services(tid, service)
//	trace_keys(tid, key, value)          -- the rolled-up business keys (document.Trace.Keys)
//
// The filter columns (service, name, attrs.sval, trace_services, trace_keys) hold case-folded values, so
// that equality is case-insensitive as the query language wants with plain indexes; doc is the whole
// document as JSON (what a hit returns, as the other stores return whole documents). Numbers are in sval in
// their canonical text form (so customer_id=123 matches the string "123" and the number 123 alike) and in
// nval (for ranges; unindexed). sid and tid are assigned by the writer.

// spanRow is one span as the SQL candidates store it.
type spanRow struct {
	sid                                  int64
	id, traceID, service, name, status   string
	start, duration                      int64
	error                                bool
	doc                                  []byte
	attrs                                []attrRow
	ftsName, ftsStatus, ftsOther, textLC string // free-text columns (FTS5) and the folded text (DuckDB)
}

// attrRow is one attribute value of a span.
type attrRow struct {
	key, sval string
	nval      any // float64 or nil
}

// traceRow is one trace document as the SQL candidates store it.
type traceRow struct {
	tid                   int64
	id, rootService       string
	start, duration       int64
	spanCount, errorCount int
	doc                   []byte
	services              []string
	keys                  [][2]string // key, folded value
}

// textSep separates the values of the folded text column, so that a phrase never spans two values.
const textSep = "\x1f"

// searchableAttrs are the attributes of query.SpanSearchable (free text), without the "attr." prefix.
var searchableAttrs = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range query.SpanSearchable {
		if k, ok := strings.CutPrefix(f, query.AttrPrefix); ok {
			m[k] = true
		}
	}
	return m
}()

// openSQL opens a database with the driver, creates the schema and continues the ids after a reopen.
func openSQL(driver, dsn, schema string, n *ids) (*sql.DB, error) {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, err
	}
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s schema: %w", driver, err)
	}
	var sid, tid sql.NullInt64
	if err := db.QueryRow(`SELECT (SELECT max(sid) FROM spans), (SELECT max(tid) FROM traces)`).Scan(&sid, &tid); err != nil {
		db.Close()
		return nil, err
	}
	n.span.Store(sid.Int64)
	n.trace.Store(tid.Int64)
	return db, nil
}

// ids hands out sids and tids.
type ids struct{ span, trace atomic.Int64 }

// rows converts a batch into rows.
func (n *ids) rows(spans []document.Span, traces []document.Trace) ([]spanRow, []traceRow, error) {
	sr := make([]spanRow, len(spans))
	for i := range spans {
		s := &spans[i]
		if err := store.CheckID(s.ID); err != nil {
			return nil, nil, err
		}
		doc, err := json.Marshal(s)
		if err != nil {
			return nil, nil, err
		}
		r := spanRow{sid: n.span.Add(1), id: s.ID, traceID: strings.ToLower(s.TraceID), service: strings.ToLower(s.Service),
			name: strings.ToLower(s.Name), status: s.StatusMessage, start: s.Start, duration: s.Duration, error: s.Error, doc: doc}
		var other, text []string
		text = append(text, s.Name, s.StatusMessage)
		for _, ev := range s.Events {
			other = append(other, ev.Name)
		}
		for k, v := range s.Attr {
			r.attrs = appendAttr(r.attrs, document.AttrPath+"."+k, v)
			if str, ok := v.(string); ok && searchableAttrs[k] {
				other = append(other, str)
			}
		}
		for k, v := range s.Resource {
			r.attrs = appendAttr(r.attrs, document.ResourcePath+"."+k, v)
		}
		text = append(text, other...)
		r.ftsName, r.ftsStatus, r.ftsOther = s.Name, s.StatusMessage, strings.Join(other, "\n")
		r.textLC = strings.ToLower(strings.Join(text, textSep))
		sr[i] = r
	}
	tr := make([]traceRow, len(traces))
	for i := range traces {
		t := &traces[i]
		if err := store.CheckID(t.ID); err != nil {
			return nil, nil, err
		}
		doc, err := json.Marshal(t)
		if err != nil {
			return nil, nil, err
		}
		r := traceRow{tid: n.trace.Add(1), id: strings.ToLower(t.ID), rootService: strings.ToLower(t.RootService), start: t.Start,
			duration: t.Duration, spanCount: t.SpanCount, errorCount: t.ErrorCount, doc: doc}
		for _, s := range t.Services {
			r.services = append(r.services, strings.ToLower(s))
		}
		for k, vs := range t.Keys {
			for _, v := range vs {
				r.keys = append(r.keys, [2]string{k, strings.ToLower(v)})
			}
		}
		tr[i] = r
	}
	return sr, tr, nil
}

// appendAttr appends the rows of one attribute: one per scalar, one per element of a list.
func appendAttr(out []attrRow, key string, v any) []attrRow {
	switch x := v.(type) {
	case string:
		return append(out, attrRow{key: key, sval: strings.ToLower(x)})
	case int64:
		return append(out, attrRow{key: key, sval: strconv.FormatInt(x, 10), nval: float64(x)})
	case int:
		return append(out, attrRow{key: key, sval: strconv.Itoa(x), nval: float64(x)})
	case float64:
		return append(out, attrRow{key: key, sval: strconv.FormatFloat(x, 'f', -1, 64), nval: x})
	case bool:
		return append(out, attrRow{key: key, sval: strconv.FormatBool(x)})
	case []any:
		for _, e := range x {
			out = appendAttr(out, key, e)
		}
		return out
	default:
		return append(out, attrRow{key: key, sval: strings.ToLower(fmt.Sprint(x))})
	}
}

// sqlQuery is a query case written by hand in SQL: a WHERE clause over spans s or traces t.
type sqlQuery struct {
	traces bool // the clause is over traces t
	where  string
	args   []any
	asc    bool // start ascending (else start descending)
	limit  int
}

// dialect is what differs between the SQL candidates in the queries: how a span matches a free-text
// phrase (a condition on spans s).
type dialect interface {
	text(phrase string) (string, []any)
}

// sqlCase writes the query case c in SQL with the semantics of the query language (package query docs):
// string equality on folded values, since=D as start >= now-D on every document searched, trace.duration
// as the trace document's duration, a trace matching span conditions when one of its spans (the same span)
// satisfies all of them, free text as whole words in order within one searchable value.
func sqlCase(c *queryCase, traceID string, d dialect) (sqlQuery, error) {
	since := func(dur time.Duration) int64 { return benchNow.Add(-dur).UnixMicro() }
	h1, m10 := since(time.Hour), since(10*time.Minute)
	limit := c.Limit
	if limit == 0 {
		limit = store.DefaultLimit
	}
	spans := func(where string, args ...any) (sqlQuery, error) {
		return sqlQuery{where: where, args: args, limit: limit}, nil
	}
	traces := func(where string, args ...any) (sqlQuery, error) {
		return sqlQuery{traces: true, where: where, args: args, limit: limit}, nil
	}
	// customer123 is a span of customer 123 on inventory-service in the last hour.
	const customer123 = `SELECT s.trace_id FROM attrs a JOIN spans s ON s.sid = a.sid
		WHERE a.key = 'attr.customer_id' AND a.sval = '123' AND s.service = 'inventory-service' AND s.start >= ?`
	switch c.Name {
	case "product/trace-spans":
		q, err := spans(`s.trace_id = ?`, strings.ToLower(traceID))
		q.asc = true
		return q, err
	case "product/slow-spans":
		return spans(`s.service = 'service-b' AND s.duration >= 1000000 AND s.start >= ?`, m10)
	case "product/customer-traces":
		return traces(`t.start >= ? AND t.duration > 500000 AND t.id IN (`+customer123+`)`, h1, h1)
	case "product/customer-traces-span-duration":
		return traces(`t.start >= ? AND t.id IN (`+customer123+` AND s.duration > 500000)`, h1, h1)
	case "trace-scope/customer-traces":
		return traces(`t.start >= ? AND t.duration > 500000
			AND t.tid IN (SELECT tid FROM trace_keys WHERE key = 'customer_id' AND value = '123')
			AND t.tid IN (SELECT tid FROM trace_services WHERE service = 'inventory-service')`, h1)
	case "recent-errors":
		return spans(`s.error AND s.start >= ?`, m10)
	case "recent-errors/service":
		return spans(`s.service = 'inventory-service' AND s.error AND s.start >= ?`, h1)
	case "free-text":
		w, a := d.text("connection reset")
		return spans(w, a...)
	case "free-text/service":
		w, a := d.text("connection reset")
		return spans(`s.service = 'inventory-service' AND s.start >= ? AND `+w, append([]any{h1}, a...)...)
	case "business-key/spans":
		return spans(`s.sid IN (SELECT sid FROM attrs WHERE key = 'attr.customer_id' AND sval = '4711')`)
	case "business-key/traces":
		return traces(`t.tid IN (SELECT tid FROM trace_keys WHERE key = 'customer_id' AND value = '4711')`)
	}
	return sqlQuery{}, fmt.Errorf("no SQL for case %q", c.Name)
}

// facetSQL is the facet case: the top 10 customer_id values among failing spans of the last hour.
// CROSS JOIN makes SQLite drive the join from the spans (its partial index on failing spans' start), not
// from every customer_id in attrs; DuckDB plans it as the same hash join either way.
const facetSQL = `SELECT a.sval, count(*) AS n FROM spans s CROSS JOIN attrs a
	WHERE a.sid = s.sid AND a.key = 'attr.customer_id' AND s.error AND s.start >= ?
	GROUP BY a.sval ORDER BY n DESC, a.sval LIMIT 10`

// phraseRegexp is a regular expression matching phrase as whole words, in order, within one value of a
// folded text column whose values are separated by textSep.
func phraseRegexp(phrase string) string {
	words := strings.FieldsFunc(strings.ToLower(phrase), func(r rune) bool { return !isWordRune(r) })
	for i, w := range words {
		words[i] = regexp.QuoteMeta(w)
	}
	return `(^|[^a-z0-9])` + strings.Join(words, `[^a-z0-9`+textSep+`]+`) + `([^a-z0-9]|$)`
}

func isWordRune(r rune) bool { return 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r >= 0x80 }

// runSQL answers q on db: the count, then the page of documents (start order, ties by id).
func runSQL(ctx context.Context, db *sql.DB, q sqlQuery) (store.Result, error) {
	table, alias := "spans s", "s"
	if q.traces {
		table, alias = "traces t", "t"
	}
	var res store.Result
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE "+q.where, q.args...).Scan(&res.Total); err != nil {
		return res, fmt.Errorf("count: %w", err)
	}
	order := " DESC"
	if q.asc {
		order = " ASC"
	}
	rows, err := db.QueryContext(ctx, "SELECT "+alias+".doc FROM "+table+" WHERE "+q.where+
		" ORDER BY "+alias+".start"+order+", "+alias+".id LIMIT "+strconv.Itoa(q.limit), q.args...)
	if err != nil {
		return res, fmt.Errorf("page: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return res, err
		}
		if q.traces {
			var t document.Trace
			if err := json.Unmarshal(doc, &t); err != nil {
				return res, err
			}
			res.Traces = append(res.Traces, t)
		} else {
			var s document.Span
			if err := json.Unmarshal(doc, &s); err != nil {
				return res, err
			}
			res.Spans = append(res.Spans, s)
		}
	}
	return res, rows.Err()
}

// runFacetSQL answers the facet case on db.
func runFacetSQL(ctx context.Context, db *sql.DB) ([]store.FacetCount, error) {
	rows, err := db.QueryContext(ctx, facetSQL, benchNow.Add(-time.Hour).UnixMicro())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.FacetCount
	for rows.Next() {
		var f store.FacetCount
		if err := rows.Scan(&f.Value, &f.Count); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}
