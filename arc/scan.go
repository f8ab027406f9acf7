package arc

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// maxNesting bounds how deep a JSON value may nest. encoding/json uses the
// same limit; without one a hostile message could exhaust memory.
const maxNesting = 10000

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

// scanValue validates the JSON value starting at data[i] (no leading
// whitespace) and returns the index just after it. It accepts exactly what
// encoding/json.Valid accepts, iteratively, so depth costs no stack.
func scanValue(data []byte, i int) (int, error) {
	var small [32]byte
	stack := small[:0] // open containers, '{' or '['
	for {
		// A value is expected at i.
		i = skipWS(data, i)
		if i >= len(data) {
			return 0, &syntaxError{"unexpected end of input", i}
		}
		var err error
		switch c := data[i]; {
		case c == '{' || c == '[':
			if len(stack) >= maxNesting {
				return 0, &syntaxError{"nested too deeply", i}
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
			stack = append(stack, c)
			if c == '{' {
				if i, err = scanKey(data, i); err != nil {
					return 0, err
				}
			}
			continue
		case c == '"':
			i, _, err = scanString(data, i)
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
			top := stack[len(stack)-1]
			if data[i] == ',' {
				i++
				if top == '{' {
					if i, err = scanKey(data, skipWS(data, i)); err != nil {
						return 0, err
					}
				}
				break
			}
			if top == '{' && data[i] == '}' || top == '[' && data[i] == ']' {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			return 0, &syntaxError{fmt.Sprintf("unexpected character %q after value", data[i]), i}
		}
	}
}

// scanKey validates `"key" :` at data[i] and returns the index after the colon.
func scanKey(data []byte, i int) (int, error) {
	i, _, err := scanString(data, i)
	if err != nil {
		return 0, err
	}
	i = skipWS(data, i)
	if i >= len(data) || data[i] != ':' {
		return 0, &syntaxError{"expected ':' after object key", i}
	}
	return i + 1, nil
}

// validJSON reports whether data holds exactly one JSON value, surrounded by
// optional whitespace.
func validJSON(data []byte) error {
	i := skipWS(data, 0)
	end, err := scanValue(data, i)
	if err != nil {
		return err
	}
	if end = skipWS(data, end); end != len(data) {
		return &syntaxError{"unexpected data after value", end}
	}
	return nil
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

// objectIter walks the members of a validated-as-it-goes JSON object.
type objectIter struct {
	data []byte
	i    int
	n    int
}

// newObjectIter starts at data[i] == '{'.
func newObjectIter(data []byte, i int) objectIter { return objectIter{data: data, i: i + 1} }

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
	if ve, err = scanValue(data, vs); err != nil {
		return nil, 0, 0, false, err
	}
	it.i = ve
	it.n++
	return name, vs, ve, true, nil
}
