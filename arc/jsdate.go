package arc

import "unicode/utf16"

// This file ports V8's date string parser (src/date/dateparser.{h,cc} and
// dateparser-inl.h, as in Node 20) to Go, so that arcmill can tell which
// strings Node's new Date(string) turns into Invalid Date. It is a port of
// the logic, structured like the original so the two can be read side by
// side: an ES5 ISO reader first, then V8's legacy (Safari-compatible)
// reader on whatever the ISO reader left over.
//
// The grammar, in short:
//
//   - ISO: [+|-YYYYYY | YYYY][-MM[-DD]][THH:mm[:ss[.f+]][Z | ±HH:mm | ±HHmm]]
//     with T and Z in either case, 1 or more fraction digits (the first 3
//     count), HH 24 only as 24:00[:00[.000]], -000000 refused. A date-only
//     form, and any form with an offset, is UTC; a date-time without an
//     offset is local time.
//   - Legacy, for anything else: words before the first number are ignored,
//     (parenthesised text) is ignored, month names by their first three
//     letters, am/pm, the zones UT, UTC, GMT, Z, EST, EDT, CST, CDT, MST,
//     MDT, PST, PDT, ±hh, ±hhmm and ±hh:mm after a zone word or a time,
//     numbers followed by ':' are times, other numbers are date components
//     read as M/D/Y, Y/M/D (when the first is not a day) or with a named
//     month in any order; two-digit years 0-49 are 20xx, 50-99 are 19xx.
//     A number or a word may not be followed by garbage once a number has
//     been read. The legacy form without a zone is local time.
//   - Days up to 31 are accepted in every month and roll over as MakeDay
//     does (2026-02-31 is 3 March).
//   - Characters are UTF-16 code units; a NUL ends the input, as in V8.
//     White space is ECMAScript's (NBSP, U+3000, ZWNBSP, ...), but the line
//     separators U+2028 and U+2029 count as word characters.
//
// Known differences: local time is taken to be UTC (arcmill cannot know the
// Arc host's zone), so a date-time without an offset within ten days of the
// ends of the JavaScript date range (±8.64e15 ms) may be judged otherwise
// than by a host in another zone.

// jsMaxTime is the largest absolute time value a JavaScript Date holds, in ms.
const jsMaxTime = 8.64e15

// jsNone marks a missing component (V8's kNone).
const jsNone = 1<<31 - 1

// jsMaxDigits is how many leading digits of a numeral count (V8's
// kMaxSignificantDigits).
const jsMaxDigits = 9

type jsTokenKind int8

const (
	jsInvalid jsTokenKind = iota - 6
	jsUnknown
	jsWhiteSpace
	jsNumber
	jsSymbol
	jsEnd
	// Keyword kinds follow, as V8's KeywordType starting at 0.
	kwInvalid
	kwMonthName
	kwTimeZoneName
	kwTimeSeparator
	kwAmPm
)

type jsToken struct {
	kind   jsTokenKind
	length int
	value  int
}

func (t jsToken) isNumber() bool           { return t.kind == jsNumber }
func (t jsToken) isKeyword() bool          { return t.kind >= kwInvalid }
func (t jsToken) isSymbol(c byte) bool     { return t.kind == jsSymbol && t.value == int(c) }
func (t jsToken) isFixedNumber(n int) bool { return t.kind == jsNumber && t.length == n }
func (t jsToken) isSign() bool             { return t.isSymbol('+') || t.isSymbol('-') }
func (t jsToken) sign() int                { return 44 - t.value } // '+' → 1, '-' → -1
func (t jsToken) isKeywordZ() bool {
	return t.kind == kwTimeZoneName && t.length == 1 && t.value == 0
}

// jsReader is V8's InputReader over UTF-16 code units; ch is 0 at the end.
type jsReader struct {
	s     []uint16
	index int
	ch    uint16
}

func (r *jsReader) next() {
	if r.index < len(r.s) {
		r.ch = r.s[r.index]
	} else {
		r.ch = 0
	}
	r.index++
}

