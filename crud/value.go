package crud

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/arcmill/arcmill/arc"
)

// Value is a JSON value of the request scope as Arc's hook sees it: absent
// (the zero Value, JavaScript's undefined), null, or any JSON value. Arc
// writes payload.userId and organizationId as the raw value, not a string,
// and JSON.stringify tells undefined (key dropped) from null from "", so a
// Go string cannot say everything Arc can. Values are comparable with ==.
type Value struct {
	// raw is the value's JSON text; "" is absent. A string rather than
	// json.RawMessage keeps Value, and so Scope, comparable.
	raw string
	// js is String(value), computed once: every event of the request
	// writes it as meta.userId.
	js string
}

// Absent is the zero Value: the key is left out, as JSON.stringify drops
// undefined.
var Absent = Value{}

// String returns s as a JSON string, "" included (which Arc writes as "").
func String(s string) Value {
	return Value{raw: string(arc.AppendJSONString(nil, s)), js: s}
}

// StringOrAbsent returns String(s), or Absent when s is empty: the usual
// reading of an optional header or claim.
func StringOrAbsent(s string) Value {
	if s == "" {
		return Absent
	}
	return String(s)
}

// Int returns n as a JSON number (a numeric user id, as SQL-backed Arc
// hosts have). Beyond ±2^53 JavaScript would already have rounded it.
func Int(n int64) Value {
	s := strconv.FormatInt(n, 10)
	return Value{raw: s, js: s}
}

// Null returns JSON null (Arc writes "userId":null when user.id is
// undefined and user._id is null).
func Null() Value { return Value{raw: "null", js: "null"} }

// RawValue returns the JSON value raw, any kind (a user id as the
// authentication layer decoded it). A string or a number is rewritten as
// JSON.stringify would write it ("1.0" as 1, "\u0041" as "A"); an object
// or an array is kept as it is. An empty raw is Absent; raw that is not
// one JSON value is an error wrapping ErrInvalidChange.
func RawValue(raw json.RawMessage) (Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return Absent, nil
	}
	if !json.Valid(raw) {
		return Absent, fmt.Errorf("%w: scope value %q is not JSON", ErrInvalidChange, raw)
	}
	switch raw[0] {
	case '"':
		var s string
		_ = json.Unmarshal(raw, &s) // valid, checked above
		return String(s), nil
	case '{', '[', 't', 'f', 'n':
		return Value{raw: string(raw), js: jsString(raw, false)}, nil
	default:
		n := numberString(raw)
		return Value{raw: n, js: n}, nil
	}
}

// IsAbsent reports whether v is Absent.
func (v Value) IsAbsent() bool { return v.raw == "" }

// IsNull reports whether v is JSON null.
func (v Value) IsNull() bool { return v.raw == "null" }

// JSON returns v's JSON text, nil when v is Absent.
func (v Value) JSON() json.RawMessage {
	if v.raw == "" {
		return nil
	}
	return json.RawMessage(v.raw)
}

// GoString shows v's JSON text, "<absent>" for Absent, in %#v and test
// failures.
func (v Value) GoString() string {
	if v.raw == "" {
		return "<absent>"
	}
	return v.raw
}

// JSString returns JavaScript's String(v) for the JSON value v: a string
// as it is, a number as JavaScript writes it, true/false, "null", an
// object "[object Object]", an array its elements joined by commas. It is
// how Arc writes meta.userId from the raw user id. Absent gives
// "undefined".
func (v Value) JSString() string {
	if v.raw == "" {
		return "undefined"
	}
	return v.js
}

// RouteUserID is the user id Arc's CRUD routes hand their hooks:
// createRequestContext replaces the user's id and _id with
// String(user._id ?? user.id), or undefined when that value is falsy (0,
// "", false, null, undefined). So an Arc route writes a numeric user id
// 42 as "42" in payload.userId, and no userId for 0. Pass it the user's
// _id, else id, as Arc's user object holds it; Middleware's Identify
// returns it for Arc's route bytes.
func RouteUserID(id Value) Value {
	switch id.raw {
	case "", "null", "false", `""`:
		return Absent
	}
	if f, err := strconv.ParseFloat(id.raw, 64); err == nil && f == 0 {
		return Absent // 0, -0, 0.0: falsy; NaN cannot come from JSON
	}
	return String(id.JSString())
}

// jsString is String(x) for a JSON value. Inside an array (Array's
// join), null becomes "".
func jsString(raw json.RawMessage, inArray bool) string {
	switch raw[0] {
	case '"':
		var s string
		_ = json.Unmarshal(raw, &s) // valid by construction
		return s
	case 'n':
		if inArray {
			return ""
		}
		return "null"
	case 't', 'f':
		return string(raw)
	case '{':
		return "[object Object]"
	case '[':
		var elems []json.RawMessage
		_ = json.Unmarshal(raw, &elems)
		parts := make([]string, len(elems))
		for i, e := range elems {
			parts[i] = jsString(e, true)
		}
		return strings.Join(parts, ",")
	default:
		return numberString(raw)
	}
}
