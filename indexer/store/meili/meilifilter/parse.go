// Package meilifilter parses Meilisearch filter expressions and evaluates them against JSON documents.
//
// It implements the grammar documented for the `filter` search parameter (and for the documents fetch and
// delete routes):
//
//	expression = or
//	or         = and ("OR" and)*
//	and        = not ("AND" not)*
//	not        = "NOT" not | primary
//	primary    = "(" expression ")" | value "IN" "[" values "]" | value "NOT" "IN" "[" values "]"
//	           | value ("=" | "!=" | ">" | ">=" | "<" | "<=") value | value value "TO" value
//	           | value "EXISTS" | value "NOT" "EXISTS" | value "IS" ["NOT"] "NULL" | value "IS" ["NOT"] "EMPTY"
//	value      = word | 'single quoted' | "double quoted"
//	word       = (letter | digit | "_" | "-" | ".")+, not a keyword
//
// Inside quotes, a backslash escapes the quote character and the sequences \\ \n \r \t \0 \' \" \/ \b \f \xHH
// \uHHHH and \u{H...} are decoded; any other escape is an error, as in Meilisearch since v1.4. Keywords are
// case-sensitive. Geo filters and the experimental CONTAINS and STARTS WITH operators are rejected.
//
// Evaluation (Flatten, Match, Check) follows Meilisearch's filter engine as of v1.15: string equality after
// facet normalization (trim, NFKD, lower case), a value that reads as a number also equals numeric fields,
// ranges compare numbers numerically and strings lexicographically, NOT and != match documents without the
// field, and a field holding a list matches if any element does.
//
// The package serves the Meilisearch stand-in used in tests (meilitest) and the tests of the filter compiler
// (which check that every compiled filter parses).
package meilifilter

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Node is a parsed filter expression: *And, *Or, *Not, *Cond or *In.
type Node interface {
	// String renders the node in filter syntax with every value double-quoted; parsing it yields an equal tree.
	String() string
}

// And matches documents matched by every term.
type And struct{ Terms []Node }

// Or matches documents matched by any term.
type Or struct{ Terms []Node }

// Not matches documents that X does not match, including documents without X's fields.
type Not struct{ X Node }

// Op is the operator of a condition.
type Op int

// Condition operators.
const (
	Eq      Op = iota // field = value
	Ne                // field != value
	Gt                // field > value
	Ge                // field >= value
	Lt                // field < value
	Le                // field <= value
	Between           // field value TO to
	Exists            // field EXISTS
	IsNull            // field IS NULL
	IsEmpty           // field IS EMPTY
)

// Cond is a condition on one field. Value is set for the comparison operators and Between (with To).
type Cond struct {
	Field string
	Op    Op
	Value string
	To    string
}

// In is `Field IN [Values...]`.
type In struct {
	Field  string
	Values []string
}

// Error is a syntax error. Pos is the 0-based byte offset in the filter where the problem was found.
type Error struct {
	Pos int
	Msg string
}

// Error returns the message and the byte offset.
func (e *Error) Error() string { return fmt.Sprintf("%s at byte %d", e.Msg, e.Pos) }

// maxDepth bounds the nesting of expressions, as Meilisearch does.
const maxDepth = 200

// Parse parses a filter expression. A blank filter yields a nil Node and no error.
func Parse(s string) (Node, error) {
	p := &parser{src: s}
	p.space()
	if p.pos == len(s) {
		return nil, nil
	}
	n, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if p.pos != len(s) {
		return nil, p.errorf("unexpected %q: expected AND, OR or the end of the filter", p.peekToken())
	}
	return n, nil
}

type parser struct {
	src string
	pos int
}

func (p *parser) errorf(format string, args ...any) error {
	return &Error{Pos: p.pos, Msg: fmt.Sprintf(format, args...)}
}

// space skips white space.
func (p *parser) space() {
	for p.pos < len(p.src) {
		r, n := utf8.DecodeRuneInString(p.src[p.pos:])
		if !unicode.IsSpace(r) {
			return
		}
		p.pos += n
	}
}

func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsNumber(r) || r == '_' || r == '-' || r == '.'
}

// word returns the word at the cursor without consuming it ("" if none).
func (p *parser) word() string {
	end := p.pos
	for end < len(p.src) {
		r, n := utf8.DecodeRuneInString(p.src[end:])
		if !isWordRune(r) {
			break
		}
		end += n
	}
	return p.src[p.pos:end]
}

// keyword consumes kw (and the white space after it) if the next word is exactly kw.
func (p *parser) keyword(kw string) bool {
	if p.word() != kw {
		return false
	}
	p.pos += len(kw)
	p.space()
	return true
}

// peekToken describes what is at the cursor for error messages.
func (p *parser) peekToken() string {
	if p.pos >= len(p.src) {
		return "end of filter"
	}
	if w := p.word(); w != "" {
		return w
	}
	r, _ := utf8.DecodeRuneInString(p.src[p.pos:])
	return string(r)
}

