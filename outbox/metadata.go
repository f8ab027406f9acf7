package outbox

import (
	"encoding/json"
	"slices"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
)

// The metadata column holds a JSON object of strings, keys sorted, as
// encoding/json writes it (readable in SQL, and any row an operator edits
// by hand still decodes). These two functions are the relay's hot path:
// plain strings are copied as they are, and anything else goes through
// encoding/json.

// appendMetadata appends md as a JSON object with sorted keys.
func appendMetadata(b []byte, md message.Metadata) []byte {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, md[k])
	}
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	if plain(s) && utf8.ValidString(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s) // escapes, and replaces invalid UTF-8 as encoding/json does
	return append(b, q...)
}

// plain reports whether s needs no escaping inside a JSON string.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// decodeMetadata reads a JSON object of strings. The fast path takes the
// compact form appendMetadata writes; any other valid JSON (spaces,
// escapes) is read by encoding/json, and anything else is an error.
func decodeMetadata(data []byte) (message.Metadata, error) {
	if md, ok := decodeCompact(data); ok {
		return md, nil
	}
	md := message.Metadata{}
	if err := json.Unmarshal(data, &md); err != nil {
		return nil, err
	}
	if md == nil {
		md = message.Metadata{} // JSON null
	}
	return md, nil
}

func decodeCompact(data []byte) (message.Metadata, bool) {
	if len(data) < 2 || data[0] != '{' {
		return nil, false
	}
	md := make(message.Metadata, 16)
	i := 1
	if data[i] == '}' {
		return md, i+1 == len(data)
	}
	for {
		k, next, ok := compactString(data, i)
		if !ok || next >= len(data) || data[next] != ':' {
			return nil, false
		}
		v, end, ok := compactString(data, next+1)
		if !ok || end >= len(data) {
			return nil, false
		}
		md[k] = v
		switch data[end] {
		case ',':
			i = end + 1
		case '}':
			return md, end+1 == len(data)
		default:
			return nil, false
		}
	}
}

// compactString reads a JSON string at data[i] that holds no escape and
// valid UTF-8, returning it and the index after its closing quote.
func compactString(data []byte, i int) (string, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			s := data[i+1 : j]
			if !utf8.Valid(s) {
				return "", 0, false
			}
			return string(s), j + 1, true
		case c == '\\' || c < 0x20:
			return "", 0, false
		}
	}
	return "", 0, false
}
