package arc

import (
	"math/bits"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// AppendMessageJSON appends the Arc JSON of msg's event to b: exactly the
// bytes Marshal writes for FromMessage(msg), or, for a message that is not
// an event, FromMessage's error (b is then returned as it was). It is the
// encode of publishers that write Arc JSON.
//
// A message as ToMessage or a producer maps it (typed fields only, in the
// default key order or an order of typed keys) is written straight from
// its metadata, without building the Event, its payload checked once: a
// third of the time of FromMessage then Marshal. Any other message (Extra
// keys, a malformed marker, a value that needs more than the common
// reading) goes through FromMessage and Marshal themselves.
func AppendMessageJSON(b []byte, msg *message.Message) ([]byte, error) {
	if out, ok := appendMessageDirect(b, msg); ok {
		return out, nil
	}
	ev, err := FromMessage(msg)
	if err != nil {
		return b, err
	}
	return ev.AppendJSON(b)
}

// directMeta holds what appendMessageDirect reads from a message's
// metadata: the typed fields' values, as strings, before any check.
type directMeta struct {
	typ, ts, version, order string
	// str holds the optional string fields, by knownRank.
	str            [len(knownKeys)]string
	aggType, aggID string
	agg, absent    bool

	// Parsed, for writing.
	t      time.Time
	tsAsIs bool // ts is written as it is: see canonicalTimestamp
	n      int64
	set    uint16 // by rank, the fields written: see findSet
}

// canonicalTimestamp reports whether ts is already what Marshal writes for
// it (YYYY-MM-DDTHH:mm:ss.sssZ, a real date, not the zero time), as
// ToMessage and Arc's own events give it, and marks it to be written as it
// is: parsing it and formatting it again would give the same bytes, at a
// fifth of the encode's cost.
func (d *directMeta) canonicalTimestamp() bool {
	s := d.ts
	if len(s) != 24 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' ||
		s[23] != 'Z' || s == "0001-01-01T00:00:00.000Z" {
		return false
	}
	digits := true
	num := func(i, n int) int {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c -= '0'; c > 9 {
				digits = false
			}
			v = v*10 + int(c)
		}
		return v
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	hour, minute, sec := num(11, 2), num(14, 2), num(17, 2)
	num(20, 3) // the milliseconds: any three digits
	if !digits || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return false
	}
	d.tsAsIs = true
	return true
}

// daysIn returns the number of days of month in year (proleptic
// Gregorian, as time.Date counts them).
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// Ranks (knownKeys indexes) of the typed fields that are not plain strings.
const (
	rankID            = 0
	rankTimestamp     = 1
	rankSchemaVersion = 2
	rankAggregate     = 12
)

// read takes msg's metadata in one pass (cheaper than a look-up per
// field), and reports false for anything the direct encode leaves to
// FromMessage: a malformed marker, an Extra key.
func (d *directMeta) read(md message.Metadata) bool {
	for k, v := range md {
		switch k {
		case MetadataType:
			d.typ = v
		case MetadataTimestamp:
			d.ts = v
		case MetadataSchemaVersion:
			d.version = v
		case MetadataCorrelationID:
			d.str[3] = v
		case MetadataCausationID:
			d.str[4] = v
		case MetadataPartitionKey:
			d.str[5] = v
		case MetadataSource:
			d.str[6] = v
		case MetadataIdempotencyKey:
			d.str[7] = v
		case MetadataResource:
			d.str[8] = v
		case MetadataResourceID:
			d.str[9] = v
		case MetadataUserID:
			d.str[10] = v
		case MetadataOrganizationID:
			d.str[11] = v
		case MetadataAggregateType:
			d.aggType, d.agg = v, true
		case MetadataAggregateID:
			d.aggID, d.agg = v, true
		case MetadataPayloadAbsent:
			d.absent = v == "true"
		case MetadataKeyOrder:
			d.order = v
		case MetadataMalformed:
			if v != "" {
				return false
			}
		default:
			if strings.HasPrefix(k, MetadataExtraPrefix) {
				return false
			}
		}
	}
	return true
}

