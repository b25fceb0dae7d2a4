package query

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// tokenKind classifies a token.
type tokenKind int

const (
	tEOF tokenKind = iota
	tWord
	tString
	tOp
	tLParen
	tRParen
	tLBrack
	tRBrack
	tComma
)

// punctuation maps the one-byte tokens to their kinds ("=" is the one-byte operator).
var punctuation = [256]tokenKind{'(': tLParen, ')': tRParen, '[': tLBrack, ']': tRBrack, ',': tComma, '=': tOp}

// token is one lexical unit; pos is the 1-based byte offset of its first character.
type token struct {
	kind tokenKind
	text string // word text, unquoted string, or operator
	pos  int
}

// describe names the token for error messages.
func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of query"
	case tString:
		return fmt.Sprintf("string %q", t.text)
	case tWord:
		return fmt.Sprintf("%q", t.text)
	}
	return fmt.Sprintf("%q", t.text)
}

// Error is a syntax or meaning error in a query, with the 1-based byte offset it refers to.
type Error struct {
	Pos int
	Msg string
}

// Error returns the message with its position.
func (e *Error) Error() string { return fmt.Sprintf("query: at position %d: %s", e.Pos, e.Msg) }

func errorf(pos int, format string, args ...any) *Error {
	return &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// isDelim reports whether c ends a word.
func isDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '(', ')', '[', ']', ',', '=', '!', '<', '>', '"', '\'':
		return true
	}
	return false
}

// lex splits src into tokens, ending with tEOF.
func lex(src string) ([]token, error) {
	if !utf8.ValidString(src) {
		return nil, errorf(1, "query is not valid UTF-8")
	}
	var toks []token
	for i := 0; i < len(src); {
		c := src[i]
		pos := i + 1
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case punctuation[c] != tEOF:
			toks = append(toks, token{punctuation[c], src[i : i+1], pos})
			i++
		case c == '!' || c == '<' || c == '>':
			if i+1 < len(src) && src[i+1] == '=' {
				toks = append(toks, token{tOp, src[i : i+2], pos})
				i += 2
				break
			}
			if c == '!' {
				return nil, errorf(pos, `expected "!=", found "!" alone`)
			}
			toks = append(toks, token{tOp, string(c), pos})
			i++
		case c == '"' || c == '\'':
			s, n, err := unquote(src[i:], pos)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{tString, s, pos})
			i += n
		default:
			j := i
			for j < len(src) && !isDelim(src[j]) {
				j++
			}
			toks = append(toks, token{tWord, src[i:j], pos})
			i = j
		}
	}
	return append(toks, token{tEOF, "", len(src) + 1}), nil
}

// unquote reads a string quoted with s[0] (" or '); backslash escapes the next character. It returns the
// content and the number of bytes consumed.
func unquote(s string, pos int) (string, int, error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 == len(s) {
				return "", 0, errorf(pos+i, "expected a character after backslash, found end of query")
			}
			i++
			b.WriteByte(s[i])
		case q:
			return b.String(), i + 1, nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, errorf(pos, "expected closing %c for the string starting here", q)
}

// isPlainWord reports whether s can be written without quotes: it lexes as one word that is not a keyword.
func isPlainWord(s string) bool {
	if s == "" || keyword(s) != "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if isDelim(s[i]) {
			return false
		}
	}
	return true
}

// keyword returns the upper-case keyword s spells (case-insensitively), or "".
func keyword(s string) string {
	switch u := strings.ToUpper(s); u {
	case "AND", "OR", "NOT", "IN", "EXISTS":
		return u
	}
	return ""
}
