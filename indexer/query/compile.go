package query

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Query is a compiled query: one filter per document kind, free text, a time window and a sort order.
//
// Scopes combine as a conjunction: a span matches when it satisfies Span and Text and its trace satisfies
// Trace; a trace matches when it satisfies Trace and has at least one span satisfying Span and Text. Target
// says which of the two a search returns by default: traces when the query names any trace field, spans
// otherwise. Conditions of different scopes meet only at the top level: OR and NOT may not mix them.
type Query struct {
	Span   Expr     // filter on span documents (resolved paths, canonical values); nil: none
	Trace  Expr     // filter on trace documents; nil: none
	Text   []string // free-text phrases every matching span contains
	Since  int64    // window: start >= Since (unix microseconds); 0: unbounded
	Until  int64    // window: start <= Until; 0: unbounded
	Sort   []Sort   // requested order; empty: the store's default (most recent first)
	Target Scope    // what the query asks for by default
}

// Sort is one sort key.
type Sort struct {
	Field Field
	Desc  bool
}

// Compile parses src and resolves it against the document schema. Relative times (since=1h) count back
// from now. Queries past the limits (MaxQueryBytes, MaxTerms, MaxDepth, MaxSortKeys) are refused with an
// *Error, as are repeated sort keys. Options add what the query may need besides the text: WithHMACKey.
func Compile(src string, now time.Time, opts ...Option) (*Query, error) {
	e, err := Parse(src)
	if err != nil {
		return nil, err
	}
	return CompileExpr(e, now, opts...)
}

// Option configures Compile and CompileExpr.
type Option func(*compiler)

// WithHMACKey gives the compiler the key the filter hashes tag values with (the policy's hmac_key, or the
// value of the variable hmac_key_env names), so that hash("v"), the value of =, != and IN, compiles to the
// hex HMAC-SHA256 of v under key: what a tag with "hash": true records for v. Without a key (or with an
// empty one) hash(...) is an *Error. The key stays in the indexer: searchers write hash("v") and never
// see it.
func WithHMACKey(key []byte) Option {
	return func(c *compiler) { c.hmacKey = key }
}

// CompileExpr resolves a parsed expression; see Compile. It checks the sort keys (MaxSortKeys, no field
// twice); the other limits are the parser's.
func CompileExpr(e Expr, now time.Time, opts ...Option) (*Query, error) {
	c := &compiler{now: now}
	for _, o := range opts {
		o(c)
	}
	q := &Query{}
	var spans, traces []Expr
	var top []Expr
	if a, ok := e.(*And); ok {
		top = a.Terms
	} else if e != nil {
		top = []Expr{e}
	}
	for _, t := range top {
		if handled, err := c.special(q, t); err != nil {
			return nil, err
		} else if handled {
			continue
		}
		r, scope, err := c.resolve(t)
		if err != nil {
			return nil, err
		}
		if scope == TraceScope {
			traces = append(traces, r)
		} else {
			spans = append(spans, r)
		}
	}
	q.Span, q.Trace = Conjoin(spans...), Conjoin(traces...)
	if q.Trace != nil {
		q.Target = TraceScope
	}
	if q.Since != 0 && q.Until != 0 && q.Since > q.Until {
		return nil, errorf(c.windowAt, "time window is empty: since is later than until")
	}
	return q, nil
}

type compiler struct {
	now      time.Time
	hmacKey  []byte // see WithHMACKey
	windowAt int
	sortAt   map[sortField]int // position of each sort key so far
}

// sortField identifies a sort key's field, whichever direction it sorts.
type sortField struct {
	path  string
	scope Scope
}

