package arc

import (
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Marshal returns ev as Arc's wire JSON: what Node's JSON.stringify writes
// for the same event. Keys are type, payload, meta; meta's keys are written
// in the order they were read from the wire (Unmarshal, FromMessage), in
// the order Arc's createEvent / createChildEvent give them (NewEvent,
// NewChild), or else in the default order: id, timestamp, schemaVersion,
// correlationId, causationId, partitionKey, source, idempotencyKey,
// resource, resourceId, userId, organizationId, aggregate, then the other
// Extra keys sorted. Empty typed fields are omitted; the timestamp is
// YYYY-MM-DDTHH:mm:ss.sssZ; strings are escaped as JSON.stringify escapes
// them (no HTML escaping, U+2028 and U+2029 raw); payload and Extra bytes
// are copied untouched, whatever they hold. In meta.id, correlationId,
// causationId and idempotencyKey, invalid UTF-8 is written as it is, like
// payload bytes, and the WTF-8 bytes of a lone surrogate (as Unmarshal
// reads \ud800 into them) as the escape JSON.stringify writes (\ud800), so
// an id read from the wire goes back as it came; in other strings invalid
// UTF-8 becomes U+FFFD, as JSON.stringify has no way to write it.
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
	return m.appendJSON(nil), nil
}

// knownKeys are the typed fields' JSON keys, in Marshal's default order.
var knownKeys = [...]string{"id", "timestamp", "schemaVersion", "correlationId", "causationId",
	"partitionKey", "source", "idempotencyKey", "resource", "resourceId", "userId", "organizationId",
	"aggregate"}

// knownRank returns the index of name in knownKeys, or -1.
func knownRank(name []byte) int {
	switch string(name) {
	case "id":
		return 0
	case "timestamp":
		return 1
	case "schemaVersion":
		return 2
	case "correlationId":
		return 3
	case "causationId":
		return 4
	case "partitionKey":
		return 5
	case "source":
		return 6
	case "idempotencyKey":
		return 7
	case "resource":
		return 8
	case "resourceId":
		return 9
	case "userId":
		return 10
	case "organizationId":
		return 11
	case "aggregate":
		return 12
	}
	return -1
}

