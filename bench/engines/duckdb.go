package engines

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// duckdbEngine is DuckDB through github.com/duckdb/duckdb-go/v2 (cgo, the static library of
// duckdb-go-bindings): columnar tables without indexes (queries scan, pruned by DuckDB's zone maps), filled
// with the Appender API. Each Write appends on a connection of its own (concurrent Writes use different
// connections) and flushes its appenders, each flush committing a transaction: DuckDB writes its WAL at
// commit and fsyncs it, so a flushed batch survives a crash; the database file gets it at checkpoints
// (automatic past 16 MB of WAL, and at close). Free text is a regular expression over a folded text column
// (DuckDB's fts extension is not built into the library and cannot be downloaded here).
type duckdbEngine struct {
	db  *sql.DB
	ids ids
}

// duckdbSchema is the schema (see the model in sql.go).
const duckdbSchema = `
CREATE TABLE IF NOT EXISTS spans(sid BIGINT, id VARCHAR, trace_id VARCHAR, service VARCHAR, name VARCHAR,
	start BIGINT, duration BIGINT, error BOOLEAN, status_message VARCHAR, text_lc VARCHAR, doc VARCHAR);
CREATE TABLE IF NOT EXISTS attrs(sid BIGINT, key VARCHAR, sval VARCHAR, nval DOUBLE);
CREATE TABLE IF NOT EXISTS traces(tid BIGINT, id VARCHAR, start BIGINT, duration BIGINT, span_count INTEGER,
	error_count INTEGER, root_service VARCHAR, doc VARCHAR);
CREATE TABLE IF NOT EXISTS trace_services(tid BIGINT, service VARCHAR);
CREATE TABLE IF NOT EXISTS trace_keys(tid BIGINT, key VARCHAR, value VARCHAR);
`

func (e *duckdbEngine) open(dir string) error {
	db, err := openSQL("duckdb", filepath.Join(dir, "spans.duckdb"), duckdbSchema, &e.ids)
	if err != nil {
		return err
	}
	e.db = db
	return nil
}

// write appends the batch to the five tables (inserts: the generator writes each trace document once).
func (e *duckdbEngine) write(ctx context.Context, spans []document.Span, traces []document.Trace) error {
	sr, tr, err := e.ids.rows(spans, traces)
	if err != nil {
		return err
	}
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		c := dc.(driver.Conn)
		appendTo := func(table string, fill func(a *duckdb.Appender) error) error {
			a, err := duckdb.NewAppenderFromConn(c, "", table)
			if err != nil {
				return fmt.Errorf("duckdb: appender %s: %w", table, err)
			}
			if err := fill(a); err != nil {
				return errors.Join(fmt.Errorf("duckdb: append %s: %w", table, err), a.Close())
			}
			if err := a.Close(); err != nil { // flushes and commits
				return fmt.Errorf("duckdb: flush %s: %w", table, err)
			}
			return nil
		}
		return errors.Join(
			appendTo("spans", func(a *duckdb.Appender) error {
				for i := range sr {
					r := &sr[i]
					if err := a.AppendRow(r.sid, r.id, r.traceID, r.service, r.name, r.start, r.duration, r.error, r.status, r.textLC, string(r.doc)); err != nil {
						return err
					}
				}
				return nil
			}),
			appendTo("attrs", func(a *duckdb.Appender) error {
				for i := range sr {
					for _, at := range sr[i].attrs {
						if err := a.AppendRow(sr[i].sid, at.key, at.sval, at.nval); err != nil {
							return err
						}
					}
				}
				return nil
			}),
			appendTo("traces", func(a *duckdb.Appender) error {
				for i := range tr {
					r := &tr[i]
					if err := a.AppendRow(r.tid, r.id, r.start, r.duration, int32(r.spanCount), int32(r.errorCount), r.rootService, string(r.doc)); err != nil {
						return err
					}
				}
				return nil
			}),
			appendTo("trace_services", func(a *duckdb.Appender) error {
				for i := range tr {
					for _, s := range tr[i].services {
						if err := a.AppendRow(tr[i].tid, s); err != nil {
							return err
						}
					}
				}
				return nil
			}),
			appendTo("trace_keys", func(a *duckdb.Appender) error {
				for i := range tr {
					for _, k := range tr[i].keys {
						if err := a.AppendRow(tr[i].tid, k[0], k[1]); err != nil {
							return err
						}
					}
				}
				return nil
			}),
		)
	})
}

// duckdbDialect matches free text with a regular expression over the folded text column.
type duckdbDialect struct{}

func (duckdbDialect) text(phrase string) (string, []any) {
	return `regexp_matches(s.text_lc, ?)`, []any{phraseRegexp(phrase)}
}

func (e *duckdbEngine) search(ctx context.Context, c *queryCase) (store.Result, error) {
	q, err := sqlCase(c, benchLookup, duckdbDialect{})
	if err != nil {
		return store.Result{}, err
	}
	return runSQL(ctx, e.db, q)
}

func (e *duckdbEngine) facet(ctx context.Context, _ *queryCase) ([]store.FacetCount, error) {
	return runFacetSQL(ctx, e.db)
}

// close checkpoints (the WAL into the database file) and closes the database.
func (e *duckdbEngine) close() error {
	if e.db == nil {
		return nil
	}
	_, err := e.db.Exec(`CHECKPOINT`)
	err = errors.Join(err, e.db.Close())
	e.db = nil
	return err
}