// special handles top-level terms that are not filters: free text, since/until/between and sort.
func (c *compiler) special(q *Query, t Expr) (bool, error) {
	if x, ok := t.(*Text); ok {
		q.Text = append(q.Text, x.Phrase)
		return true, nil
	}
	cmp, ok := t.(*Compare)
	if !ok {
		return false, nil
	}
	name := strings.ToLower(cmp.Field)
	switch name {
	case "since", "until", "between", "sort":
	default:
		return false, nil
	}
	if cmp.Op != Eq {
		return true, errorf(cmp.At, "expected \"=\" after %s, found %q", name, cmp.Op.String())
	}
	v := cmp.Value
	if v.Hashed {
		return true, errorf(v.At, "hash(...) is a value to compare a hashed tag with (=, != or IN), not a %s setting", name)
	}
	switch name {
	case "sort":
		if len(q.Sort) == MaxSortKeys {
			return true, errorf(cmp.At, "too many sort keys: the limit is %d", MaxSortKeys)
		}
		s, err := sortKey(v)
		if err != nil {
			return true, err
		}
		k := sortField{s.Field.Path, s.Field.Scope}
		if at, ok := c.sortAt[k]; ok {
			return true, errorf(v.At, "sort key %q repeats the sort key at position %d: sort by each field once", v.Str, at)
		}
		if c.sortAt == nil {
			c.sortAt = map[sortField]int{}
		}
		c.sortAt[k] = v.At
		q.Sort = append(q.Sort, s)
		return true, nil
	case "between":
		from, to, ok := strings.Cut(v.Str, "..")
		if !ok {
			return true, errorf(v.At, "expected between=FROM..TO (each a time like 2026-01-02T15:04:05Z or a duration ago like 1h), found %q", v.Str)
		}
		a, err := c.instant(from, v.At)
		if err != nil {
			return true, err
		}
		b, err := c.instant(to, v.At+len(from)+2)
		if err != nil {
			return true, err
		}
		q.Since, q.Until = a, b
	default:
		ts, err := c.instant(v.Str, v.At)
		if err != nil {
			return true, err
		}
		if name == "since" {
			q.Since = ts
		} else {
			q.Until = ts
		}
	}
	c.windowAt = cmp.At
	return true, nil
}

// instant reads an RFC 3339 time or a duration counted back from now, as unix microseconds.
func (c *compiler) instant(s string, at int) (int64, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return 0, errorf(at, "expected a positive duration ago, found %q", s)
		}
		return c.now.Add(-d).UnixMicro(), nil
	}
	if t, err := parseTime(s); err == nil {
		return t.UnixMicro(), nil
	}
	return 0, errorf(at, "expected a duration ago (like 10m, 1h) or a time (like 2026-01-02T15:04:05Z), found %q", s)
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Parse("2006-01-02", s)
}

func sortKey(v Value) (Sort, error) {
	name, desc := v.Str, false
	if rest, ok := strings.CutPrefix(name, "-"); ok {
		name, desc = rest, true
	}
	f := Resolve(name)
	switch f.Kind {
	case KindNumber, KindTime, KindDuration:
		return Sort{Field: f, Desc: desc}, nil
	}
	return Sort{}, errorf(v.At, "expected a numeric field to sort by (start, end, duration, trace.span_count, ...; prefix - for descending), found %q", v.Str)
}

// resolve rewrites one filter term to document paths and canonical values and reports its scope.
func (c *compiler) resolve(e Expr) (Expr, Scope, error) {
	switch x := e.(type) {
	case *And, *Or:
		terms := termsOf(x)
		out := make([]Expr, len(terms))
		var scope Scope
		for i, t := range terms {
			r, s, err := c.resolve(t)
			if err != nil {
				return nil, 0, err
			}
			if i > 0 && s != scope {
				return nil, 0, errorf(t.Pos(), "cannot mix span and trace conditions inside parentheses, OR or NOT: this %s condition joins %s conditions (combine scopes only at the top level)", s, scope)
			}
			scope, out[i] = s, r
		}
		if _, ok := x.(*Or); ok {
			return &Or{Terms: out}, scope, nil
		}
		return &And{Terms: out}, scope, nil
	case *Not:
		r, s, err := c.resolve(x.X)
		if err != nil {
			return nil, 0, err
		}
		return &Not{X: r}, s, nil
	case *Text:
		return nil, 0, errorf(x.At, "free text must be a top-level term: it cannot appear inside parentheses, OR or NOT")
	case *Exists:
		f := Resolve(x.Field)
		return &Exists{Field: f.Path}, f.Scope, nil
	case *In:
		f := Resolve(x.Field)
		vals := make([]Value, len(x.Values))
		for i, v := range x.Values {
			cv, err := c.value(f, x.Field, Eq, v)
			if err != nil {
				return nil, 0, err
			}
			vals[i] = cv
		}
		return &In{Field: f.Path, Values: vals}, f.Scope, nil
	case *Compare:
		if isSpecial(x.Field) {
			return nil, 0, errorf(x.At, "%s must be a top-level condition: it cannot appear inside parentheses, OR or NOT", x.Field)
		}
		f := Resolve(x.Field)
		v, err := c.value(f, x.Field, x.Op, x.Value)
		if err != nil {
			return nil, 0, err
		}
		if x.Op == Ne {
			return &Not{X: &Compare{Field: f.Path, Op: Eq, Value: v}}, f.Scope, nil
		}
		return &Compare{Field: f.Path, Op: x.Op, Value: v}, f.Scope, nil
	}
	return nil, 0, errorf(e.Pos(), "unsupported expression %s", e.String())
}

