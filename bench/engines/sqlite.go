package engines

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver (pure Go, FTS5 built in)
)

// sqliteEngine is SQLite through modernc.org/sqlite: WAL journal, synchronous=FULL (a transaction that has
// committed survives a power loss: the WAL is fsynced at every commit), one writer at a time (SQLite's
// rule; concurrent Writes queue on a mutex), each Write one transaction of prepared inserts. Free text is
// an FTS5 contentless table (unicode61 tokenizer) over the name, the status message and the other
// searchable values, queried with a phrase.
type sqliteEngine struct {
	db  *sql.DB
	mu  sync.Mutex
	ids ids
}

// sqliteSchema is the schema (see the model in sql.go). attrs is clustered by span (a span's attributes
// are one range, appended in order) and indexed by (key, sval), the index holding sid too.
const sqliteSchema = `
CREATE TABLE IF NOT EXISTS spans(sid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, trace_id TEXT NOT NULL,
	service TEXT NOT NULL, name TEXT NOT NULL, start INTEGER NOT NULL, duration INTEGER NOT NULL,
	error INTEGER NOT NULL, status_message TEXT, doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS spans_trace ON spans(trace_id);
CREATE INDEX IF NOT EXISTS spans_start ON spans(start);
CREATE INDEX IF NOT EXISTS spans_service_start ON spans(service, start);
CREATE INDEX IF NOT EXISTS spans_error_start ON spans(start) WHERE error;
CREATE TABLE IF NOT EXISTS attrs(sid INTEGER NOT NULL, key TEXT NOT NULL, sval TEXT NOT NULL, nval REAL,
	PRIMARY KEY(sid, key, sval)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attrs_kv ON attrs(key, sval);
CREATE VIRTUAL TABLE IF NOT EXISTS spans_fts USING fts5(name, status_message, other, content='', tokenize='unicode61');
CREATE TABLE IF NOT EXISTS traces(tid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, start INTEGER NOT NULL,
	duration INTEGER NOT NULL, span_count INTEGER NOT NULL, error_count INTEGER NOT NULL, root_service TEXT,
	doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS traces_start ON traces(start);
CREATE TABLE IF NOT EXISTS trace_services(tid INTEGER NOT NULL, service TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS trace_services_st ON trace_services(service, tid);
CREATE TABLE IF NOT EXISTS trace_keys(tid INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS trace_keys_kvt ON trace_keys(key, value, tid);
`

func (e *sqliteEngine) open(dir string) error {
	// The pragmas apply to every connection of the pool.
	dsn := "file:" + filepath.Join(dir, "spans.db") + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
		"&_pragma=busy_timeout(60000)&_pragma=cache_size(-65536)&_pragma=temp_store(MEMORY)"
	db, err := openSQL("sqlite", dsn, sqliteSchema, &e.ids)
	if err != nil {
		return err
	}
	e.db = db
	return nil
}

// write inserts the batch in one transaction. Trace documents are inserted, not replaced: the generator
// writes each trace document once (a product store would delete the trace's rows first).
func (e *sqliteEngine) write(ctx context.Context, spans []document.Span, traces []document.Trace) error {
	sr, tr, err := e.ids.rows(spans, traces)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmts := map[string]*sql.Stmt{}
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = tx.PrepareContext(ctx, q)
		stmts[q] = st
		return st
	}
	insSpan := prep(`INSERT INTO spans(sid, id, trace_id, service, name, start, duration, error, status_message, doc) VALUES(?,?,?,?,?,?,?,?,?,?)`)
	insAttr := prep(`INSERT OR IGNORE INTO attrs(sid, key, sval, nval) VALUES(?,?,?,?)`)
	insFTS := prep(`INSERT INTO spans_fts(rowid, name, status_message, other) VALUES(?,?,?,?)`)
	insTrace := prep(`INSERT INTO traces(tid, id, start, duration, span_count, error_count, root_service, doc) VALUES(?,?,?,?,?,?,?,?)`)
	insSvc := prep(`INSERT INTO trace_services(tid, service) VALUES(?,?)`)
	insKey := prep(`INSERT INTO trace_keys(tid, key, value) VALUES(?,?,?)`)
	if err != nil {
		return err
	}
	defer func() {
		for _, st := range stmts {
			if st != nil {
				st.Close()
			}
		}
	}()
	for i := range sr {
		r := &sr[i]
		if _, err := insSpan.ExecContext(ctx, r.sid, r.id, r.traceID, r.service, r.name, r.start, r.duration, r.error, r.status, r.doc); err != nil {
			return fmt.Errorf("sqlite: span %s: %w", r.id, err)
		}
		for _, a := range r.attrs {
			if _, err := insAttr.ExecContext(ctx, r.sid, a.key, a.sval, a.nval); err != nil {
				return err
			}
		}
		if _, err := insFTS.ExecContext(ctx, r.sid, r.ftsName, r.ftsStatus, r.ftsOther); err != nil {
			return err
		}
	}
	for i := range tr {
		r := &tr[i]
		if _, err := insTrace.ExecContext(ctx, r.tid, r.id, r.start, r.duration, r.spanCount, r.errorCount, r.rootService, r.doc); err != nil {
			return fmt.Errorf("sqlite: trace %s: %w", r.id, err)
		}
		for _, s := range r.services {
			if _, err := insSvc.ExecContext(ctx, r.tid, s); err != nil {
				return err
			}
		}
		for _, k := range r.keys {
			if _, err := insKey.ExecContext(ctx, r.tid, k[0], k[1]); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// sqliteDialect matches free text with FTS5.
type sqliteDialect struct{}

func (sqliteDialect) text(phrase string) (string, []any) {
	// An FTS5 phrase: the words in order, adjacent, within one column.
	return `s.sid IN (SELECT rowid FROM spans_fts WHERE spans_fts MATCH ?)`, []any{`"` + strings.ReplaceAll(phrase, `"`, `""`) + `"`}
}

func (e *sqliteEngine) search(ctx context.Context, c *queryCase) (store.Result, error) {
	q, err := sqlCase(c, benchLookup, sqliteDialect{})
	if err != nil {
		return store.Result{}, err
	}
	return runSQL(ctx, e.db, q)
}

func (e *sqliteEngine) facet(ctx context.Context, _ *queryCase) ([]store.FacetCount, error) {
	return runFacetSQL(ctx, e.db)
}

// close checkpoints the WAL into the database file (so that the directory holds everything, and the WAL
// file is truncated) and closes the database; ANALYZE first gives the planner statistics, as an operator
// would run it once.
func (e *sqliteEngine) close() error {
	if e.db == nil {
		return nil
	}
	_, err1 := e.db.Exec(`ANALYZE`)
	_, err2 := e.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	err := errors.Join(err1, err2, e.db.Close())
	e.db = nil
	return err
}