func (r *jsReader) isDigit() bool { return '0' <= r.ch && r.ch <= '9' }

// isWordChar is V8's IsAsciiAlphaOrAbove && !IsWhiteSpaceChar: every code
// unit from 'A' up (punctuation such as '_', all non-ASCII characters, the
// line separators U+2028 and U+2029) except JavaScript's white space.
func (r *jsReader) isWordChar() bool { return r.ch >= 'A' && !isJSWhiteSpace(r.ch) }

// isJSWhiteSpace is ECMAScript's WhiteSpace: TAB, VT, FF, SP, NBSP, ZWNBSP
// and the Unicode space separators (Zs).
func isJSWhiteSpace(c uint16) bool {
	switch c {
	case '\t', '\v', '\f', ' ', 0xa0, 0xfeff, 0x1680, 0x202f, 0x205f, 0x3000:
		return true
	}
	return 0x2000 <= c && c <= 0x200a
}

func (r *jsReader) skip(c uint16) bool {
	if r.ch == c {
		r.next()
		return true
	}
	return false
}

func (r *jsReader) readNumeral() int {
	n, i := 0, 0
	for r.isDigit() {
		if i < jsMaxDigits {
			n = n*10 + int(r.ch-'0')
		}
		i++
		r.next()
	}
	return n
}

// readWord reads a word and returns its lower-cased 3-unit prefix (zero
// padded) and its length.
func (r *jsReader) readWord() (prefix [3]uint32, n int) {
	for ; r.isWordChar(); r.next() {
		if n < 3 {
			prefix[n] = uint32(r.ch) | 0x20 // V8's AsciiAlphaToLower
		}
		n++
	}
	return prefix, n
}

// skipWhiteSpace is V8's IsWhiteSpaceOrLineTerminator; U+2028 and U+2029
// never get here, being read as words first.
func (r *jsReader) skipWhiteSpace() bool {
	if isJSWhiteSpace(r.ch) || r.ch == '\n' || r.ch == '\r' || r.ch == 0x2028 || r.ch == 0x2029 {
		r.next()
		return true
	}
	return false
}

func (r *jsReader) skipParentheses() bool {
	if r.ch != '(' {
		return false
	}
	balance := 0
	for {
		switch r.ch {
		case ')':
			balance--
		case '(':
			balance++
		}
		r.next()
		if balance <= 0 || r.ch == 0 {
			return true
		}
	}
}

// jsKeywords is V8's KeywordTable.
var jsKeywords = [...]struct {
	pre   [3]uint32
	kind  jsTokenKind
	value int
}{
	{[3]uint32{'j', 'a', 'n'}, kwMonthName, 1},
	{[3]uint32{'f', 'e', 'b'}, kwMonthName, 2},
	{[3]uint32{'m', 'a', 'r'}, kwMonthName, 3},
	{[3]uint32{'a', 'p', 'r'}, kwMonthName, 4},
	{[3]uint32{'m', 'a', 'y'}, kwMonthName, 5},
	{[3]uint32{'j', 'u', 'n'}, kwMonthName, 6},
	{[3]uint32{'j', 'u', 'l'}, kwMonthName, 7},
	{[3]uint32{'a', 'u', 'g'}, kwMonthName, 8},
	{[3]uint32{'s', 'e', 'p'}, kwMonthName, 9},
	{[3]uint32{'o', 'c', 't'}, kwMonthName, 10},
	{[3]uint32{'n', 'o', 'v'}, kwMonthName, 11},
	{[3]uint32{'d', 'e', 'c'}, kwMonthName, 12},
	{[3]uint32{'a', 'm', 0}, kwAmPm, 0},
	{[3]uint32{'p', 'm', 0}, kwAmPm, 12},
	{[3]uint32{'u', 't', 0}, kwTimeZoneName, 0},
	{[3]uint32{'u', 't', 'c'}, kwTimeZoneName, 0},
	{[3]uint32{'z', 0, 0}, kwTimeZoneName, 0},
	{[3]uint32{'g', 'm', 't'}, kwTimeZoneName, 0},
	{[3]uint32{'c', 'd', 't'}, kwTimeZoneName, -5},
	{[3]uint32{'c', 's', 't'}, kwTimeZoneName, -6},
	{[3]uint32{'e', 'd', 't'}, kwTimeZoneName, -4},
	{[3]uint32{'e', 's', 't'}, kwTimeZoneName, -5},
	{[3]uint32{'m', 'd', 't'}, kwTimeZoneName, -6},
	{[3]uint32{'m', 's', 't'}, kwTimeZoneName, -7},
	{[3]uint32{'p', 'd', 't'}, kwTimeZoneName, -7},
	{[3]uint32{'p', 's', 't'}, kwTimeZoneName, -8},
	{[3]uint32{'t', 0, 0}, kwTimeSeparator, 0},
}

