package query

import (
	"regexp"
	"strconv"
	"strings"
)

// Parse parses a query into its syntax tree, with field names as written. An empty query yields a nil Expr
// (match everything). Errors are *Error values naming the position and what was expected. Queries longer
// than MaxQueryBytes, with more than MaxTerms terms or nested deeper than MaxDepth are refused.
//
// Grammar (keywords are case-insensitive; juxtaposition means AND):
//
//	query   = [ or ] EOF
//	or      = and { "OR" and }
//	and     = unary { [ "AND" ] unary }
//	unary   = "NOT" unary | "(" or ")" | term
//	term    = field op value
//	        | field [ "NOT" ] "IN" "[" value { "," value } "]"
//	        | field [ "NOT" ] "EXISTS"
//	        | word | string                       (free text)
//	op      = "=" | "!=" | "<" | "<=" | ">" | ">="
//	value   = word | string
//	        | "hash(" ( word | string ) ")"        (no space before "("; see WithHMACKey)
//	field   = word matching [A-Za-z_][A-Za-z0-9_.\-]*
func Parse(src string) (Expr, error) {
	if len(src) > MaxQueryBytes {
		return nil, errorf(MaxQueryBytes+1, "query is %d bytes long: the limit is %d bytes", len(src), MaxQueryBytes)
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	if p.peek().kind == tEOF {
		return nil, nil
	}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		if t.kind == tRParen {
			return nil, errorf(t.pos, `expected end of query, found ")" without matching "("`)
		}
		return nil, errorf(t.pos, "expected AND, OR or end of query, found %s", t.describe())
	}
	return e, nil
}

type parser struct {
	toks  []token
	i     int
	depth int // of unary: parentheses and NOT around the current term
	terms int // terms read so far (see MaxTerms)
}