var keywords = map[string]bool{
	"AND": true, "OR": true, "IN": true, "NOT": true, "TO": true, "EXISTS": true, "IS": true, "NULL": true,
	"EMPTY": true, "CONTAINS": true, "STARTS": true, "WITH": true, "_geoRadius": true, "_geoBoundingBox": true,
}

func (p *parser) or(depth int) (Node, error) {
	if depth > maxDepth {
		return nil, p.errorf("filter nested too deeply (more than %d levels)", maxDepth)
	}
	first, err := p.and(depth + 1)
	if err != nil {
		return nil, err
	}
	terms := []Node{first}
	for p.keyword("OR") {
		t, err := p.and(depth + 1)
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
	}
	if len(terms) == 1 {
		return first, nil
	}
	return &Or{Terms: terms}, nil
}

func (p *parser) and(depth int) (Node, error) {
	first, err := p.not(depth + 1)
	if err != nil {
		return nil, err
	}
	terms := []Node{first}
	for p.keyword("AND") {
		t, err := p.not(depth + 1)
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
	}
	if len(terms) == 1 {
		return first, nil
	}
	return &And{Terms: terms}, nil
}

func (p *parser) not(depth int) (Node, error) {
	if depth > maxDepth {
		return nil, p.errorf("filter nested too deeply (more than %d levels)", maxDepth)
	}
	if p.keyword("NOT") {
		x, err := p.not(depth + 1)
		if err != nil {
			return nil, err
		}
		return negate(x), nil
	}
	return p.primary(depth + 1)
}

// negate wraps x in Not, folding double negations as Meilisearch does.
func negate(x Node) Node {
	if n, ok := x.(*Not); ok {
		return n.X
	}
	return &Not{X: x}
}

func (p *parser) primary(depth int) (Node, error) {
	if p.pos < len(p.src) && p.src[p.pos] == '(' {
		p.pos++
		p.space()
		x, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.pos >= len(p.src) || p.src[p.pos] != ')' {
			return nil, p.errorf("expected `)` to close the parenthesis, found %q", p.peekToken())
		}
		p.pos++
		p.space()
		return x, nil
	}
	if w := p.word(); w == "_geoRadius" || w == "_geoBoundingBox" || w == "_geoPoint" || w == "_geo" {
		return nil, p.errorf("geo filter `%s` is not supported", w)
	}
	field, err := p.value()
	if err != nil {
		return nil, err
	}
	if op, ok := p.operator(); ok {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		return &Cond{Field: field, Op: op, Value: v}, nil
	}
	switch {
	case p.keyword("IN"):
		vals, err := p.list()
		if err != nil {
			return nil, err
		}
		return &In{Field: field, Values: vals}, nil
	case p.keyword("EXISTS"):
		return &Cond{Field: field, Op: Exists}, nil
	case p.keyword("IS"):
		neg := p.keyword("NOT")
		var c *Cond
		switch {
		case p.keyword("NULL"):
			c = &Cond{Field: field, Op: IsNull}
		case p.keyword("EMPTY"):
			c = &Cond{Field: field, Op: IsEmpty}
		default:
			return nil, p.errorf("expected NULL or EMPTY after IS, found %q", p.peekToken())
		}
		if neg {
			return &Not{X: c}, nil
		}
		return c, nil
	case p.keyword("NOT"):
		switch {
		case p.keyword("IN"):
			vals, err := p.list()
			if err != nil {
				return nil, err
			}
			return &Not{X: &In{Field: field, Values: vals}}, nil
		case p.keyword("EXISTS"):
			return &Not{X: &Cond{Field: field, Op: Exists}}, nil
		}
		return nil, p.errorf("expected IN or EXISTS after NOT, found %q", p.peekToken())
	case p.word() == "CONTAINS" || p.word() == "STARTS":
		return nil, p.errorf("operator %s is an experimental feature and is not supported", p.word())
	}
	if p.pos >= len(p.src) || p.word() == "AND" || p.word() == "OR" || p.src[p.pos] == ')' {
		return nil, p.errorf("expected an operation (=, !=, >, >=, <, <=, IN, NOT IN, TO, EXISTS, NOT EXISTS, "+
			"IS NULL, IS NOT NULL, IS EMPTY, IS NOT EMPTY) after %q, found %q", field, p.peekToken())
	}
	from, err := p.value()
	if err != nil {
		return nil, err
	}
	if !p.keyword("TO") {
		return nil, p.errorf("expected TO after `%s %s`, found %q", field, from, p.peekToken())
	}
	to, err := p.value()
	if err != nil {
		return nil, err
	}
	return &Cond{Field: field, Op: Between, Value: from, To: to}, nil
}

