package outbox

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
)

// The metadata column holds a JSON object of strings, keys sorted, as
// encoding/json writes it (readable in SQL, and any row an operator edits
// by hand still decodes). These two functions are the relay's hot path:
// plain strings are copied as they are, and anything else goes through
// encoding/json.
//
// JSON cannot carry bytes that are not UTF-8 (encoding/json replaces them
// with U+FFFD, and two distinct ids would become one), yet an Arc id can
// hold them: a lone surrogate's WTF-8 bytes, or invalid UTF-8 as it came.
// A pair whose key or value is not valid UTF-8 is stored base64-encoded
// (standard alphabet, padded) under a reserved key:
//
//	"arcmill_outbox_b64:" + key            when only the value is not UTF-8
//	"arcmill_outbox_b64k:" + base64(key)   when the key is not
//
// Keys starting with "arcmill_outbox_" never reach the column otherwise
// (Write drops them from a message's metadata), so these cannot be
// mistaken for a caller's own keys, and rows written before them decode
// as before.

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
		v := md[k]
		validK, validV := utf8.ValidString(k), utf8.ValidString(v)
		if !validK || !validV {
			if validK {
				k = metadataB64 + k
			} else {
				k = metadataB64Key + base64.StdEncoding.EncodeToString([]byte(k))
			}
			v = base64.StdEncoding.EncodeToString([]byte(v))
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, v)
	}
	return append(b, '}')
}

// The reserved key prefixes of base64-encoded metadata (see above).
// metadataB64 is not a prefix of metadataB64Key: "b64:" and "b64k".
const (
	metadataB64    = "arcmill_outbox_b64:"
	metadataB64Key = "arcmill_outbox_b64k:"
)

// decodeJSON reads any JSON object of strings, through encoding/json.
func decodeJSON(data []byte) (message.Metadata, error) {
	md := message.Metadata{}
	if err := json.Unmarshal(data, &md); err != nil {
		return nil, err
	}
	if md == nil {
		md = message.Metadata{} // JSON null
	}
	return md, nil
}

// b64Marker starts every reserved base64 key, quoted, in the column.
var b64Marker = []byte(`"arcmill_outbox_b64`)

// decodeB64 replaces md's base64-encoded pairs with what they encode.
func decodeB64(md map[string]string) error {
	var encoded []string
	for k := range md {
		if strings.HasPrefix(k, metadataB64) || strings.HasPrefix(k, metadataB64Key) {
			encoded = append(encoded, k)
		}
	}
	for _, k := range encoded {
		v := md[k]
		var key string
		switch {
		case strings.HasPrefix(k, metadataB64Key):
			raw, err := base64.StdEncoding.DecodeString(k[len(metadataB64Key):])
			if err != nil {
				return fmt.Errorf("metadata key %q: %w", k, err)
			}
			key = string(raw)
		default:
			key = k[len(metadataB64):]
		}
		raw, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return fmt.Errorf("metadata value of %q: %w", k, err)
		}
		delete(md, k)
		md[key] = string(raw)
	}
	return nil
}

// appendJSONString appends s, valid UTF-8, as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	if plain(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s) // escapes
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
	md, ok := decodeCompact(data)
	if !ok {
		var err error
		if md, err = decodeJSON(data); err != nil {
			return nil, err
		}
	}
	if bytes.Contains(data, b64Marker) {
		if err := decodeB64(md); err != nil {
			return nil, err
		}
	}
	return md, nil
}

func decodeCompact(data []byte) (message.Metadata, bool) {
	if len(data) < 2 || data[0] != '{' {
		return nil, false
	}
	// One string for the whole column; keys and values are slices of it:
	// one allocation per row rather than two per pair.
	text := string(data)
	// Sized to the pairs (each has one `":"` unless a value holds it), so a
	// typical event's map is one small group, not a 16-slot table.
	md := make(message.Metadata, strings.Count(text, `":"`))
	i := 1
	if data[i] == '}' {
		return md, i+1 == len(data)
	}
	for {
		k, next, ok := compactString(text, i)
		if !ok || next >= len(text) || text[next] != ':' {
			return nil, false
		}
		v, end, ok := compactString(text, next+1)
		if !ok || end >= len(text) {
			return nil, false
		}
		md[k] = v
		switch text[end] {
		case ',':
			i = end + 1
		case '}':
			return md, end+1 == len(text)
		default:
			return nil, false
		}
	}
}

// compactString reads a JSON string at text[i] that holds no escape and
// valid UTF-8, returning it (a slice of text) and the index after its
// closing quote.
func compactString(text string, i int) (string, int, bool) {
	if i >= len(text) || text[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(text); j++ {
		switch c := text[j]; {
		case c == '"':
			s := text[i+1 : j]
			if !utf8.ValidString(s) {
				return "", 0, false
			}
			return s, j + 1, true
		case c == '\\' || c < 0x20:
			return "", 0, false
		}
	}
	return "", 0, false
}
