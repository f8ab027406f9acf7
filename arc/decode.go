package arc

import (
	"encoding/json"
	"slices"
	"strconv"
)

// Unmarshal reads Arc's wire JSON into ev, checking only what Arc's
// readers check: a JSON object with a non-empty string "type" and a "meta"
// object whose "id" is a non-empty string.
//
// Everything else is kept as it arrived: the payload's bytes (any JSON value,
// any "timestamp" string in it) untouched; unknown meta keys in Meta.Extra;
// and, also in Extra as raw JSON, a known meta key whose value the typed
// field cannot hold: null, "", a value of another JSON type, a string with a
// lone surrogate (\ud800), and a meta.timestamp that is not an RFC 3339 date
// string. Meta keys keep their wire order for writing back. Unknown
// top-level keys are ignored, as Arc ignores them. With duplicate keys the
// last value wins at the first key's position, as with JSON.parse.
//
// meta.id, correlationId, causationId and idempotencyKey keep every
// string they can hold, so that distinct ids never collide: invalid UTF-8
// in them is not replaced, and a lone surrogate escape (\ud800) is kept in
// the Go string as its WTF-8 bytes (see Meta.ID); Marshal writes both back
// as they came.
//
// The default Limits apply: nesting deeper than DefaultMaxDepth or a type
// longer than DefaultMaxTypeBytes makes the event malformed (see Limits).
//
// Errors are *DecodeError values that wrap ErrMalformedEvent and name the
// field at fault. ev is written only on success. Unmarshal never panics,
// whatever the input.
func Unmarshal(data []byte, ev *Event) error { return Limits{}.Unmarshal(data, ev) }

// Unmarshal is the package's Unmarshal under these limits.
func (l Limits) Unmarshal(data []byte, ev *Event) error {
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		if err := validJSON(data); err != nil {
			return malformed("", "not JSON", err)
		}
		return malformed("", "not a JSON object", nil)
	}
	var (
		out     Event
		hasType bool
		hasMeta bool
	)
	it := newObjectIter(data, i)
	it.maxDepth = l.below(1)
	for {
		name, vs, ve, ok, err := it.next()
		if err != nil {
			return malformed("", jsonProblem(err), err)
		}
		if !ok {
			break
		}
		v := data[vs:ve]
		switch string(name) {
		case "type":
			if v[0] != '"' {
				return malformed("type", "must be a string", nil)
			}
			out.Type = unquoteRaw(v)
			if err := l.checkType("type", out.Type); err != nil {
				return err
			}
			hasType = true
		case "payload":
			out.Payload = append(json.RawMessage(nil), v...)
		case "meta":
			if v[0] != '{' {
				return malformed("meta", "must be a JSON object", nil)
			}
			out.Meta = Meta{}
			if err := out.Meta.decode(data, vs); err != nil {
				return err
			}
			hasMeta = true
		}
	}
	if end := skipWS(data, it.i); end != len(data) {
		return malformed("", "not JSON", &syntaxError{"unexpected data after value", end})
	}
	switch {
	case !hasType || out.Type == "":
		return malformed("type", "must be a non-empty string", nil)
	case !hasMeta:
		return malformed("meta", "is missing", nil)
	case out.Meta.ID == "":
		return malformed("meta.id", "must be a non-empty string", nil)
	}
	*ev = out
	return nil
}

// UnmarshalJSON implements json.Unmarshaler with Unmarshal; JSON null
// leaves ev unchanged, as encoding/json does for values.
func (ev *Event) UnmarshalJSON(data []byte) error {
	if isJSONNull(data) {
		return nil
	}
	return Unmarshal(data, ev)
}

func isJSONNull(data []byte) bool {
	i := skipWS(data, 0)
	return len(data)-i >= 4 && string(data[i:i+4]) == "null" && skipWS(data, i+4) == len(data)
}

