package arc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// appendTimestamp appends t as JavaScript's Date.prototype.toJSON writes it:
// YYYY-MM-DDTHH:mm:ss.sssZ, in UTC, truncated to the millisecond. The caller
// has checked that the year is within 0000-9999.
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, min, sec := t.Clock()
	ms := t.Nanosecond() / int(time.Millisecond)
	b = appendInt(b, year, 4)
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

func appendInt(b []byte, v, width int) []byte {
	var buf [8]byte
	i := len(buf)
	for v > 0 || width > 0 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		width--
	}
	return append(b, buf[i:]...)
}

// FormatTimestamp returns t as Arc's wire writes it: YYYY-MM-DDTHH:mm:ss.sssZ.
func FormatTimestamp(t time.Time) string {
	return string(appendTimestamp(make([]byte, 0, 24), t))
}

// timestampLayouts are the forms ParseTimestamp accepts after upper-casing
// 't' and 'z'. Go accepts any number of fraction digits after the seconds
// in every one of them. Each is also read by Node's Date parser, so an event
// we accept is one an Arc service accepts too.
var timestampLayouts = []string{
	time.RFC3339,               // 2026-04-28T10:00:00.000Z, +02:00
	"2006-01-02T15:04:05Z0700", // +0000
	"2006-01-02T15:04Z07:00",   // no seconds
	"2006-01-02",               // date only: UTC midnight, as Node reads it
}

// ParseTimestamp reads a meta.timestamp string the way Arc's readers do:
// RFC 3339 with 0-9 fraction digits and any offset (also lower-case 't' and
// 'z', "+0000" offsets, and no seconds) or a date alone (UTC midnight). The
// result is in UTC, truncated to the millisecond as Node does. A
// time without an offset is refused: Node would read it in its local zone.
func ParseTimestamp(s string) (time.Time, error) {
	if t, ok := parseCanonical(s); ok {
		return t, nil
	}
	up := strings.Map(func(r rune) rune {
		switch r {
		case 't':
			return 'T'
		case 'z':
			return 'Z'
		}
		return r
	}, s)
	for _, layout := range timestampLayouts {
		if t, err := time.Parse(layout, up); err == nil {
			t = t.UTC().Truncate(time.Millisecond)
			if y := t.Year(); y < 0 || y > 9999 {
				return time.Time{}, fmt.Errorf("%q is outside years 0000-9999 in UTC", s)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 date-time", s)
}

// parseCanonical reads exactly YYYY-MM-DDTHH:mm:ss.sssZ without time.Parse:
// it is what Arc and arcmill write, so nearly every event takes this path.
func parseCanonical(s string) (time.Time, bool) {
	if len(s) != 24 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
		s[16] != ':' || s[19] != '.' || s[23] != 'Z' {
		return time.Time{}, false
	}
	num := func(a, b int) int {
		v := 0
		for i := a; i < b; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(5, 7), num(8, 10)
	hour, min, sec, ms := num(11, 13), num(14, 16), num(17, 19), num(20, 23)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 ||
		min < 0 || min > 59 || sec < 0 || sec > 59 || ms < 0 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, min, sec, ms*int(time.Millisecond), time.UTC)
	if t.Day() != day { // 2026-02-30 normalises to March: not a date
		return time.Time{}, false
	}
	return t, true
}

// timestampFromMillis reads a JSON number of milliseconds since the epoch.
func timestampFromMillis(raw []byte) (time.Time, error) {
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return time.Time{}, err
	}
	// JavaScript's Date range: ±8.64e15 ms.
	if math.IsNaN(f) || f > 8.64e15 || f < -8.64e15 {
		return time.Time{}, fmt.Errorf("%s ms is outside the range of a date", raw)
	}
	ms := int64(math.Trunc(f))
	t := time.UnixMilli(ms).UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return time.Time{}, fmt.Errorf("%s ms is outside years 0000-9999", raw)
	}
	return t, nil
}

var timestampKey = []byte(`"timestamp"`)

// checkTimestampKeys reports the first object key named "timestamp", at any
// depth of the JSON value raw, whose value is a string that is not a date.
// where names raw in the error ("payload").
func checkTimestampKeys(where string, raw []byte) error {
	if !bytes.Contains(raw, timestampKey) && !bytes.Contains(raw, []byte(`\u`)) {
		return nil // the common case: nothing to look at
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return invalid("%s is not JSON: %v", where, err)
	}
	return walkTimestamps(where, v)
}

func walkTimestamps(path string, v any) error {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			p := path + "." + k
			if s, ok := child.(string); ok && k == "timestamp" {
				if _, err := ParseTimestamp(s); err != nil {
					return invalid("%s holds %q, which is not a date: Arc's readers turn every "+
						"\"timestamp\" key into a Date, so it would arrive as Invalid Date", p, s)
				}
			}
			if err := walkTimestamps(p, child); err != nil {
				return err
			}
		}
	case []any:
		for i, child := range v {
			if err := walkTimestamps(fmt.Sprintf("%s[%d]", path, i), child); err != nil {
				return err
			}
		}
	}
	return nil
}