func isSpecial(name string) bool {
	switch strings.ToLower(name) {
	case "since", "until", "between", "sort":
		return true
	}
	return false
}

func termsOf(e Expr) []Expr {
	if a, ok := e.(*And); ok {
		return a.Terms
	}
	return e.(*Or).Terms
}

// value returns the canonical value of the literal v compared with field f (written name) by op: a
// hash("...") value becomes its hex HMAC-SHA256 under the compiler's key, the others are canonical's.
func (c *compiler) value(f Field, name string, op Op, v Value) (Value, error) {
	if !v.Hashed {
		return canonical(f, name, op, v)
	}
	switch {
	case op != Eq && op != Ne:
		return Value{}, errorf(v.At, "hash(...) is compared with =, != or IN, found %q", op.String())
	case f.Kind != KindString && f.Kind != KindStrings && f.Kind != KindAny:
		return Value{}, errorf(v.At, "%s is not text: hash(...) is the hex text a hashed tag records, compared with attributes", name)
	case len(c.hmacKey) == 0:
		return Value{}, errorf(v.At, "hash(...) needs the indexer's --hmac-key-file (the key the filter hashes tags with); this indexer has none")
	}
	m := hmac.New(sha256.New, c.hmacKey)
	m.Write([]byte(v.Str))
	return Value{Str: hex.EncodeToString(m.Sum(nil))}, nil
}

// canonical checks a literal against the field's kind and returns its canonical value.
func canonical(f Field, name string, op Op, v Value) (Value, error) {
	ordered := op != Eq && op != Ne
	if !ordered && len(v.Str) > MaxValueBytes {
		return Value{}, errorf(v.At, "value of %s is %d bytes: the limit is %d (stores index the first %d bytes of a value; compare with those)",
			name, len(v.Str), MaxValueBytes, MaxValueBytes)
	}
	out := Value{Str: v.Str}
	switch f.Kind {
	case KindString, KindStrings:
		if ordered {
			return Value{}, errorf(v.At, "%s is text: expected =, != or IN, found %q (<, <=, >, >= compare numbers)", name, op.String())
		}
		return out, nil
	case KindBool:
		if ordered {
			return Value{}, errorf(v.At, "%s is true or false: expected = or !=, found %q", name, op.String())
		}
		switch strings.ToLower(v.Str) {
		case "true":
			out.Str = "true"
		case "false":
			out.Str = "false"
		default:
			return Value{}, errorf(v.At, "%s is true or false: expected true or false, found %q", name, v.Str)
		}
		return out, nil
	case KindDuration:
		d, err := time.ParseDuration(v.Str)
		if err != nil {
			return Value{}, errorf(v.At, "%s is a duration: expected a number with a unit (us, ms, s, m, h), like 500ms, found %q", name, v.Str)
		}
		return Int(d.Microseconds()), nil
	case KindTime:
		if isDecimal(v.Str) && !strings.Contains(v.Str, ".") {
			n, err := strconv.ParseInt(v.Str, 10, 64)
			if err == nil {
				return Int(n), nil
			}
		}
		t, err := parseTime(v.Str)
		if err != nil {
			return Value{}, errorf(v.At, "%s is a time: expected RFC 3339 (like 2026-01-02T15:04:05Z) or unix microseconds, found %q", name, v.Str)
		}
		return Int(t.UnixMicro()), nil
	}
	// KindNumber and KindAny.
	if isDecimal(v.Str) {
		n, err := strconv.ParseFloat(v.Str, 64)
		if err == nil {
			out.Num, out.IsNum = n, true
		}
	}
	if (ordered || f.Kind == KindNumber) && !out.IsNum {
		return Value{}, errorf(v.At, "expected a number after %s %s, found %q", name, op.String(), v.Str)
	}
	return out, nil
}
