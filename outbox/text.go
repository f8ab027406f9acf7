package outbox

import (
	"strings"
	"unicode/utf8"
)

// The outbox's text columns (event_id, event_type, dedupe_key,
// partition_key) hold strings that arrive from the wire, and an Arc id can
// be any JavaScript string: a lone surrogate (WTF-8 bytes in Go), invalid
// UTF-8, NUL. PostgreSQL's text refuses invalid UTF-8 and NUL, MariaDB
// refuses invalid UTF-8 in strict mode and replaces it with '?' otherwise,
// and MariaDB's collations (PAD SPACE) compare "k" and "k " as equal, so
// two distinct dedupe keys would be one. Such a string is stored escaped:
//
//	columnMarker + the string with each byte of invalid UTF-8, each NUL,
//	each '%' and each trailing space written as %XX (upper-case hex)
//
// "\xff" is stored as "\ufffd%FF", "k " as "\ufffdk%20". A string that
// starts with the marker is escaped too ("\ufffdx" is "\ufffd\ufffdx"), so
// the stored form is one to one: two distinct strings never share one,
// and a lookup (Filter.EventIDs, Filter.Types, RelayConfig.Types) escapes
// its argument the same way. Every other string, which is every string the
// outbox stored before, is stored as it is. Reading takes a stored value
// for an escaped one only when it is exactly what escaping its unescaped
// form gives, so a row written before the escape existed reads back as it
// was written.

// columnMarker starts the stored form of an escaped string: U+FFFD, the
// replacement character, says that something here was not text.
const columnMarker = "\ufffd"

// toColumn returns the form of s that every dialect's text column holds
// unchanged and compares as s.
func toColumn(s string) string {
	if !needsEscape(s) {
		return s
	}
	const hex = "0123456789ABCDEF"
	trail := len(strings.TrimRight(s, " "))
	b := make([]byte, 0, len(columnMarker)+len(s)+8)
	b = append(b, columnMarker...)
	for i := 0; i < len(s); {
		c := s[i]
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || c == 0 || c == '%' || (c == ' ' && i >= trail) {
			b = append(b, '%', hex[c>>4], hex[c&0xf])
			i++
			continue
		}
		b = append(b, s[i:i+size]...)
		i += size
	}
	return string(b)
}

// needsEscape reports whether a text column cannot hold s as it is (see
// toColumn).
func needsEscape(s string) bool {
	if s == "" {
		return false
	}
	return s[len(s)-1] == ' ' || strings.HasPrefix(s, columnMarker) || strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s)
}

// fromColumn is the inverse of toColumn. A stored value that is not
// exactly toColumn of its unescaped form was not escaped by the outbox (a
// row written before the escape existed, or by hand): it is returned as it
// is.
func fromColumn(s string) string {
	body, ok := strings.CutPrefix(s, columnMarker)
	if !ok {
		return s
	}
	b := make([]byte, 0, len(body))
	for i := 0; i < len(body); i++ {
		if body[i] != '%' {
			b = append(b, body[i])
			continue
		}
		if i+2 >= len(body) {
			return s
		}
		hi, lo := unhex(body[i+1]), unhex(body[i+2])
		if hi < 0 || lo < 0 {
			return s
		}
		b = append(b, byte(hi<<4|lo))
		i += 2
	}
	if raw := string(b); toColumn(raw) == s {
		return raw
	}
	return s
}

// unhex returns the value of an upper-case hex digit, or -1.
func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// columnArgs returns ss in their stored forms, as query arguments.
func columnArgs(args []any, ss []string) []any {
	for _, s := range ss {
		args = append(args, toColumn(s))
	}
	return args
}