// counted adds n terms, the first of them at pos, and refuses the query past MaxTerms.
func (p *parser) counted(pos, n int) error {
	p.terms += n
	if p.terms > MaxTerms {
		return errorf(pos, "query has too many terms: the limit is %d (each condition, IN value, free-text word or phrase and setting counts one)", MaxTerms)
	}
	return nil
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) peekAt(n int) token {
	if p.i+n < len(p.toks) {
		return p.toks[p.i+n]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

// isKeyword reports whether t is the word keyword kw.
func isKeyword(t token, kw string) bool { return t.kind == tWord && keyword(t.text) == kw }

func (p *parser) or() (Expr, error) {
	first, err := p.and()
	if err != nil {
		return nil, err
	}
	terms := []Expr{first}
	for isKeyword(p.peek(), "OR") {
		p.next()
		t, err := p.and()
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
	}
	if len(terms) == 1 {
		return first, nil
	}
	return &Or{Terms: terms, At: first.Pos()}, nil
}

// startsTerm reports whether t can begin a unary expression.
func startsTerm(t token) bool {
	switch t.kind {
	case tString, tLParen:
		return true
	case tWord:
		kw := keyword(t.text)
		return kw == "" || kw == "NOT"
	}
	return false
}

func (p *parser) and() (Expr, error) {
	first, err := p.unary()
	if err != nil {
		return nil, err
	}
	terms := []Expr{first}
	for {
		t := p.peek()
		if isKeyword(t, "AND") {
			p.next()
		} else if !startsTerm(t) {
			break
		}
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		terms = append(terms, x)
	}
	if len(terms) == 1 {
		return first, nil
	}
	return &And{Terms: terms, At: first.Pos()}, nil
}

func (p *parser) unary() (Expr, error) {
	t := p.peek()
	if isKeyword(t, "NOT") || t.kind == tLParen {
		// Every recursion passes here, so the depth bounds the stack.
		if p.depth == MaxDepth {
			return nil, errorf(t.pos, "query nested too deeply: the limit is %d levels of parentheses and NOT", MaxDepth)
		}
		p.depth++
		defer func() { p.depth-- }()
	}
	switch {
	case isKeyword(t, "NOT"):
		p.next()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &Not{X: x, At: t.pos}, nil
	case t.kind == tLParen:
		p.next()
		if p.peek().kind == tRParen {
			return nil, errorf(p.peek().pos, `expected a condition or free text inside "()", found ")"`)
		}
		x, err := p.or()
		if err != nil {
			return nil, err
		}
		if c := p.peek(); c.kind != tRParen {
			return nil, errorf(c.pos, `expected ")" to close "(" at position %d, found %s`, t.pos, c.describe())
		}
		p.next()
		return x, nil
	case t.kind == tString:
		p.next()
		if err := p.counted(t.pos, 1); err != nil {
			return nil, err
		}
		return &Text{Phrase: t.text, At: t.pos}, nil
	case t.kind == tWord && keyword(t.text) == "":
		return p.term()
	}
	return nil, errorf(t.pos, `expected a condition, free text, NOT or "(", found %s`, t.describe())
}

var fieldRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.\-]*$`)

// term parses what starts with a plain word: a condition on a field, or a free-text word.
func (p *parser) term() (Expr, error) {
	w := p.next()
	nt := p.peek()
	neg := false
	if isKeyword(nt, "NOT") && (isKeyword(p.peekAt(1), "IN") || isKeyword(p.peekAt(1), "EXISTS")) {
		neg = true
		p.next()
		nt = p.peek()
	}
	isCond := nt.kind == tOp || isKeyword(nt, "IN") || isKeyword(nt, "EXISTS")
	if !isCond {
		if err := p.counted(w.pos, 1); err != nil {
			return nil, err
		}
		return &Text{Phrase: w.text, At: w.pos}, nil
	}
	if !fieldRE.MatchString(w.text) {
		return nil, errorf(w.pos, "expected a field name (letters, digits, '_', '.', '-'), found %q", w.text)
	}
	var e Expr
	switch {
	case nt.kind == tOp:
		p.next()
		v, err := p.value("after " + strconv.Quote(nt.text))
		if err != nil {
			return nil, err
		}
		if err := p.counted(w.pos, 1); err != nil {
			return nil, err
		}
		e = &Compare{Field: w.text, Op: opOf(nt.text), Value: v, At: w.pos}
	case isKeyword(nt, "EXISTS"):
		p.next()
		if err := p.counted(w.pos, 1); err != nil {
			return nil, err
		}
		e = &Exists{Field: w.text, At: w.pos}
	default: // IN
		p.next()
		vals, err := p.list()
		if err != nil {
			return nil, err
		}
		e = &In{Field: w.text, Values: vals, At: w.pos}
	}
	if neg {
		return &Not{X: e, At: w.pos}, nil
	}
	return e, nil
}

func opOf(s string) Op {
	switch s {
	case "!=":
		return Ne
	case "<":
		return Lt
	case "<=":
		return Le
	case ">":
		return Gt
	case ">=":
		return Ge
	}
	return Eq
}

// value parses a literal; ctx says where it was expected, for the error.
func (p *parser) value(ctx string) (Value, error) {
	t := p.peek()
	switch t.kind {
	case tString:
		p.next()
		return Value{Str: t.text, Quoted: true, At: t.pos}, nil
	case tWord:
		if open := p.peekAt(1); strings.EqualFold(t.text, hashFunc) && open.kind == tLParen && open.pos == t.pos+len(t.text) {
			return p.hashValue()
		}
		if keyword(t.text) == "" {
			p.next()
			return wordValue(t.text, t.pos), nil
		}
	}
	return Value{}, errorf(t.pos, "expected a value %s, found %s (quote values that are keywords or contain spaces)", ctx, t.describe())
}

// hashFunc is the function-like literal of a hashed value, hash("..."), matched case-insensitively.
const hashFunc = "hash"

// hashValue parses hash("v") (or hash(v)), the word and the "(" next to it being the current tokens.
func (p *parser) hashValue() (Value, error) {
	name, open := p.next(), p.next()
	arg := p.next()
	if arg.kind != tString && (arg.kind != tWord || keyword(arg.text) != "") {
		return Value{}, errorf(arg.pos, `expected the value to hash inside hash(...), like hash("123"), found %s`, arg.describe())
	}
	if c := p.next(); c.kind != tRParen {
		return Value{}, errorf(c.pos, `expected ")" to close hash( at position %d, found %s`, open.pos, c.describe())
	}
	return Value{Str: arg.text, Quoted: arg.kind == tString, Hashed: true, At: name.pos}, nil
}

// wordValue makes the value of an unquoted word, noting whether it reads as a number.
func wordValue(s string, pos int) Value {
	v := Value{Str: s, At: pos}
	if n, err := strconv.ParseFloat(s, 64); err == nil && isDecimal(s) {
		v.Num, v.IsNum = n, true
	}
	return v
}

// isDecimal reports whether s is a plain decimal number (no hex, exponent, Inf or NaN spellings).
func isDecimal(s string) bool {
	digits := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits = true
		case c == '.' || (i == 0 && (c == '-' || c == '+')):
		default:
			return false
		}
	}
	return digits
}

func (p *parser) list() ([]Value, error) {
	open := p.peek()
	if open.kind != tLBrack {
		return nil, errorf(open.pos, `expected "[" after IN, found %s`, open.describe())
	}
	p.next()
	var vals []Value
	for {
		v, err := p.value("in the IN list")
		if err != nil {
			return nil, err
		}
		if err := p.counted(v.At, 1); err != nil {
			return nil, err
		}
		vals = append(vals, v)
		switch t := p.next(); t.kind {
		case tComma:
		case tRBrack:
			return vals, nil
		default:
			return nil, errorf(t.pos, `expected "," or "]" in the IN list opened at position %d, found %s`, open.pos, t.describe())
		}
	}
}