// lookupKeyword: a word longer than its keyword matches only month names.
func lookupKeyword(pre [3]uint32, n int) (jsTokenKind, int) {
	for _, k := range jsKeywords {
		if k.pre == pre && (n <= 3 || k.kind == kwMonthName) {
			return k.kind, k.value
		}
	}
	return kwInvalid, 0
}

// jsTokenizer is V8's DateStringTokenizer: one token of look-ahead.
type jsTokenizer struct {
	in   *jsReader
	peek jsToken
}

func (t *jsTokenizer) scan() jsToken {
	in := t.in
	pre := in.index
	switch {
	case in.ch == 0:
		return jsToken{kind: jsEnd, value: -1}
	case in.isDigit():
		n := in.readNumeral()
		return jsToken{kind: jsNumber, length: in.index - pre, value: n}
	}
	for _, c := range [...]uint16{':', '-', '+', '.', ')'} {
		if in.skip(c) {
			return jsToken{kind: jsSymbol, length: 1, value: int(c)}
		}
	}
	if in.isWordChar() {
		p, n := in.readWord()
		kind, v := lookupKeyword(p, n)
		return jsToken{kind: kind, length: n, value: v}
	}
	if in.skipWhiteSpace() {
		return jsToken{kind: jsWhiteSpace, length: in.index - pre, value: -1}
	}
	if in.skipParentheses() {
		return jsToken{kind: jsUnknown, length: 1, value: -1}
	}
	in.next()
	return jsToken{kind: jsUnknown, length: 1, value: -1}
}

func (t *jsTokenizer) next() jsToken {
	r := t.peek
	t.peek = t.scan()
	return r
}

func (t *jsTokenizer) skipSymbol(c byte) bool {
	if t.peek.isSymbol(c) {
		t.peek = t.scan()
		return true
	}
	return false
}

func jsBetween(x, lo, hi int) bool { return lo <= x && x <= hi }
func isJSMonth(x int) bool         { return jsBetween(x, 1, 12) }
func isJSDay(x int) bool           { return jsBetween(x, 1, 31) }
func isJSHour(x int) bool          { return jsBetween(x, 0, 23) }
func isJSMinute(x int) bool        { return jsBetween(x, 0, 59) }

// jsZone is V8's TimeZoneComposer.
type jsZone struct{ sign, hour, minute int }

func (z *jsZone) set(offsetHours int) {
	z.sign = 1
	if offsetHours < 0 {
		z.sign = -1
	}
	z.hour, z.minute = offsetHours*z.sign, 0
}
func (z *jsZone) setSign(s int) {
	z.sign = 1
	if s < 0 {
		z.sign = -1
	}
}
func (z *jsZone) expecting(n int) bool {
	return z.hour != jsNone && z.minute == jsNone && isJSMinute(n)
}
func (z *jsZone) isUTC() bool   { return z.hour == 0 && z.minute == 0 }
func (z *jsZone) isEmpty() bool { return z.hour == jsNone }

