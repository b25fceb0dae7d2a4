package meili

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/meshtrace/meshtrace/indexer/query"
)

// compileFilter renders a resolved query expression as a Meilisearch filter string. Field names and values
// are always double-quoted (query.Quote escapes backslashes and quotes), so no field or value can be
// read as a keyword or break the syntax; compound terms are parenthesised. A nil expression gives "".
func compileFilter(e query.Expr) (string, error) {
	if e == nil {
		return "", nil
	}
	var b strings.Builder
	if err := writeFilter(&b, e); err != nil {
		return "", err
	}
	return b.String(), nil
}

func writeFilter(b *strings.Builder, e query.Expr) error {
	switch e := e.(type) {
	case *query.And:
		return writeJoined(b, e.Terms, " AND ")
	case *query.Or:
		return writeJoined(b, e.Terms, " OR ")
	case *query.Not:
		b.WriteString("NOT (")
		if err := writeFilter(b, e.X); err != nil {
			return err
		}
		b.WriteByte(')')
	case *query.Compare:
		return writeCompare(b, e)
	case *query.In:
		b.WriteString(query.Quote(e.Field))
		b.WriteString(" IN [")
		for i, v := range e.Values {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(query.Quote(v.Str))
		}
		b.WriteByte(']')
	case *query.Exists:
		b.WriteString(query.Quote(e.Field))
		b.WriteString(" EXISTS")
	default:
		return fmt.Errorf("meili: cannot compile %T (%s) into a filter", e, e)
	}
	return nil
}

func writeCompare(b *strings.Builder, e *query.Compare) error {
	field := query.Quote(e.Field)
	if e.Op == query.Eq || e.Op == query.Ne {
		b.WriteString(field + " " + e.Op.String() + " " + query.Quote(e.Value.Str))
		return nil
	}
	if !e.Value.IsNum {
		return fmt.Errorf("meili: %s %s %q: ordering needs a number", e.Field, e.Op, e.Value.Str)
	}
	cond := field + " " + e.Op.String() + " " + query.Quote(strconv.FormatFloat(e.Value.Num, 'f', -1, 64))
	if numericField(e.Field) {
		b.WriteString(cond)
		return nil
	}
	// Since Meilisearch 1.15 ranges also compare strings (and booleans, indexed as strings) lexicographically;
	// the query language orders numbers only, so documents holding a string in the field are left out
	// (`>= ""` matches every string). A list mixing numbers and strings would be left out too; OpenTelemetry
	// attribute arrays are homogeneous.
	b.WriteString("(" + cond + " AND NOT " + field + ` >= "")`)
	return nil
}

// numericField reports whether a document field always holds a number (times, durations, counts), so a
// range on it needs no guard against strings.
func numericField(path string) bool {
	for _, fields := range []map[string]query.Kind{query.SpanFields, query.TraceFields} {
		switch fields[path] {
		case query.KindNumber, query.KindTime, query.KindDuration:
			return true
		}
	}
	return false
}

func writeJoined(b *strings.Builder, terms []query.Expr, sep string) error {
	if len(terms) == 0 {
		return fmt.Errorf("meili: empty%sexpression", strings.ToLower(sep))
	}
	for i, t := range terms {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteByte('(')
		if err := writeFilter(b, t); err != nil {
			return err
		}
		b.WriteByte(')')
	}
	return nil
}

// searchQuery renders free-text phrases as Meilisearch phrase searches ("..."), which match whole words in
// order, without typos or prefixes. Double quotes cannot be escaped inside a phrase; being word separators
// anyway, they are replaced by spaces.
func searchQuery(phrases []string) string {
	parts := make([]string, 0, len(phrases))
	for _, p := range phrases {
		p = strings.TrimSpace(strings.ReplaceAll(p, `"`, " "))
		if p != "" {
			parts = append(parts, `"`+p+`"`)
		}
	}
	return strings.Join(parts, " ")
}
