package arc

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// appendTimestamp appends t as JavaScript's Date.prototype.toJSON writes it:
// YYYY-MM-DDTHH:mm:ss.sssZ, in UTC, truncated to the millisecond. Years
// outside 0000-9999 take JavaScript's extended form, ±YYYYYY.
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, min, sec := t.Clock()
	ms := t.Nanosecond() / int(time.Millisecond)
	switch {
	case year < 0:
		b = append(b, '-')
		b = appendInt(b, -year, 6)
	case year > 9999:
		b = append(b, '+')
		b = appendInt(b, year, 6)
	default:
		b = appendInt(b, year, 4)
	}
	b = append(b, '-')
	b = appendInt(b, int(month), 2)
	b = append(b, '-')
	b = appendInt(b, day, 2)
	b = append(b, 'T')
	b = appendInt(b, hour, 2)
	b = append(b, ':')
	b = appendInt(b, min, 2)
	b = append(b, ':')
	b = appendInt(b, sec, 2)
	b = append(b, '.')
	b = appendInt(b, ms, 3)
	return append(b, 'Z')
}

// appendInt appends v >= 0 in decimal, zero-padded to at least width digits.
func appendInt(b []byte, v, width int) []byte {
	var buf [24]byte
	i := len(buf)
	for (v > 0 || width > 0) && i > 0 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		width--
	}
	return append(b, buf[i:]...)
}

// FormatTimestamp returns t as Arc's wire writes it: YYYY-MM-DDTHH:mm:ss.sssZ.
func FormatTimestamp(t time.Time) string {
	return string(appendTimestamp(make([]byte, 0, 27), t))
}

// ParseTimestamp reads the RFC 3339 forms of a date that mean the same
// instant to every reader, a subset of what Node's Date parser reads:
//
//	YYYY-MM-DD                                 UTC midnight
//	YYYY-MM-DDTHH:mm[:ss[.f]](Z|±HH:mm|±HHmm)  f: 1-9 digits
//
// with 'T' and 'Z' also in lower case. The result is in UTC, truncated to
// the millisecond as Node does. A time without an offset is not read (Node
// reads it in its local zone), nor is anything outside years 0000-9999.
//
// Unmarshal reads meta.timestamp into Meta.Timestamp with it; any other
// meta.timestamp value is kept raw in Meta.Extra and written back as it
// came. NodeDate reads Node's whole grammar.
func ParseTimestamp(s string) (time.Time, error) {
	if t, ok := parseRFC3339(s, true); ok {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 date-time with an offset", s)
}

// digits reads s[a:b] as a decimal number of exactly b-a digits.
func digits(s string, a, b int) (int, bool) {
	if b > len(s) {
		return 0, false
	}
	v := 0
	for i := a; i < b; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// parseRFC3339 reads the forms ParseTimestamp documents, in UTC; to the
// millisecond when truncate is set (as Node reads them), exactly otherwise
// (the message mapping's own timestamps).
func parseRFC3339(s string, truncate bool) (time.Time, bool) {
	year, ok1 := digits(s, 0, 4)
	month, ok2 := digits(s, 5, 7)
	day, ok3 := digits(s, 8, 10)
	if !ok1 || !ok2 || !ok3 || s[4] != '-' || s[7] != '-' {
		return time.Time{}, false
	}
	var hour, min, sec, nsec, offset int
	rest := s[10:]
	if rest != "" {
		if rest[0] != 'T' && rest[0] != 't' || len(rest) < 6 || rest[3] != ':' {
			return time.Time{}, false
		}
		var okh, okm bool
		hour, okh = digits(rest, 1, 3)
		min, okm = digits(rest, 4, 6)
		if !okh || !okm {
			return time.Time{}, false
		}
		rest = rest[6:]
		if rest != "" && rest[0] == ':' {
			var ok bool
			if sec, ok = digits(rest, 1, 3); !ok {
				return time.Time{}, false
			}
			rest = rest[3:]
			if rest != "" && rest[0] == '.' {
				n := 1
				for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
					n++
				}
				if n == 1 || n > 10 {
					return time.Time{}, false
				}
				frac, _ := digits(rest, 1, n)
				for i := n; i <= 9; i++ {
					frac *= 10
				}
				nsec, rest = frac, rest[n:]
			}
		}
		switch {
		case rest == "Z" || rest == "z":
		case len(rest) == 6 && rest[3] == ':' || len(rest) == 5:
			oh, okh := digits(rest, 1, 3)
			om, okm := digits(rest, len(rest)-2, len(rest))
			if !okh || !okm || oh > 23 || om > 59 || rest[0] != '+' && rest[0] != '-' {
				return time.Time{}, false
			}
			offset = oh*3600 + om*60
			if rest[0] == '-' {
				offset = -offset
			}
		default:
			return time.Time{}, false
		}
	}
	if month < 1 || month > 12 || day < 1 || hour > 23 || min > 59 || sec > 59 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, min, sec, nsec, time.UTC)
	if t.Day() != day { // 2026-02-30 normalises to March: not a date
		return time.Time{}, false
	}
	t = t.Add(-time.Duration(offset) * time.Second)
	if truncate {
		t = t.Truncate(time.Millisecond)
	}
	if y := t.Year(); y < 0 || y > 9999 {
		return time.Time{}, false
	}
	return t, true
}