// offset returns the UTC offset in seconds, or has = false for local time.
func (z *jsZone) offset() (secs int64, has, ok bool) {
	if z.sign == jsNone {
		return 0, false, true
	}
	h, m := z.hour, z.minute
	if h == jsNone {
		h = 0
	}
	if m == jsNone {
		m = 0
	}
	// V8 computes this in unsigned 32-bit arithmetic and refuses more
	// than a Smi holds.
	total := uint32(h)*3600 + uint32(m)*60
	if total > 1<<31-1 {
		return 0, false, false
	}
	secs = int64(total)
	if z.sign < 0 {
		secs = -secs
	}
	return secs, true, true
}

// jsTime is V8's TimeComposer.
type jsTime struct {
	comp       [4]int
	index      int
	hourOffset int
}

func (t *jsTime) isEmpty() bool { return t.index == 0 }
func (t *jsTime) expecting(n int) bool {
	return t.index == 1 && isJSMinute(n) || t.index == 2 && isJSMinute(n) ||
		t.index == 3 && jsBetween(n, 0, 999)
}
func (t *jsTime) add(n int) bool {
	if t.index < len(t.comp) {
		t.comp[t.index] = n
		t.index++
		return true
	}
	return false
}
func (t *jsTime) addFinal(n int) bool {
	if !t.add(n) {
		return false
	}
	for t.index < len(t.comp) {
		t.comp[t.index] = 0
		t.index++
	}
	return true
}

func (t *jsTime) write() (h, m, s, ms int, ok bool) {
	for t.index < len(t.comp) {
		t.comp[t.index] = 0
		t.index++
	}
	h, m, s, ms = t.comp[0], t.comp[1], t.comp[2], t.comp[3]
	if t.hourOffset != jsNone {
		if !jsBetween(h, 0, 12) {
			return 0, 0, 0, 0, false
		}
		h = h%12 + t.hourOffset
	}
	if !isJSHour(h) || !isJSMinute(m) || !isJSMinute(s) || !jsBetween(ms, 0, 999) {
		// Hour 24 is allowed when everything after it is zero.
		if h != 24 || m != 0 || s != 0 || ms != 0 {
			return 0, 0, 0, 0, false
		}
	}
	return h, m, s, ms, true
}

// jsDay is V8's DayComposer.
type jsDay struct {
	comp       [3]int
	index      int
	namedMonth int
	iso        bool
}

func (d *jsDay) isEmpty() bool { return d.index == 0 }
func (d *jsDay) add(n int) bool {
	if d.index < len(d.comp) {
		d.comp[d.index] = n
		d.index++
		return true
	}
	return false
}

func (d *jsDay) write() (year, month, day int, ok bool) {
	if d.index < 1 {
		return 0, 0, 0, false
	}
	for d.index < len(d.comp) {
		d.comp[d.index] = 1 // day and month default to 1
		d.index++
	}
	year = 0 // KJS compatibility: 0 becomes 2000 below
	if d.namedMonth == jsNone {
		if d.iso || d.index == 3 && !isJSDay(d.comp[0]) {
			year, month, day = d.comp[0], d.comp[1], d.comp[2] // YMD
		} else {
			month, day = d.comp[0], d.comp[1] // MD(Y)
			if d.index == 3 {
				year = d.comp[2]
			}
		}
	} else {
		month = d.namedMonth
		switch {
		case d.index == 1:
			day = d.comp[0]
		case !isJSDay(d.comp[0]):
			year, day = d.comp[0], d.comp[1]
		default:
			day, year = d.comp[0], d.comp[1]
		}
	}
	if !d.iso {
		switch {
		case jsBetween(year, 0, 49):
			year += 2000
		case jsBetween(year, 50, 99):
			year += 1900
		}
	}
	if !isJSMonth(month) || !isJSDay(day) {
		return 0, 0, 0, false
	}
	return year, month, day, true
}

// jsMilliseconds is V8's ReadMilliseconds: the first three digits of a
// fraction whose numeral had the given length.
func jsMilliseconds(t jsToken) int {
	n, l := t.value, t.length
	switch {
	case l == 1:
		n *= 100
	case l == 2:
		n *= 10
	case l > 3:
		if l > jsMaxDigits {
			l = jsMaxDigits
		}
		for ; l > 3; l-- {
			n /= 10
		}
	}
	return n
}

