package arc

import (
	"slices"
	"strconv"
	"unicode/utf8"
)

// Marshal returns ev as Arc's wire JSON, byte for byte what Node's
// JSON.stringify writes for the same event: keys type, payload, meta; meta's
// known keys in a fixed order (id, timestamp, schemaVersion, correlationId,
// causationId, partitionKey, source, idempotencyKey, resource, resourceId,
// userId, organizationId, aggregate), then Extra in key order; empty fields
// omitted; the timestamp as YYYY-MM-DDTHH:mm:ss.sssZ; strings escaped as
// JSON.stringify escapes them (no HTML escaping, U+2028 and U+2029 raw);
// payload and Extra bytes copied untouched.
//
// It fails, wrapping ErrInvalidEvent, when the result would not be an event
// Arc reads: an empty type or id, or a payload or Extra value that is not
// JSON.
func Marshal(ev Event) ([]byte, error) {
	return ev.AppendJSON(make([]byte, 0, 128+len(ev.Payload)))
}

// AppendJSON appends Marshal's result to b.
func (ev Event) AppendJSON(b []byte) ([]byte, error) {
	if err := ev.checkEncodable(); err != nil {
		return b, err
	}
	b = append(b, `{"type":`...)
	b = appendString(b, ev.Type)
	if len(ev.Payload) > 0 {
		b = append(b, `,"payload":`...)
		b = append(b, ev.Payload...)
	}
	b = append(b, `,"meta":`...)
	b = ev.Meta.appendJSON(b)
	return append(b, '}'), nil
}

// MarshalJSON implements json.Marshaler with Marshal. Note that
// encoding/json then escapes <, > and & in the result, as it does for every
// value; use Marshal for Arc's exact bytes.
func (ev Event) MarshalJSON() ([]byte, error) { return Marshal(ev) }

// MarshalJSON implements json.Marshaler: meta as it appears inside an event.
func (m Meta) MarshalJSON() ([]byte, error) {
	if err := m.checkEncodable(); err != nil {
		return nil, err
	}
	if err := (Event{Meta: m}).checkTimestampKeys(); err != nil {
		return nil, err
	}
	return m.appendJSON(nil), nil
}

// known returns whether key names a typed field, and whether that field is
// set (and so written, which hides an Extra entry of the same name).
func (m *Meta) known(key string) (isKnown, set bool) {
	switch key {
	case "id":
		return true, m.ID != ""
	case "timestamp":
		return true, !m.Timestamp.IsZero()
	case "schemaVersion":
		return true, m.SchemaVersion != 0
	case "aggregate":
		return true, m.Aggregate != nil
	}
	if p := m.stringField(key); p != nil {
		return true, *p != ""
	}
	return false, false
}

// stringField returns the optional string field named by a JSON key, or nil.
func (m *Meta) stringField(key string) *string { return m.stringFieldBytes([]byte(key)) }

func (m Meta) appendJSON(b []byte) []byte {
	b = append(b, '{')
	first := true
	key := func(k string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
	}
	str := func(k, v string) {
		if v != "" {
			key(k)
			b = appendString(b, v)
		}
	}
	str("id", m.ID)
	if !m.Timestamp.IsZero() {
		key("timestamp")
		b = append(b, '"')
		b = appendTimestamp(b, m.Timestamp)
		b = append(b, '"')
	}
	if m.SchemaVersion != 0 {
		key("schemaVersion")
		b = strconv.AppendInt(b, int64(m.SchemaVersion), 10)
	}
	str("correlationId", m.CorrelationID)
	str("causationId", m.CausationID)
	str("partitionKey", m.PartitionKey)
	str("source", m.Source)
	str("idempotencyKey", m.IdempotencyKey)
	str("resource", m.Resource)
	str("resourceId", m.ResourceID)
	str("userId", m.UserID)
	str("organizationId", m.OrganizationID)
	if a := m.Aggregate; a != nil {
		key("aggregate")
		b = append(b, '{')
		if a.Type != "" {
			b = append(b, `"type":`...)
			b = appendString(b, a.Type)
		}
		if a.ID != "" {
			if a.Type != "" {
				b = append(b, ',')
			}
			b = append(b, `"id":`...)
			b = appendString(b, a.ID)
		}
		b = append(b, '}')
	}
	if len(m.Extra) > 0 {
		for _, k := range m.extraKeys() {
			if isKnown, set := m.known(k); isKnown && set {
				continue // the typed field wins
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendString(b, k)
			b = append(b, ':')
			b = append(b, m.Extra[k]...)
		}
	}
	return append(b, '}')
}

// extraKeys returns Extra's keys in the stable order they are written.
func (m Meta) extraKeys() []string {
	keys := make([]string, 0, len(m.Extra))
	for k := range m.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string the way JSON.stringify writes it:
// only '"', '\\' and control characters are escaped (control characters as
// \b \f \n \r \t or lower-case \u00xx); invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