var timestampKey = []byte("timestamp")

// checkTimestampKeys reports the first object key named "timestamp", at any
// depth of the JSON value raw, whose value is a string that Node's
// new Date(string) reads as Invalid Date: Arc's readers turn every such key
// into a Date. where names raw in the error ("payload").
func checkTimestampKeys(where string, raw []byte) error {
	if !bytes.Contains(raw, timestampKey) && !bytes.Contains(raw, []byte(`\u`)) {
		return nil // the common case: nothing to look at
	}
	var check tsCheck
	if err := scanAll(raw, &check, hardMaxDepth); err != nil {
		return invalid("%s is not JSON: %v", where, err)
	}
	if check.path == "" {
		return nil
	}
	return invalidDate(where+check.path, check.bad)
}

// invalidDate is the error of NewEvent's date check.
func invalidDate(path, value string) error {
	return invalid("%s %q is what Node's new Date() reads as Invalid Date; Arc handlers would see an Invalid Date "+
		"(arc.AllowInvalidDates turns this check off)", path, value)
}

// tsCheck is the scanner hook that finds the first "timestamp" key holding
// a string that is not a date.
type tsCheck struct {
	bad, path string
}

func (c *tsCheck) stringValue(stack []frame, data []byte, start, end int, plain bool) bool {
	top := stack[len(stack)-1]
	if !top.obj || top.key(data) != "timestamp" {
		return true
	}
	if s := unquote(data[start:end], plain); !isDate(s) {
		c.bad, c.path = s, pathOf(stack, data)
		return false
	}
	return true
}

func pathOf(stack []frame, data []byte) string {
	var b strings.Builder
	for _, f := range stack {
		if f.obj {
			b.WriteString(".")
			b.WriteString(f.key(data))
		} else {
			b.WriteString("[" + strconv.Itoa(f.idx) + "]")
		}
	}
	return b.String()
}

// isDate reports whether Node's new Date(s) is a valid Date.
func isDate(s string) bool {
	_, ok := parseJSDate(s)
	return ok
}

// NodeDate reads s as Node's new Date(s) does, with a port of V8's date
// parser (ISO and RFC 3339 forms with or without an offset, date-only
// forms, RFC 2822/1123, and V8's legacy forms such as "2026/01/01" or
// "Jan 1 2026"). ok is false where Node gives Invalid Date. A date-time
// without an offset is read in UTC, where Node uses its local zone.
func NodeDate(s string) (t time.Time, ok bool) {
	ms, ok := parseJSDate(s)
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMilli(ms).UTC(), true
}
