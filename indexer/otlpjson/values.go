package otlpjson

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/valyala/fastjson"
)

// decodeList decodes a JSON array (or null) with one element decoder; element paths get an [i] suffix.
func decodeList[T any](v *fastjson.Value, elem func(*fastjson.Value) (T, error)) ([]T, error) {
	if v.Type() == fastjson.TypeNull {
		return nil, nil
	}
	items, err := v.Array()
	if err != nil {
		return nil, &Error{Msg: "expected an array, got " + v.Type().String()}
	}
	out := make([]T, 0, len(items))
	for i, item := range items {
		e, err := elem(item)
		if err != nil {
			return nil, atIndex(err, i)
		}
		out = append(out, e)
	}
	return out, nil
}

// fields decodes the members of a JSON object in order with field, stopping at the first error, which gets the
// failing member's name prefixed to its path. Unknown members are for field to ignore. The key is only valid
// during the call.
func fields(v *fastjson.Value, field func(k []byte, v *fastjson.Value) error) error {
	obj, err := object(v)
	if err != nil {
		return err
	}
	obj.Visit(func(k []byte, v *fastjson.Value) {
		if err == nil {
			err = at(field(k, v), k)
		}
	})
	return err
}

// at prefixes the path of a decode error with a field name. Paths are built only on failure, so decoding valid
// input concatenates no strings.
func at(err error, field []byte) error {
	var e *Error
	if err != nil && errors.As(err, &e) {
		e.Path = "." + string(field) + e.Path
	}
	return err
}

// atIndex prefixes the path of a decode error with a list index.
func atIndex(err error, i int) error {
	var e *Error
	if errors.As(err, &e) {
		e.Path = "[" + strconv.Itoa(i) + "]" + e.Path
	}
	return err
}

func object(v *fastjson.Value) (*fastjson.Object, error) {
	obj, err := v.Object()
	if err != nil {
		return nil, &Error{Msg: "expected an object, got " + v.Type().String()}
	}
	return obj, nil
}

func str(v *fastjson.Value) (string, error) {
	if v.Type() == fastjson.TypeNull {
		return "", nil
	}
	b, err := v.StringBytes()
	if err != nil {
		return "", &Error{Msg: "expected a string, got " + v.Type().String()}
	}
	return string(b), nil
}

func boolOf(v *fastjson.Value) (bool, error) {
	switch v.Type() {
	case fastjson.TypeTrue:
		return true, nil
	case fastjson.TypeFalse, fastjson.TypeNull:
		return false, nil
	}
	return false, &Error{Msg: "expected a boolean, got " + v.Type().String()}
}

// id decodes a hex trace or span id. Invalid hex yields a one-byte id: no id has that length, so the span carrying
// it is rejected later on its own instead of failing the whole request.
func id(v *fastjson.Value) ([]byte, error) {
	s, err := str(v)
	if err != nil || s == "" {
		return nil, err
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return []byte{0}, nil
	}
	return b, nil
}

func bytesOf(v *fastjson.Value) ([]byte, error) {
	s, err := str(v)
	if err != nil {
		return nil, err
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, &Error{Msg: "invalid base64"}
}

// numberText returns the text of a JSON number, or of a string holding one (the protobuf JSON mapping allows both
// for 64-bit integers).
func numberText(v *fastjson.Value, what string) (string, bool, error) {
	switch v.Type() {
	case fastjson.TypeNumber:
		return v.String(), true, nil
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return string(b), false, nil
	case fastjson.TypeNull:
		return "0", true, nil
	}
	return "", false, &Error{Msg: "expected " + what + ", got " + v.Type().String()}
}

func uint64Of(v *fastjson.Value) (uint64, error) {
	s, _, err := numberText(v, "an unsigned integer")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, &Error{Msg: fmt.Sprintf("invalid unsigned integer %q", s)}
	}
	return n, nil
}

func uint32Of(v *fastjson.Value) (uint32, error) {
	s, _, err := numberText(v, "an unsigned integer")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, &Error{Msg: fmt.Sprintf("invalid 32-bit unsigned integer %q", s)}
	}
	return uint32(n), nil
}

func int64Of(v *fastjson.Value) (int64, error) {
	s, _, err := numberText(v, "an integer")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, &Error{Msg: fmt.Sprintf("invalid integer %q", s)}
	}
	return n, nil
}

func float64Of(v *fastjson.Value) (float64, error) {
	s, isNumber, err := numberText(v, "a number")
	if err != nil {
		return 0, err
	}
	if !isNumber {
		switch s {
		case "NaN":
			return math.NaN(), nil
		case "Infinity":
			return math.Inf(1), nil
		case "-Infinity":
			return math.Inf(-1), nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, &Error{Msg: fmt.Sprintf("invalid number %q", s)}
	}
	return f, nil
}

// enum decodes an enum given as an integer (the OTLP/JSON rule) or by its protobuf name.
func enum(v *fastjson.Value, names map[string]int32) (int32, error) {
	if v.Type() == fastjson.TypeString {
		b, _ := v.StringBytes()
		if n, ok := names[string(b)]; ok {
			return n, nil
		}
		if n, err := strconv.ParseInt(string(b), 10, 32); err == nil {
			return int32(n), nil
		}
		return 0, &Error{Msg: fmt.Sprintf("unknown enum value %q", strings.TrimSpace(string(b)))}
	}
	if v.Type() == fastjson.TypeNull {
		return 0, nil
	}
	n, err := v.Int()
	if err != nil || n < math.MinInt32 || n > math.MaxInt32 {
		return 0, &Error{Msg: "expected an enum integer, got " + v.String()}
	}
	return int32(n), nil
}