// parseES5 is V8's ParseES5DateTime: it returns the first token it did
// not use, jsEnd when the whole input was an ISO date, or jsInvalid.
func parseES5(sc *jsTokenizer, day *jsDay, tm *jsTime, tz *jsZone) jsToken {
	if sc.peek.isSign() {
		signTok := sc.next()
		if !sc.peek.isFixedNumber(6) {
			return signTok
		}
		sign := signTok.sign()
		year := sc.next().value
		if sign < 0 && year == 0 {
			return signTok
		}
		day.add(sign * year)
	} else if sc.peek.isFixedNumber(4) {
		day.add(sc.next().value)
	} else {
		return sc.next()
	}
	if sc.skipSymbol('-') {
		if !sc.peek.isFixedNumber(2) || !isJSMonth(sc.peek.value) {
			return sc.next()
		}
		day.add(sc.next().value)
		if sc.skipSymbol('-') {
			if !sc.peek.isFixedNumber(2) || !isJSDay(sc.peek.value) {
				return sc.next()
			}
			day.add(sc.next().value)
		}
	}
	invalid := jsToken{kind: jsInvalid, value: -1}
	if sc.peek.kind != kwTimeSeparator {
		if sc.peek.kind != jsEnd {
			return sc.next()
		}
	} else {
		sc.next()
		if !sc.peek.isFixedNumber(2) || !jsBetween(sc.peek.value, 0, 24) {
			return invalid
		}
		hour24 := sc.peek.value == 24
		tm.add(sc.next().value)
		if !sc.skipSymbol(':') {
			return invalid
		}
		if !sc.peek.isFixedNumber(2) || !isJSMinute(sc.peek.value) || hour24 && sc.peek.value > 0 {
			return invalid
		}
		tm.add(sc.next().value)
		if sc.skipSymbol(':') {
			if !sc.peek.isFixedNumber(2) || !isJSMinute(sc.peek.value) || hour24 && sc.peek.value > 0 {
				return invalid
			}
			tm.add(sc.next().value)
			if sc.skipSymbol('.') {
				if !sc.peek.isNumber() || hour24 && sc.peek.value > 0 {
					return invalid
				}
				tm.add(jsMilliseconds(sc.next()))
			}
		}
		switch {
		case sc.peek.isKeywordZ():
			sc.next()
			tz.set(0)
		case sc.peek.isSign():
			tz.setSign(sc.next().sign())
			if sc.peek.isFixedNumber(4) {
				hm := sc.next().value
				h, m := hm/100, hm%100
				if !isJSHour(h) || !isJSMinute(m) {
					return invalid
				}
				tz.hour, tz.minute = h, m
			} else {
				if !sc.peek.isFixedNumber(2) || !isJSHour(sc.peek.value) {
					return invalid
				}
				tz.hour = sc.next().value
				if !sc.skipSymbol(':') {
					return invalid
				}
				if !sc.peek.isFixedNumber(2) || !isJSMinute(sc.peek.value) {
					return invalid
				}
				tz.minute = sc.next().value
			}
		}
		if sc.peek.kind != jsEnd {
			return invalid
		}
	}
	// Date-only forms without an offset are UTC; date-time forms are local.
	if tz.isEmpty() && tm.isEmpty() {
		tz.set(0)
	}
	day.iso = true
	return jsToken{kind: jsEnd, value: -1}
}

