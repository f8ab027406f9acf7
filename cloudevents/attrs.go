package cloudevents

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"slices"
	"strings"
	"unicode/utf8"
)

// IsJSONMediaType reports whether a datacontenttype declares JSON data by
// the JSON event format's rule: its media type, parameters stripped, has
// the form */json or */*+json (application/json, text/json,
// application/vnd.x+json). An empty one counts as application/json.
func IsJSONMediaType(contentType string) bool {
	if strings.TrimSpace(contentType) == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt, _, _ = strings.Cut(strings.ToLower(contentType), ";")
		mt = strings.TrimSpace(mt)
	}
	_, sub, ok := strings.Cut(mt, "/")
	return ok && (sub == "json" || strings.HasSuffix(sub, "+json"))
}

// forbidden reports a code point the String type of CloudEvents excludes:
// the controls U+0000–U+001F and U+007F–U+009F, and noncharacters.
func forbidden(r rune) bool {
	return r < 0x20 || r >= 0x7f && r <= 0x9f || r >= 0xfdd0 && r <= 0xfdef || r&0xfffe == 0xfffe
}

// cleanString replaces each code point a String attribute may not hold
// (and each byte that is not UTF-8) by U+FFFD; ok reports that s needed
// nothing.
func cleanString(s string) (clean string, ok bool) {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if forbidden(r) || r == utf8.RuneError && size == 1 {
			r = utf8.RuneError
		}
		b.WriteRune(r)
		i += size
	}
	if b.String() == s {
		return s, true
	}
	return b.String(), false
}

// safeJSONString appends s as a JSON string whose text holds no code
// point a String attribute may not hold: those are \u-escaped (JSON reads
// them back exactly), and nothing else is (no HTML escaping).
func safeJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case forbidden(r):
			b = fmt.Appendf(b, `\u%04x`, r)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

// safeJSONObject writes a JSON object of strings with safeJSONString, keys
// sorted.
func safeJSONObject(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = safeJSONString(b, k)
		b = append(b, ':')
		b = safeJSONString(b, m[k])
	}
	return string(append(b, '}'))
}

// safeJSONText makes JSON text fit a String attribute without changing the
// value it holds: whitespace between tokens goes, and forbidden code points
// inside strings are \u-escaped.
func safeJSONText(text []byte) (string, error) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, text); err != nil {
		return "", err
	}
	var b []byte
	inString, escaped := false, false
	for _, r := range compact.String() {
		switch {
		case inString && escaped:
			escaped = false
		case inString && r == '\\':
			escaped = true
		case r == '"':
			inString = !inString
		case inString && forbidden(r):
			b = fmt.Appendf(b, `\u%04x`, r)
			continue
		}
		b = utf8.AppendRune(b, r)
	}
	return string(b), nil
}

// contextAttributes are the names no extension may take.
var contextAttributes = map[string]bool{"specversion": true, "id": true, "source": true, "type": true,
	"datacontenttype": true, "dataschema": true, "subject": true, "time": true, "data": true, "data_base64": true}

// extensionName reports whether an Arc meta key can travel as a top-level
// extension of the same name: lower-case ASCII letters and digits, at most
// 20 characters, and no name this mapping or CloudEvents uses.
func extensionName(k string) bool {
	if k == "" || len(k) > 20 || contextAttributes[k] || ownExtensions[k] {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