// UnmarshalJSON implements json.Unmarshaler: meta as it appears inside an
// event (an id is not required here).
func (m *Meta) UnmarshalJSON(data []byte) error {
	if isJSONNull(data) {
		return nil
	}
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return malformed("meta", "must be a JSON object", nil)
	}
	var out Meta
	if err := out.decode(data, i); err != nil {
		return err
	}
	if err := validJSON(data); err != nil {
		return malformed("meta", "not JSON", err)
	}
	*m = out
	return nil
}

// unquoteRaw unquotes a string token that scanValue has validated.
func unquoteRaw(v []byte) string {
	_, plain, _ := scanString(v, 0)
	return unquote(v, plain)
}

// decode reads the meta object that starts at data[i], noting the key order
// when it is not the one Marshal writes by default.
func (m *Meta) decode(data []byte, i int) error {
	var buf [24]string
	keys := buf[:0]
	it := newObjectIter(data, i)
	for {
		name, vs, ve, ok, err := it.next()
		if err != nil {
			return malformed("meta", "not JSON", err)
		}
		if !ok {
			break
		}
		if err := m.decodeField(name, data[vs:ve]); err != nil {
			return err
		}
		keys = appendKey(keys, name)
	}
	if !defaultOrder(keys) {
		m.order = slices.Clone(keys)
	}
	return nil
}

// appendKey adds name to keys unless it is there already (a duplicate
// keeps its first position, as in JSON.parse).
func appendKey(keys []string, name []byte) []string {
	for _, k := range keys {
		if k == string(name) {
			return keys
		}
	}
	if r := knownRank(name); r >= 0 {
		return append(keys, knownKeys[r]) // no allocation for known keys
	}
	return append(keys, string(name))
}

// decodeField reads one meta member. A known key whose value the typed field
// cannot hold (null, "", a type Arc does not define, a string with a lone
// surrogate, schemaVersion 0, a timestamp that is not an RFC 3339 string)
// goes to Extra as raw JSON, so it is written back as it came.
func (m *Meta) decodeField(name []byte, v []byte) error {
	switch string(name) {
	case "id":
		if v[0] != '"' {
			if v[0] == 'n' {
				m.ID = ""
				return nil
			}
			return malformed("meta.id", "must be a non-empty string", nil)
		}
		m.ID = unquoteKeep(v)
		return nil
	case "timestamp":
		if v[0] == '"' {
			if s, ok := decodeString(v); ok {
				if t, ok := parseRFC3339(s, true); ok {
					m.Timestamp = t
					m.dropExtra(name)
					return nil
				}
			}
		}
	case "schemaVersion":
		if n, ok := parseInt(v); ok && n != 0 {
			m.SchemaVersion = n
			m.dropExtra(name)
			return nil
		}
	case "aggregate":
		if a, ok := decodeAggregate(v); ok {
			m.Aggregate = a
			m.dropExtra(name)
			return nil
		}
	default:
		if p := m.stringFieldBytes(name); p != nil && v[0] == '"' && len(v) > 2 {
			if isIDKey(name) {
				// An id keeps every string it can be (see unquoteKeep).
				*p = unquoteKeep(v)
				m.dropExtra(name)
				return nil
			}
			if s, ok := decodeString(v); ok {
				*p = s
				m.dropExtra(name)
				return nil
			}
		}
	}
	// Unknown key, or a known key with a value the typed field cannot hold:
	// keep its bytes.
	key := string(name)
	if m.Extra == nil {
		m.Extra = make(map[string]json.RawMessage)
	}
	m.Extra[key] = append(json.RawMessage(nil), v...)
	m.clear(key) // a later value replaces an earlier one, as in JSON.parse
	return nil
}

