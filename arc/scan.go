package arc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// syntaxError describes invalid JSON at a byte offset.
type syntaxError struct {
	msg    string
	offset int
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.offset, e.msg)
}

func skipWS(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString validates the JSON string starting at data[i] == '"' and returns
// the index after its closing quote, and whether it can be used without
// unescaping (no backslash, valid UTF-8).
func scanString(data []byte, i int) (end int, plain bool, err error) {
	if i >= len(data) || data[i] != '"' {
		return 0, false, &syntaxError{"expected string", i}
	}
	plain = true
	ascii := true
	for j := i + 1; j < len(data); j++ {
		c := data[j]
		switch {
		case c == '"':
			if !ascii && plain {
				plain = utf8.Valid(data[i+1 : j])
			}
			return j + 1, plain, nil
		case c == '\\':
			plain = false
			j++
			if j >= len(data) {
				return 0, false, &syntaxError{"unterminated string", j}
			}
			switch data[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(data) {
					return 0, false, &syntaxError{"unterminated string", j}
				}
				for k := j + 1; k <= j+4; k++ {
					if !isHex(data[k]) {
						return 0, false, &syntaxError{"invalid \\u escape", k}
					}
				}
				j += 4
			default:
				return 0, false, &syntaxError{"invalid escape", j}
			}
		case c < 0x20:
			return 0, false, &syntaxError{"control character in string", j}
		case c >= 0x80:
			ascii = false
		}
	}
	return 0, false, &syntaxError{"unterminated string", len(data)}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scanNumber validates the JSON number starting at data[i].
func scanNumber(data []byte, i int) (int, error) {
	start := i
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && '1' <= data[i] && data[i] <= '9':
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	default:
		return 0, &syntaxError{"invalid number", start}
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i >= len(data) || !isDigit(data[i]) {
			return 0, &syntaxError{"invalid number", start}
		}
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || !isDigit(data[i]) {
			return 0, &syntaxError{"invalid number", start}
		}
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	return i, nil
}

func scanLiteral(data []byte, i int, lit string) (int, error) {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return 0, &syntaxError{"invalid literal", i}
	}
	return i + len(lit), nil
}

// frame is an open container while scanning: an object with the raw token
// of its current key, or an array with the index of its current element.
type frame struct {
	obj      bool
	plain    bool
	keyStart int
	keyEnd   int
	idx      int
}

// key returns the current key of an object frame, unquoted.
func (f frame) key(data []byte) string {
	if f.plain {
		return string(data[f.keyStart+1 : f.keyEnd-1])
	}
	return unquote(data[f.keyStart:f.keyEnd], false)
}

// scanValue validates the JSON value starting at data[i] (no leading
// whitespace) and returns the index just after it. It accepts exactly what
// encoding/json.Valid accepts, iteratively, so depth costs no stack.
func scanValue(data []byte, i int) (int, error) { return scanWith(data, i, nil, hardMaxDepth) }

// scanAll validates that data is one JSON value with optional whitespace
// around it; a non-nil hook sees every string value inside a container
// (a concrete type, not an interface, so that the frame stack stays on the
// goroutine's stack).
func scanAll(data []byte, hook *tsCheck, maxDepth int) error {
	end, err := scanWith(data, skipWS(data, 0), hook, maxDepth)
	if err != nil || end < 0 {
		return err
	}
	if end = skipWS(data, end); end != len(data) {
		return &syntaxError{"unexpected data after value", end}
	}
	return nil
}

// scanWith is scanValue with a hook and a nesting bound (containers may
// nest maxDepth deep; 0 refuses any container); it returns -1 when the hook
// stopped it.
func scanWith(data []byte, i int, hook *tsCheck, maxDepth int) (int, error) {
	var small [16]frame
	stack := small[:0]
	var err error
	for {
		// A value is expected at i.
		i = skipWS(data, i)
		if i >= len(data) {
			return 0, &syntaxError{"unexpected end of input", i}
		}
		switch c := data[i]; {
		case c == '{' || c == '[':
			if len(stack) >= maxDepth {
				return 0, &depthError{maxDepth, i}
			}
			closer := byte('}')
			if c == '[' {
				closer = ']'
			}
			i = skipWS(data, i+1)
			if i < len(data) && data[i] == closer {
				i++
				break // an empty container is a complete value
			}
			stack = append(stack, frame{obj: c == '{'})
			if c == '{' {
				if i, err = scanKeyInto(data, i, &stack[len(stack)-1]); err != nil {
					return 0, err
				}
			}
			continue
		case c == '"':
			start := i
			var plain bool
			if i, plain, err = scanString(data, i); err != nil {
				return 0, err
			}
			if hook != nil && len(stack) > 0 && !hook.stringValue(stack, data, start, i, plain) {
				return -1, nil
			}
		case c == 't':
			i, err = scanLiteral(data, i, "true")
		case c == 'f':
			i, err = scanLiteral(data, i, "false")
		case c == 'n':
			i, err = scanLiteral(data, i, "null")
		case c == '-' || isDigit(c):
			i, err = scanNumber(data, i)
		default:
			return 0, &syntaxError{fmt.Sprintf("unexpected character %q", c), i}
		}
		if err != nil {
			return 0, err
		}
		// A value ended: close containers until one wants another element.
		for {
			if len(stack) == 0 {
				return i, nil
			}
			i = skipWS(data, i)
			if i >= len(data) {
				return 0, &syntaxError{"unexpected end of input", i}
			}
			top := &stack[len(stack)-1]
			if data[i] == ',' {
				i++
				if top.obj {
					if i, err = scanKeyInto(data, skipWS(data, i), top); err != nil {
						return 0, err
					}
				} else {
					top.idx++
				}
				break
			}
			if top.obj && data[i] == '}' || !top.obj && data[i] == ']' {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			return 0, &syntaxError{fmt.Sprintf("unexpected character %q after value", data[i]), i}
		}
	}
}

// scanKeyInto validates `"key" :` at data[i], records the key in f and
// returns the index after the colon.
func scanKeyInto(data []byte, i int, f *frame) (int, error) {
	end, plain, err := scanString(data, i)
	if err != nil {
		return 0, err
	}
	f.keyStart, f.keyEnd, f.plain = i, end, plain
	end = skipWS(data, end)
	if end >= len(data) || data[end] != ':' {
		return 0, &syntaxError{"expected ':' after object key", end}
	}
	return end + 1, nil
}

// validJSON reports whether data holds exactly one JSON value, surrounded by
// optional whitespace.
func validJSON(data []byte) error { return scanAll(data, nil, hardMaxDepth) }

// validJSONDepth is validJSON with containers nesting at most maxDepth deep.
func validJSONDepth(data []byte, maxDepth int) error { return scanAll(data, nil, maxDepth) }

// depthError is a value nested deeper than a bound allows.
type depthError struct {
	max    int
	offset int
}

func (e *depthError) Error() string {
	return fmt.Sprintf("nested deeper than %d levels at byte %d", e.max, e.offset)
}

// unquote returns the Go string of the JSON string token raw (quotes
// included). Escapes and invalid UTF-8 follow encoding/json (U+FFFD).
func unquote(raw []byte, plain bool) string {
	if plain {
		return string(raw[1 : len(raw)-1])
	}
	var s string
	// raw was validated by scanString, so this cannot fail.
	_ = json.Unmarshal(raw, &s)
	return s
}

// appendSurrogate appends the WTF-8 bytes of a surrogate code point
// (U+D800–U+DFFF): ED, then A0–BF, then 80–BF. utf8.AppendRune would
// write U+FFFD for it.
func appendSurrogate(b []byte, r rune) []byte {
	return append(b, 0xe0|byte(r>>12), 0x80|byte(r>>6)&0x3f, 0x80|byte(r)&0x3f)
}

// surrogateAt returns the surrogate code point whose WTF-8 bytes begin
// s[i:], or -1.
func surrogateAt(s string, i int) rune {
	if i+2 < len(s) && s[i] == 0xed && s[i+1] >= 0xa0 && s[i+1] <= 0xbf && s[i+2] >= 0x80 && s[i+2] <= 0xbf {
		return 0xd000 | rune(s[i+1]&0x3f)<<6 | rune(s[i+2]&0x3f)
	}
	return -1
}

// objectIter walks the members of a validated-as-it-goes JSON object.
type objectIter struct {
	data     []byte
	i        int
	n        int
	maxDepth int // how deep a member's value may nest
}

// newObjectIter starts at data[i] == '{'.
func newObjectIter(data []byte, i int) objectIter {
	return objectIter{data: data, i: i + 1, maxDepth: hardMaxDepth}
}

// next returns the next member's name and its value's byte range; ok is
// false at the end of the object. The name aliases data unless the key had
// escapes.
func (it *objectIter) next() (name []byte, vs, ve int, ok bool, err error) {
	data := it.data
	i := skipWS(data, it.i)
	if i >= len(data) {
		return nil, 0, 0, false, &syntaxError{"unexpected end of input", i}
	}
	if it.n > 0 {
		if data[i] == '}' {
			it.i = i + 1
			return nil, 0, 0, false, nil
		}
		if data[i] != ',' {
			return nil, 0, 0, false, &syntaxError{fmt.Sprintf("unexpected character %q in object", data[i]), i}
		}
		i = skipWS(data, i+1)
	} else if data[i] == '}' {
		it.i = i + 1
		return nil, 0, 0, false, nil
	}
	ke, plain, err := scanString(data, i)
	if err != nil {
		return nil, 0, 0, false, err
	}
	if plain {
		name = data[i+1 : ke-1]
	} else {
		name = []byte(unquote(data[i:ke], false))
	}
	i = skipWS(data, ke)
	if i >= len(data) || data[i] != ':' {
		return nil, 0, 0, false, &syntaxError{"expected ':' after object key", i}
	}
	vs = skipWS(data, i+1)
	if ve, err = scanWith(data, vs, nil, it.maxDepth); err != nil {
		return nil, 0, 0, false, err
	}
	it.i = ve
	it.n++
	return name, vs, ve, true, nil
}

// unquoteKeep is unquote for a validated string token that keeps what
// unquote would replace with U+FFFD: invalid UTF-8 bytes stay as they are,
// and a lone surrogate escape (\ud800, a high half not followed by a low
// one, or a low half alone) becomes the surrogate's WTF-8 bytes (U+D800 as
// ED A0 80: UTF-8's three-byte form, applied to a code point UTF-8
// forbids), as a JavaScript string holds it. Ids are read this way
// (isIDKey) so that ids differing only there stay distinct; appendKeep
// writes the surrogate back as the escape.
func unquoteKeep(raw []byte) string {
	body := raw[1 : len(raw)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return string(body)
	}
	out := make([]byte, 0, len(body))
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch body[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := rune(hex4(body[i+1:]))
			i += 4
			if utf16.IsSurrogate(r) {
				lo := rune(-1)
				if i+6 < len(body) && body[i+1] == '\\' && body[i+2] == 'u' {
					lo = rune(hex4(body[i+3:]))
				}
				if d := utf16.DecodeRune(r, lo); d != utf8.RuneError {
					r = d
					i += 6
				} else {
					out = appendSurrogate(out, r)
					continue
				}
			}
			out = utf8.AppendRune(out, r)
		default: // '"', '\\', '/'
			out = append(out, body[i])
		}
	}
	return string(out)
}