// parseJSDate is V8's DateParser::Parse followed by what new Date(string)
// does with its result (MakeDay, MakeTime, the UTC offset, TimeClip). It
// returns the time value in ms since the epoch and whether it is a valid
// Date; local time is taken to be UTC.
func parseJSDate(s string) (ms int64, ok bool) {
	in := &jsReader{s: utf16.Encode([]rune(s))}
	in.next()
	sc := &jsTokenizer{in: in}
	sc.peek = sc.scan()
	tz := jsZone{sign: jsNone, hour: jsNone, minute: jsNone}
	tm := jsTime{hourOffset: jsNone}
	day := jsDay{namedMonth: jsNone}

	tok := parseES5(sc, &day, &tm, &tz)
	if tok.kind == jsInvalid {
		return 0, false
	}
	hasNumber := !day.isEmpty()
	for ; tok.kind != jsEnd; tok = sc.next() {
		switch {
		case tok.isNumber():
			hasNumber = true
			n := tok.value
			if sc.skipSymbol(':') {
				if sc.skipSymbol(':') {
					if !tm.isEmpty() {
						return 0, false
					}
					tm.add(n)
					tm.add(0)
				} else {
					if !tm.add(n) {
						return 0, false
					}
					if sc.peek.isSymbol('.') {
						sc.next()
					}
				}
			} else if sc.skipSymbol('.') && tm.expecting(n) {
				tm.add(n)
				if !sc.peek.isNumber() {
					return 0, false
				}
				m := jsMilliseconds(sc.next())
				if m < 0 {
					return 0, false
				}
				tm.addFinal(m)
			} else if tz.expecting(n) {
				tz.minute = n
			} else if tm.expecting(n) {
				tm.addFinal(n)
				// The time must end here: end, white space, Z or a sign.
				p := sc.peek
				if p.kind != jsEnd && p.kind != jsWhiteSpace && !p.isKeywordZ() && !p.isSign() {
					return 0, false
				}
			} else {
				if !day.add(n) {
					return 0, false
				}
				sc.skipSymbol('-')
			}
		case tok.isKeyword():
			switch {
			case tok.kind == kwAmPm && !tm.isEmpty():
				tm.hourOffset = tok.value
			case tok.kind == kwMonthName:
				day.namedMonth = tok.value
				sc.skipSymbol('-')
			case tok.kind == kwTimeZoneName && hasNumber:
				tz.set(tok.value)
			default:
				// Garbage words are allowed only before the first number,
				// and must be separated from it.
				if hasNumber || sc.peek.isNumber() {
					return 0, false
				}
			}
		case tok.isSign() && (tz.isUTC() || !tm.isEmpty()):
			tz.setSign(tok.sign())
			n, length := 0, 0
			if sc.peek.isNumber() {
				t := sc.next()
				n, length = t.value, t.length
			}
			hasNumber = true
			switch {
			case sc.peek.isSymbol(':'):
				tz.hour, tz.minute = n, jsNone
			case length == 1 || length == 2:
				tz.hour, tz.minute = n, 0 // GMT-8
			case length == 3 || length == 4:
				tz.hour, tz.minute = n/100, n%100 // hhmm
			default:
				return 0, false
			}
		case (tok.isSign() || tok.isSymbol(')')) && hasNumber:
			return 0, false
		}
	}

	year, month, dd, ok := day.write()
	if !ok {
		return 0, false
	}
	h, mi, sec, msec, ok := tm.write()
	if !ok {
		return 0, false
	}
	off, hasOffset, ok := tz.offset()
	if !ok {
		return 0, false
	}
	if year < -1_000_000 || year > 1_000_000 { // MakeDay's range
		return 0, false
	}
	t := jsDaysFromCivil(int64(year), month, dd)*86_400_000 +
		int64(h)*3_600_000 + int64(mi)*60_000 + int64(sec)*1000 + int64(msec)
	if hasOffset {
		t -= off * 1000
	}
	if t < -jsMaxTime || t > jsMaxTime {
		return 0, false
	}
	return t, true
}

// jsDaysFromCivil returns the days from 1970-01-01 to the given proleptic
// Gregorian date; day may exceed the month's length and rolls over, as in
// ECMAScript's MakeDay.
func jsDaysFromCivil(y int64, m, d int) int64 {
	// Howard Hinnant's days_from_civil, with the day added last.
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := int64((m + 9) % 12)
	doy := (153*mp + 2) / 5
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468 + int64(d) - 1
}