// appendMessageDirect is AppendMessageJSON for the messages it writes
// from their metadata; false (and b as it was) for the others. Each check
// is FromMessage's and Marshal's for a meta without Extra, and each
// member is written as Meta.appendMember writes it.
func appendMessageDirect(b []byte, msg *message.Message) ([]byte, bool) {
	if msg == nil || msg.UUID == "" {
		return b, false
	}
	var d directMeta
	if !d.read(msg.Metadata) || d.typ == "" || len(d.typ) > DefaultMaxTypeBytes {
		return b, false
	}
	if d.ts != "" && !d.canonicalTimestamp() {
		// In UTC, years 0000-9999 only, as Meta.checkKeys wants them;
		// Go's form of a far year is FromMessage's to read (and refuse).
		t, ok := parseRFC3339(d.ts, false)
		if !ok {
			return b, false
		}
		d.t = t
	}
	if d.version != "" {
		n, err := strconv.ParseInt(d.version, 10, strconv.IntSize)
		if err != nil {
			return b, false
		}
		d.n = n
	}
	if !d.absent && (len(msg.Payload) == 0 || validJSONDepth(msg.Payload, Limits{}.below(1)) != nil) {
		return b, false
	}
	d.findSet()
	start := len(b)
	b = append(b, `{"type":`...)
	b = appendString(b, d.typ)
	if !d.absent {
		b = append(b, `,"payload":`...)
		b = append(b, msg.Payload...)
	}
	b = append(b, `,"meta":{`...)
	first := true
	var done uint16 // as in Meta.appendJSON: typed keys the order wrote
	if d.order != "" {
		var ok bool
		if b, done, ok = d.appendOrdered(b, msg.UUID, &first); !ok {
			return b[:start], false
		}
	}
	for rest := d.set &^ done; rest != 0; rest &= rest - 1 { // by rank: knownKeys' order
		b = d.appendMember(b, bits.TrailingZeros16(rest), msg.UUID, &first)
	}
	return append(b, '}', '}'), true
}

// appendOrdered writes the members named by d.order, a JSON array of
// typed keys (as ToMessage writes it), in its order, and returns the
// ranks it named. It reports false for an array it does not read as
// simply as that (escapes, spaces, a key of no typed field), which
// FromMessage reads instead.
func (d *directMeta) appendOrdered(b []byte, id string, first *bool) ([]byte, uint16, bool) {
	s := d.order
	var done uint16
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return b, 0, false
	}
	s = s[1 : len(s)-1]
	for s != "" {
		if s[0] != '"' {
			return b, 0, false
		}
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			return b, 0, false
		}
		key := s[1 : 1+end]
		r := knownRank([]byte(key)) // a typed key has no escapes to read
		if r < 0 {
			return b, 0, false
		}
		s = s[end+2:]
		if s != "" {
			if s[0] != ',' || len(s) == 1 {
				return b, 0, false
			}
			s = s[1:]
		}
		done |= 1 << r
		if d.set&(1<<r) != 0 {
			b = d.appendMember(b, r, id, first)
		}
	}
	return b, done, true
}

// findSet marks, in d.set by rank, the typed fields that are set and so
// written (Meta.known).
func (d *directMeta) findSet() {
	d.set = 1 << rankID // the UUID is not empty
	if d.tsAsIs || !d.t.IsZero() {
		d.set |= 1 << rankTimestamp
	}
	if int(d.n) != 0 {
		d.set |= 1 << rankSchemaVersion
	}
	for r := rankSchemaVersion + 1; r < rankAggregate; r++ {
		if d.str[r] != "" {
			d.set |= 1 << r
		}
	}
	if d.agg {
		d.set |= 1 << rankAggregate
	}
}

// appendMember writes the typed field of rank r, which is set (d.set),
// as Meta.appendMember does.
func (d *directMeta) appendMember(b []byte, r int, id string, first *bool) []byte {
	if !*first {
		b = append(b, ',')
	}
	*first = false
	b = append(b, '"')
	b = append(b, knownKeys[r]...)
	b = append(b, '"', ':')
	switch r {
	case rankID:
		return appendKeep(b, id)
	case rankTimestamp:
		b = append(b, '"')
		if d.tsAsIs {
			b = append(b, d.ts...)
		} else {
			b = appendTimestamp(b, d.t)
		}
		return append(b, '"')
	case rankSchemaVersion:
		return strconv.AppendInt(b, int64(int(d.n)), 10)
	case rankAggregate:
		b = append(b, '{')
		if d.aggType != "" {
			b = append(b, `"type":`...)
			b = appendString(b, d.aggType)
		}
		if d.aggID != "" {
			if d.aggType != "" {
				b = append(b, ',')
			}
			b = append(b, `"id":`...)
			b = appendString(b, d.aggID)
		}
		return append(b, '}')
	case 3, 4, 7: // correlationId, causationId, idempotencyKey: ids, kept as they came
		return appendKeep(b, d.str[r])
	}
	return appendString(b, d.str[r])
}