// operator consumes a comparison operator.
func (p *parser) operator() (Op, bool) {
	rest := p.src[p.pos:]
	for _, o := range []struct {
		tok string
		op  Op
	}{{"!=", Ne}, {">=", Ge}, {"<=", Le}, {"=", Eq}, {">", Gt}, {"<", Lt}} {
		if strings.HasPrefix(rest, o.tok) {
			p.pos += len(o.tok)
			p.space()
			return o.op, true
		}
	}
	return 0, false
}

// list parses `[ value, value, ... ]` with an optional trailing comma.
func (p *parser) list() ([]string, error) {
	if p.pos >= len(p.src) || p.src[p.pos] != '[' {
		return nil, p.errorf("expected `[` after IN, found %q", p.peekToken())
	}
	p.pos++
	p.space()
	vals := []string{}
	for {
		if p.pos < len(p.src) && p.src[p.pos] == ']' {
			p.pos++
			p.space()
			return vals, nil
		}
		if p.pos >= len(p.src) {
			return nil, p.errorf("expected `]` to close the IN list")
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
		if p.pos < len(p.src) && p.src[p.pos] == ',' {
			p.pos++
			p.space()
			continue
		}
		if p.pos >= len(p.src) || p.src[p.pos] != ']' {
			return nil, p.errorf("expected `,` or `]` in the IN list, found %q", p.peekToken())
		}
	}
}

// value parses a word or a quoted string and the white space after it.
func (p *parser) value() (string, error) {
	p.space()
	start := p.pos
	if p.pos < len(p.src) && (p.src[p.pos] == '"' || p.src[p.pos] == '\'') {
		q := p.src[p.pos]
		raw, err := p.quoted(q)
		if err != nil {
			return "", err
		}
		v, err := unescape(raw)
		if err != nil {
			return "", &Error{Pos: start, Msg: err.Error()}
		}
		p.space()
		return v, nil
	}
	w := p.word()
	if w == "" {
		return "", p.errorf("expected a value, found %q", p.peekToken())
	}
	if keywords[w] {
		return "", p.errorf("expected a value, found the reserved keyword %s (quote it to use it as a value)", w)
	}
	p.pos += len(w)
	p.space()
	return w, nil
}

// quoted consumes a string quoted by q and returns its raw content (escapes untouched).
func (p *parser) quoted(q byte) (string, error) {
	start := p.pos
	i := p.pos + 1
	for i < len(p.src) {
		switch p.src[i] {
		case q:
			p.pos = i + 1
			return p.src[start+1 : i], nil
		case '\\':
			if i+1 >= len(p.src) {
				return "", &Error{Pos: i, Msg: "unfinished escape sequence"}
			}
			i += 2
			continue
		}
		i++
	}
	return "", &Error{Pos: start, Msg: fmt.Sprintf("missing closing %c", q)}
}

// unescape decodes the escape sequences of a quoted value.
func unescape(raw string) (string, error) {
	if !strings.Contains(raw, `\`) {
		return raw, nil
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(raw) {
			return "", fmt.Errorf("unfinished escape sequence")
		}
		switch e := raw[i]; e {
		case '\\', '\'', '"', '/':
			b.WriteByte(e)
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case '0':
			b.WriteByte(0)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'x':
			if i+2 >= len(raw) {
				return "", fmt.Errorf("invalid escape \\x: expected two hex digits")
			}
			n, err := strconv.ParseUint(raw[i+1:i+3], 16, 8)
			if err != nil || n > 0x7f {
				return "", fmt.Errorf("invalid escape \\x%s", raw[i+1:i+3])
			}
			b.WriteByte(byte(n))
			i += 2
		case 'u':
			r, n, err := unicodeEscape(raw[i+1:])
			if err != nil {
				return "", err
			}
			b.WriteRune(r)
			i += n
		default:
			return "", fmt.Errorf("invalid escape sequence \\%c", e)
		}
	}
	return b.String(), nil
}

// unicodeEscape decodes the part after `\u`: HHHH or {H...}. It returns the rune and the bytes consumed.
func unicodeEscape(s string) (rune, int, error) {
	var hex string
	var n int
	if strings.HasPrefix(s, "{") {
		end := strings.IndexByte(s, '}')
		if end < 2 || end > 7 {
			return 0, 0, fmt.Errorf("invalid escape \\u{...}")
		}
		hex, n = s[1:end], end+1
	} else {
		if len(s) < 4 {
			return 0, 0, fmt.Errorf("invalid escape \\u: expected four hex digits")
		}
		hex, n = s[:4], 4
	}
	v, err := strconv.ParseUint(hex, 16, 32)
	if err != nil || !utf8.ValidRune(rune(v)) {
		return 0, 0, fmt.Errorf("invalid escape \\u%s", hex)
	}
	return rune(v), n, nil
}