// defaultOrder reports whether keys are in Marshal's default order, so that
// no order need be kept for them.
func defaultOrder(keys []string) bool {
	prev, prevKey := -1, ""
	for _, k := range keys {
		r := knownRank([]byte(k))
		if r < 0 {
			r = len(knownKeys)
			if prev == r && k <= prevKey {
				return false
			}
		} else if r <= prev {
			return false
		}
		prev, prevKey = r, k
	}
	return true
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

// has reports whether key would be written: a set typed field, or an Extra
// entry.
func (m *Meta) has(key string) bool {
	if _, set := m.known(key); set {
		return true
	}
	_, ok := m.Extra[key]
	return ok
}

// appendMember appends ",key:value" (no comma first) for key, if m has it:
// the typed field when set, else the Extra bytes.
func (m *Meta) appendMember(b []byte, key string, first *bool) []byte {
	isKnown, set := m.known(key)
	var raw json.RawMessage
	if !set {
		var ok bool
		if raw, ok = m.Extra[key]; !ok {
			return b
		}
	}
	if !*first {
		b = append(b, ',')
	}
	*first = false
	if isKnown {
		b = append(b, '"')
		b = append(b, key...) // known keys need no escaping
		b = append(b, '"', ':')
	} else {
		b = appendString(b, key)
		b = append(b, ':')
	}
	if !set {
		return append(b, raw...)
	}
	switch key {
	case "id":
		return appendKeep(b, m.ID)
	case "correlationId":
		return appendKeep(b, m.CorrelationID)
	case "causationId":
		return appendKeep(b, m.CausationID)
	case "idempotencyKey":
		return appendKeep(b, m.IdempotencyKey)
	case "timestamp":
		b = append(b, '"')
		b = appendTimestamp(b, m.Timestamp)
		return append(b, '"')
	case "schemaVersion":
		return strconv.AppendInt(b, int64(m.SchemaVersion), 10)
	case "aggregate":
		a := m.Aggregate
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
		return append(b, '}')
	}
	return appendString(b, *m.stringField(key))
}

// appendJSON writes meta in its order (see Marshal).
func (m Meta) appendJSON(b []byte) []byte {
	b = append(b, '{')
	first := true
	var done uint16 // known keys already written, by rank
	for _, k := range m.order {
		if r := knownRank([]byte(k)); r >= 0 {
			done |= 1 << r
		}
		b = m.appendMember(b, k, &first)
	}
	for r, k := range knownKeys {
		if done&(1<<r) == 0 {
			b = m.appendMember(b, k, &first)
		}
	}
	if len(m.Extra) > 0 {
		for _, k := range m.extraKeys() {
			if knownRank([]byte(k)) < 0 && !slices.Contains(m.order, k) {
				b = m.appendMember(b, k, &first)
			}
		}
	}
	return append(b, '}')
}

// keys returns the keys appendJSON writes, in its order.
func (m Meta) keys() []string {
	var out []string
	for _, k := range m.order {
		if m.has(k) {
			out = append(out, k)
		}
	}
	for _, k := range knownKeys {
		if m.has(k) && !slices.Contains(m.order, k) {
			out = append(out, k)
		}
	}
	for _, k := range m.extraKeys() {
		if knownRank([]byte(k)) < 0 && !slices.Contains(m.order, k) {
			out = append(out, k)
		}
	}
	return out
}

// extraKeys returns Extra's keys sorted.
func (m Meta) extraKeys() []string {
	keys := make([]string, 0, len(m.Extra))
	for k := range m.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string the way JSON.stringify writes
// it (see appendString), for code that writes other Arc JSON, such as the
// dead-letter envelope, with Arc's exact bytes.
func AppendJSONString(b []byte, s string) []byte { return appendString(b, s) }

// appendString appends s as a JSON string the way JSON.stringify writes it:
// only '"', '\\' and control characters are escaped (control characters as
// \b \f \n \r \t or lower-case \u00xx); invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte { return appendStr(b, s, false) }

// appendKeep is appendString for ids (isIDKey), which unquoteKeep reads:
// invalid UTF-8 bytes are written as they are, as Marshal writes payload
// bytes, except the WTF-8 bytes of a lone surrogate, written as
// JSON.stringify writes a lone surrogate (\ud800, lower-case), so an id
// goes back on the wire as it came. A high and a low surrogate in a row
// (CESU-8, as only raw bytes give them) are written raw, as they came: as
// an escape pair they would read back as the character they encode.
func appendKeep(b []byte, s string) []byte { return appendStr(b, s, true) }

func appendStr(b []byte, s string, keep bool) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) {
			if plain8(load8(s[i:])) {
				i += 8 // the common case, eight bytes at a time: nothing to escape or decode
				continue
			}
		} else if len(s) >= 8 && plain8(load8(s[len(s)-8:])) {
			break // the tail, in the last eight bytes (those before i were plain or are written)
		}
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
			if !keep {
				b = append(b, s[start:i]...)
				b = append(b, "\ufffd"...)
				i++
				start = i
				continue
			}
			if sr := surrogateAt(s, i); sr >= 0 {
				if sr < 0xdc00 && surrogateAt(s, i+3) >= 0xdc00 {
					i += 6 // a CESU-8 pair: raw, as it came
					continue
				}
				b = append(b, s[start:i]...)
				b = append(b, '\\', 'u', hexDigits[sr>>12], hexDigits[sr>>8&0xf], hexDigits[sr>>4&0xf], hexDigits[sr&0xf])
				i += 3
				start = i
				continue
			}
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Bytes repeated in each of a word's eight bytes, for plain8.
const (
	lows  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plain8 reports whether the eight bytes of w are all ASCII that
// JSON.stringify writes as it is: none from 0x80, none below 0x20, none
// '"' or '\\'. Once w's bytes are known to be below 0x80, subtracting
// n from each borrows into a byte's high bit exactly where that byte is
// below n (Hacker's Delight, "find a zero byte").
func plain8(w uint64) bool {
	quote, backslash := w^('"'*lows), w^('\\'*lows) // zero bytes where w has them
	return (w|(w-0x20*lows)|(quote-lows)|(backslash-lows))&highs == 0
}

// load8 returns the first eight bytes of s as a little-endian word (one
// load and one bounds check: the compiler combines them).
func load8(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}
