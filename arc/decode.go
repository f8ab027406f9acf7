package arc

import (
	"encoding/json"
	"strconv"
	"time"
)

// Unmarshal reads Arc's wire JSON into ev, checking what Arc's readers
// check: a JSON object with a non-empty string "type" and a "meta" object
// whose "id" is a non-empty string. It also refuses a meta.timestamp that is
// neither a date string (see ParseTimestamp) nor a number of epoch
// milliseconds, since Arc would hand its handlers an Invalid Date.
//
// Everything else is kept: the payload's bytes (any JSON value) untouched,
// unknown meta keys in Meta.Extra, and JSON null is read as absent for every
// optional field. Unknown top-level keys are ignored, as Arc ignores them.
// With duplicate keys the last one wins, as with JSON.parse.
//
// Errors are *DecodeError values that wrap ErrMalformedEvent and name the
// field at fault. ev is written only on success. Unmarshal never panics,
// whatever the input.
func Unmarshal(data []byte, ev *Event) error {
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
	for {
		name, vs, ve, ok, err := it.next()
		if err != nil {
			return malformed("", "not JSON", err)
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
	if err := out.checkTimestampKeys(); err != nil {
		return malformed("", "a \"timestamp\" key Arc would misread", err)
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

// decode reads the meta object that starts at data[i].
func (m *Meta) decode(data []byte, i int) error {
	it := newObjectIter(data, i)
	for {
		name, vs, ve, ok, err := it.next()
		if err != nil {
			return malformed("meta", "not JSON", err)
		}
		if !ok {
			return nil
		}
		if err := m.decodeField(name, data[vs:ve]); err != nil {
			return err
		}
	}
}

// decodeField reads one meta member. A known key whose value the typed field
// cannot hold (a type Arc does not define, an empty string, schemaVersion 0)
// goes to Extra, so it survives a round trip.
func (m *Meta) decodeField(name []byte, v []byte) error {
	isNull := v[0] == 'n'
	switch string(name) {
	case "id":
		if v[0] != '"' {
			if isNull {
				m.ID = ""
				return nil
			}
			return malformed("meta.id", "must be a non-empty string", nil)
		}
		m.ID = unquoteRaw(v)
		return nil
	case "timestamp":
		var err error
		switch {
		case isNull:
			m.Timestamp = time.Time{}
		case v[0] == '"':
			m.Timestamp, err = ParseTimestamp(unquoteRaw(v))
		case v[0] == '-' || isDigit(v[0]):
			m.Timestamp, err = timestampFromMillis(v)
		default:
			return malformed("meta.timestamp", "must be a date string or epoch milliseconds", nil)
		}
		if err != nil {
			return malformed("meta.timestamp", "not a date", err)
		}
		return nil
	case "schemaVersion":
		if isNull {
			m.SchemaVersion = 0
			m.dropExtra(name)
			return nil
		}
		if n, ok := parseInt(v); ok && n != 0 {
			m.SchemaVersion = n
			m.dropExtra(name)
			return nil
		}
	case "aggregate":
		if isNull {
			m.Aggregate = nil
			m.dropExtra(name)
			return nil
		}
		if a, ok := decodeAggregate(v); ok {
			m.Aggregate = a
			m.dropExtra(name)
			return nil
		}
	default:
		if p := m.stringFieldBytes(name); p != nil {
			switch {
			case isNull:
				*p = ""
				m.dropExtra(name)
				return nil
			case v[0] == '"' && len(v) > 2:
				*p = unquoteRaw(v)
				m.dropExtra(name)
				return nil
			}
		}
	}
	// Unknown key, or a known key with a value of another type: keep it.
	key := string(name)
	if m.Extra == nil {
		m.Extra = make(map[string]json.RawMessage)
	}
	m.Extra[key] = append(json.RawMessage(nil), v...)
	if p := m.stringField(key); p != nil {
		*p = "" // a later value replaces an earlier one, as in JSON.parse
	}
	switch key {
	case "schemaVersion":
		m.SchemaVersion = 0
	case "aggregate":
		m.Aggregate = nil
	}
	return nil
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
		switch {
		case len(f) == 2: // "": the typed field cannot tell it from absent
			return nil, false
		case f[0] == '"':
			*dst = unquoteRaw(f)
		case f[0] == 'n':
			*dst = ""
		default:
			return nil, false
		}
	}
}