// isIDKey reports whether a meta key holds an identifier: meta.id, and
// the ids and key that point at other events or deduplicate them
// (correlationId, causationId, idempotencyKey). Their strings are read
// with unquoteKeep and written with appendKeep, so that two different
// strings on the wire are two different Go strings, and each goes back as
// it came: ids that collide would merge chains, deduplicate distinct
// events, or, as Watermill message UUIDs, be taken for one message.
func isIDKey(name []byte) bool {
	switch string(name) {
	case "id", "correlationId", "causationId", "idempotencyKey":
		return true
	}
	return false
}

// decodeString unquotes a validated JSON string token; ok is false when it
// holds a lone surrogate escape, which a Go string cannot carry (it would
// become U+FFFD).
func decodeString(v []byte) (string, bool) {
	_, plain, _ := scanString(v, 0)
	if !plain && hasLoneSurrogate(v) {
		return "", false
	}
	return unquote(v, plain), true
}

// hasLoneSurrogate reports whether the JSON string token v has a \uD800-
// \uDFFF escape that is not half of a high-low pair.
func hasLoneSurrogate(v []byte) bool {
	for i := 0; i < len(v); i++ {
		if v[i] != '\\' {
			continue
		}
		i++
		if i >= len(v) || v[i] != 'u' {
			continue
		}
		c := hex4(v[i+1:])
		i += 4
		switch {
		case c >= 0xdc00 && c <= 0xdfff:
			return true // a low half with no high half before it
		case c >= 0xd800 && c <= 0xdbff:
			if i+6 >= len(v) || v[i+1] != '\\' || v[i+2] != 'u' {
				return true
			}
			if lo := hex4(v[i+3:]); lo < 0xdc00 || lo > 0xdfff {
				return true
			}
			i += 6
		}
	}
	return false
}

// hex4 reads four hex digits that scanString has validated.
func hex4(b []byte) int {
	n := 0
	for _, c := range b[:4] {
		n <<= 4
		switch {
		case c <= '9':
			n |= int(c - '0')
		case c <= 'F':
			n |= int(c-'A') + 10
		default:
			n |= int(c-'a') + 10
		}
	}
	return n
}

// stringFieldBytes is stringField for a key held as bytes, without
// allocating a string for it.
func (m *Meta) stringFieldBytes(name []byte) *string {
	switch string(name) {
	case "correlationId":
		return &m.CorrelationID
	case "causationId":
		return &m.CausationID
	case "partitionKey":
		return &m.PartitionKey
	case "source":
		return &m.Source
	case "idempotencyKey":
		return &m.IdempotencyKey
	case "resource":
		return &m.Resource
	case "resourceId":
		return &m.ResourceID
	case "userId":
		return &m.UserID
	case "organizationId":
		return &m.OrganizationID
	}
	return nil
}

// parseInt reads a JSON integer that fits in an int.
func parseInt(v []byte) (int, bool) {
	for _, c := range v {
		if c == '.' || c == 'e' || c == 'E' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(v), 10, strconv.IntSize)
	return int(n), err == nil
}

func (m *Meta) dropExtra(name []byte) {
	if m.Extra != nil {
		delete(m.Extra, string(name))
		if len(m.Extra) == 0 {
			m.Extra = nil
		}
	}
}

// decodeAggregate reads {"type": string, "id": string}; ok is false for any
// other shape, which the caller keeps in Extra.
func decodeAggregate(v []byte) (*Aggregate, bool) {
	if v[0] != '{' {
		return nil, false
	}
	a := &Aggregate{}
	it := newObjectIter(v, 0)
	for {
		name, vs, ve, ok, err := it.next()
		if err != nil {
			return nil, false
		}
		if !ok {
			return a, true
		}
		f := v[vs:ve]
		var dst *string
		switch string(name) {
		case "type":
			dst = &a.Type
		case "id":
			dst = &a.ID
		default:
			return nil, false
		}
		// "" and null: the typed field cannot tell them from absent.
		if f[0] != '"' || len(f) == 2 {
			return nil, false
		}
		s, ok := decodeString(f)
		if !ok {
			return nil, false
		}
		*dst = s
	}
}
