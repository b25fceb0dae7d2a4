package query

import (
	"strconv"
	"strings"
)

// Expr is a node of a query's abstract syntax tree. The parser produces it with the names written by the user;
// Compile resolves names to document fields and turns literals into canonical values, producing the same node
// types, so a store compiles only one tree shape: And, Or, Not, Compare, In and Exists (Text nodes are moved
// out of the filter by Compile, see Query.Text).
type Expr interface {
	// Pos is the 1-based byte offset of the node in the query text (0 for nodes built by Compile).
	Pos() int
	// String renders the node in query syntax; parsing the output yields an equal tree.
	String() string
}

// Op is a comparison operator.
type Op int

// Comparison operators.
const (
	Eq Op = iota // =
	Ne           // !=
	Lt           // <
	Le           // <=
	Gt           // >
	Ge           // >=
)

// String returns the operator as written in a query (and in a Meilisearch filter).
func (o Op) String() string {
	switch o {
	case Eq:
		return "="
	case Ne:
		return "!="
	case Lt:
		return "<"
	case Le:
		return "<="
	case Gt:
		return ">"
	case Ge:
		return ">="
	}
	return "?"
}

// Value is a literal. Str is the text (unquoted); Num holds its numeric value when IsNum is set. Quotes only
// let a value hold spaces or keywords: "123" and 123 mean the same. After
// Compile, durations and times are integer microseconds with Str their decimal form, booleans are "true" or
// "false", a hash("...") value is the hex HMAC-SHA256 of Str, and Quoted and Hashed are cleared.
type Value struct {
	Str    string
	Num    float64
	IsNum  bool
	Quoted bool // written between quotes
	// Hashed: written hash("Str"), the value a tag with "hash": true records for Str (see WithHMACKey).
	Hashed bool
	At     int // 1-based offset in the query text
}

// String renders the value in query syntax.
func (v Value) String() string {
	if v.Hashed {
		return hashFunc + "(" + Quote(v.Str) + ")"
	}
	if v.IsNum && !v.Quoted {
		return v.Str
	}
	if !v.Quoted && isPlainWord(v.Str) {
		return v.Str
	}
	return Quote(v.Str)
}

// Int returns the numeric literal n: Str its decimal form, Num its value, IsNum set. Compile gives
// durations and times in this form (integer microseconds); code building filters uses it for the same.
func Int(n int64) Value {
	return Value{Str: strconv.FormatInt(n, 10), Num: float64(n), IsNum: true}
}

// And matches documents matched by every term.
type And struct {
	Terms []Expr
	At    int
}

// Conjoin returns the conjunction of the non-nil terms, flattening terms that are themselves an And: nil
// when no term is left, the term itself when one is, an *And otherwise. It is how Compile and the code
// running queries combine filters.
func Conjoin(terms ...Expr) Expr {
	var out []Expr
	for _, t := range terms {
		switch x := t.(type) {
		case nil:
		case *And:
			out = append(out, x.Terms...)
		default:
			out = append(out, t)
		}
	}
	switch len(out) {
	case 0:
		return nil
	case 1:
		return out[0]
	}
	return &And{Terms: out}
}

// Or matches documents matched by any term.
type Or struct {
	Terms []Expr
	At    int
}

// Not matches documents not matched by X, including documents without the fields X names (as in Meilisearch).
type Not struct {
	X  Expr
	At int
}

// Compare is `Field Op Value`. Equality (= and !=) is case-insensitive on strings, and a value that reads as a
// number also equals a numeric field; ordering operators (<, <=, >, >=) match numeric fields only. A field
// holding a list matches if any element does. `a != b` means `NOT a = b`.
type Compare struct {
	Field string
	Op    Op
	Value Value
	At    int
}

// In is `Field IN [v1, v2, ...]`: equality with any of the values.
type In struct {
	Field  string
	Values []Value
	At     int
}

// Exists is `Field EXISTS`: the document has the field (with any value).
type Exists struct {
	Field string
	At    int
}

// Text is a free-text word or "quoted phrase": the document contains the words in this order in one of its
// searchable fields, compared case-insensitively and as whole words.
type Text struct {
	Phrase string
	At     int
}

// Pos implements Expr.
func (e *And) Pos() int { return e.At }

// Pos implements Expr.
func (e *Or) Pos() int { return e.At }

// Pos implements Expr.
func (e *Not) Pos() int { return e.At }

// Pos implements Expr.
func (e *Compare) Pos() int { return e.At }

// Pos implements Expr.
func (e *In) Pos() int { return e.At }

// Pos implements Expr.
func (e *Exists) Pos() int { return e.At }

// Pos implements Expr.
func (e *Text) Pos() int { return e.At }

// String renders the conjunction in query syntax, parenthesising OR terms.
func (e *And) String() string {
	return join(e.Terms, " AND ", func(x Expr) bool { _, ok := x.(*Or); return ok })
}

// String renders the disjunction in query syntax.
func (e *Or) String() string { return join(e.Terms, " OR ", func(Expr) bool { return false }) }

// String renders the negation in query syntax.
func (e *Not) String() string {
	switch e.X.(type) {
	case *And, *Or, *Not:
		return "NOT (" + e.X.String() + ")"
	}
	return "NOT " + e.X.String()
}

// String renders the comparison in query syntax.
func (e *Compare) String() string { return e.Field + " " + e.Op.String() + " " + e.Value.String() }

// String renders the membership test in query syntax.
func (e *In) String() string {
	parts := make([]string, len(e.Values))
	for i, v := range e.Values {
		parts[i] = v.String()
	}
	return e.Field + " IN [" + strings.Join(parts, ", ") + "]"
}

// String renders the existence test in query syntax.
func (e *Exists) String() string { return e.Field + " EXISTS" }

// String renders the phrase quoted.
func (e *Text) String() string { return Quote(e.Phrase) }

// Quote writes s as a query string: in double quotes, with backslash before " and \. Meilisearch's filter
// strings escape the same way, so the Meilisearch store quotes field names and values with it too.
func Quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// join renders terms with sep, parenthesising those for which paren reports true.
func join(terms []Expr, sep string, paren func(Expr) bool) string {
	parts := make([]string, len(terms))
	for i, t := range terms {
		if paren(t) {
			parts[i] = "(" + t.String() + ")"
		} else {
			parts[i] = t.String()
		}
	}
	return strings.Join(parts, sep)
}
