package arc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
)

// viaEvent is what AppendMessageJSON must equal: FromMessage, then
// AppendJSON.
func viaEvent(b []byte, msg *message.Message) ([]byte, error) {
	ev, err := FromMessage(msg)
	if err != nil {
		return b, err
	}
	return ev.AppendJSON(b)
}

// requireSameEncode checks AppendMessageJSON against viaEvent for msg:
// the same bytes, appended to the same prefix, or the same error.
func requireSameEncode(t *testing.T, msg *message.Message) {
	t.Helper()
	prefix := []byte("prefix")
	want, wantErr := viaEvent(bytes.Clone(prefix), msg)
	got, gotErr := AppendMessageJSON(bytes.Clone(prefix), msg)
	if fmt.Sprint(wantErr) != fmt.Sprint(gotErr) || !bytes.Equal(want, got) {
		t.Fatalf("AppendMessageJSON differs from FromMessage and Marshal for %q %q %q\n got  %q, %v\n want %q, %v",
			msg.UUID, msg.Payload, msg.Metadata, got, gotErr, want, wantErr)
	}
}

// encodeMessages returns messages of every event the package's tests
// read (the fuzz seeds, Arc's goldens), as ToMessage maps them and with
// the key order dropped (as a producer's event has none).
func encodeMessages(t *testing.T) []*message.Message {
	var events []Event
	for _, s := range fuzzSeeds {
		var ev Event
		if Unmarshal([]byte(s), &ev) == nil {
			events = append(events, ev)
		}
	}
	for _, c := range readArcGoldens(t) {
		events = append(events, mustUnmarshal(t, c.Want))
	}
	var msgs []*message.Message
	for _, ev := range events {
		msg, err := ToMessage(ev)
		require.NoError(t, err)
		plain := msg.Copy()
		delete(plain.Metadata, MetadataKeyOrder)
		msgs = append(msgs, msg, plain)
	}
	return msgs
}

// edgeValues are metadata values that test each reading of the direct
// encode: empty, escapes, invalid UTF-8, WTF-8 surrogates (which ids keep
// and other strings replace), odd numbers and times.
var edgeValues = []string{"", "x", "0", "00", "+7", "-1", "1e3", " 1", "9223372036854775808", "true", "null", `"q"`,
	"a\"b\\c\n\u2028\x01", "\xff", "\xed\xa0\x80", "\xed\xa0\x80\xed\xb0\x80", "é🙂",
	"2026-04-28T10:00:00.123Z", "2026-04-28T10:00:00.123456789+05:30", "2026-04-28t10:00:00Z", "2026-04-28",
	"0000-01-01T00:00:00+01:00", "9999-12-31T23:00:00-01:00", "0001-01-01T00:00:00Z", "10000-01-01T00:00:00Z",
	"2026-02-30T00:00:00Z", "2026-04-28T10:00:00.123", "0001-01-01T00:00:00.000Z", "0000-01-01T00:00:00.000Z",
	"2024-02-29T00:00:00.000Z", "2023-02-29T00:00:00.000Z", "1900-02-29T00:00:00.000Z", "2000-02-29T00:00:00.000Z",
	"0000-02-29T00:00:00.000Z", "2026-04-31T00:00:00.000Z", "2026-06-31T00:00:00.000Z", "2026-09-31T00:00:00.000Z",
	"2026-11-31T00:00:00.000Z", "2026-06-30T23:59:59.999Z", "2026-13-01T00:00:00.000Z",
	"2026-00-01T00:00:00.000Z", "2026-01-00T00:00:00.000Z", "2026-01-01T24:00:00.000Z", "2026-01-01T10:60:00.000Z",
	"2026-01-01T10:00:60.000Z", "2026-01-01T10:00:00.000z", "2026-01-01t10:00:00.000Z", "2026-01-01T10:00:00,000Z",
	"2026-01-01T10:00:00.00aZ", "2026-01-01T10:00:0:.000Z", "2026-01-0/T10:00:00.000Z", "2026-01-01T10:00:00.:00Z",
	"+026-01-01T10:00:00.000Z", "2026-01-01T10:00:00.000+", "[]", `["id"]`, `["timestamp","id"]`, `["id","id"]`,
	`["userId","aggregate","id","x"]`, `[ "id"]`, `["id",]`, `["i\u0064"]`, `["id""timestamp"]`, `[`, `["id"`}

// TestAppendMessageJSONMatchesMarshal: for every message of the package's
// events, and for each of those with any one metadata key set to any edge
// value or removed, AppendMessageJSON writes what FromMessage and Marshal
// write, or fails as FromMessage does.
func TestAppendMessageJSONMatchesMarshal(t *testing.T) {
	t.Parallel()
	keys := []string{MetadataType, MetadataTimestamp, MetadataSchemaVersion, MetadataCorrelationID, MetadataCausationID,
		MetadataPartitionKey, MetadataSource, MetadataIdempotencyKey, MetadataResource, MetadataResourceID,
		MetadataUserID, MetadataOrganizationID, MetadataAggregateType, MetadataAggregateID, MetadataPayloadAbsent,
		MetadataKeyOrder, MetadataMalformed, MetadataExtraPrefix + "x", MetadataExtraPrefix, "other"}
	for _, msg := range encodeMessages(t) {
		requireSameEncode(t, msg)
		for _, uuid := range []string{"", "\xed\xa0\x80", "a\"\x00"} {
			m := msg.Copy()
			m.UUID = uuid
			requireSameEncode(t, m)
		}
		for _, payload := range []string{"", "nul", " [1] ", "{}x", `"\ud800"`} {
			m := msg.Copy()
			m.Payload = message.Payload(payload)
			requireSameEncode(t, m)
		}
		for _, k := range keys {
			m := msg.Copy()
			delete(m.Metadata, k)
			requireSameEncode(t, m)
			for _, v := range edgeValues {
				m := msg.Copy()
				m.Metadata = maps.Clone(msg.Metadata)
				m.Metadata[k] = v
				requireSameEncode(t, m)
			}
		}
	}
}

// TestAppendMessageJSONDirect: the messages producers publish (built in
// Go, or read from Arc's wire with their key order) are written from
// their metadata, not through FromMessage: the comparison above tests the
// direct encode, not only the fallback.
func TestAppendMessageJSONDirect(t *testing.T) {
	t.Parallel()
	ev, err := NewEvent("order.created", map[string]any{"orderId": "o-1"}, Meta{UserID: "u-1", CorrelationID: "req-1",
		SchemaVersion: 2, Aggregate: &Aggregate{Type: "Order"}})
	require.NoError(t, err)
	built, err := ToMessage(ev)
	require.NoError(t, err)
	// Arc's createChildEvent order: not the default one, so kept.
	wire, err := ToMessage(mustUnmarshal(t, `{"type":"inventory.reserved","payload":{},"meta":{"id":"c-2",`+
		`"timestamp":"2026-04-28T10:00:00.123Z","correlationId":"req-1","causationId":"p-2","userId":"u-7",`+
		`"organizationId":"org-1","source":"commerce","idempotencyKey":"k-1"}}`))
	require.NoError(t, err)
	require.NotEmpty(t, wire.Metadata[MetadataKeyOrder])
	for name, msg := range map[string]*message.Message{"built in Go": built, "read from the wire": wire} {
		out, ok := appendMessageDirect(nil, msg)
		require.True(t, ok, name)
		want, err := viaEvent(nil, msg)
		require.NoError(t, err)
		require.Equal(t, string(want), string(out), name)
	}
}

// FuzzAppendMessageJSON: for any message, AppendMessageJSON writes what
// FromMessage and Marshal write, or fails as FromMessage does.
func FuzzAppendMessageJSON(f *testing.F) {
	f.Add("1", []byte(`{"a":1}`), "t", "2026-04-28T10:00:00.123Z", "3", "c", "k", "u", `["id","userId"]`, "", "")
	f.Add("", []byte(``), "", "nope", "x", "", "\xed\xa0\x80", "\xff", `[`, "A", "true")
	f.Add("é", []byte(`null`), "$deadLetter", "2026-04-28T10:00:00.123456789-07:00", "-1", "\u2028", "", "",
		`["aggregate","timestamp"]`, "", "")
	f.Fuzz(func(t *testing.T, uuid string, payload []byte, typ, ts, version, corr, key, user, order, aggType, absent string) {
		msg := message.NewMessage(uuid, payload)
		msg.Metadata = message.Metadata{MetadataType: typ, MetadataTimestamp: ts, MetadataSchemaVersion: version,
			MetadataCorrelationID: corr, MetadataIdempotencyKey: key, MetadataUserID: user, MetadataKeyOrder: order,
			MetadataPayloadAbsent: absent}
		if aggType != "" {
			msg.Metadata[MetadataAggregateType] = aggType
		}
		requireSameEncode(t, msg)
		if json.Valid(payload) {
			msg.Metadata[MetadataExtraPrefix+"x"] = string(payload)
			requireSameEncode(t, msg)
		}
	})
}

// plain8 says a word is plain exactly when each of its bytes is, for
// every byte value in every position, beside plain bytes and beside
// bytes that borrow.
func TestPlain8(t *testing.T) {
	t.Parallel()
	plain := func(c byte) bool { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\' }
	for _, fill := range []byte{'a', ' ', 0x7f, '#', '[', 0x00, 0x1f, '"', 0x80} {
		for pos := range 8 {
			for c := range 256 {
				w := bytes.Repeat([]byte{fill}, 8)
				w[pos] = byte(c)
				want := true
				for _, x := range w {
					want = want && plain(x)
				}
				if got := plain8(load8(string(w))); got != want {
					t.Fatalf("plain8(%q) = %v", w, got)
				}
			}
		}
	}
}

// appendStr writes what the byte-at-a-time loop it replaced wrote, for
// strings of every length up to 24 with any one of the bytes it treats
// apart at any position, one or two of them, ids and other strings.
func TestAppendStrMatchesByteLoop(t *testing.T) {
	t.Parallel()
	specials := []string{"\"", "\\", "\x00", "\x1f", "\n", "\x7f", "é", "\u2028", "\xff", "\xed\xa0\x80",
		"\xed\xa0\x80\xed\xb0\x80", "🙂", "\xf0\x9f"}
	check := func(s string) {
		for _, keep := range []bool{false, true} {
			if got, want := appendStr([]byte("x"), s, keep), appendStrRef([]byte("x"), s, keep); !bytes.Equal(got, want) {
				t.Fatalf("appendStr(%q, %v) = %q, want %q", s, keep, got, want)
			}
		}
	}
	for n := 0; n <= 24; n++ {
		base := strings.Repeat("abcdefgh", 3)[:n]
		check(base)
		for pos := 0; pos <= n; pos++ {
			for _, sp := range specials {
				s := base[:pos] + sp + base[pos:]
				check(s)
				for pos2 := pos + len(sp); pos2 <= len(s); pos2++ {
					check(s[:pos2] + "\"" + s[pos2:])
				}
			}
		}
	}
}

// appendStrRef is appendStr as it was before it skipped eight plain bytes
// at a time: the reference it must agree with.
func appendStrRef(b []byte, s string, keep bool) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			if !keep {
				b = append(b, s[start:i]...)
				b = append(b, "\ufffd"...)
				i++
				start = i
				continue
			}
			if sr := surrogateAt(s, i); sr >= 0 {
				if sr < 0xdc00 && surrogateAt(s, i+3) >= 0xdc00 {
					i += 6 // a CESU-8 pair: raw, as it came
					continue
				}
				b = append(b, s[start:i]...)
				b = append(b, '\\', 'u', hexDigits[sr>>12], hexDigits[sr>>8&0xf], hexDigits[sr>>4&0xf], hexDigits[sr&0xf])
				i += 3
				start = i
				continue
			}
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// fuzzMetadataKeys are the keys FuzzAppendMessageJSONMetadata sets: every
// key of the mapping, Extra keys (one named as a typed field, one an id),
// and one outside it.
var fuzzMetadataKeys = []string{MetadataType, MetadataTimestamp, MetadataSchemaVersion, MetadataCorrelationID,
	MetadataCausationID, MetadataPartitionKey, MetadataSource, MetadataIdempotencyKey, MetadataResource,
	MetadataResourceID, MetadataUserID, MetadataOrganizationID, MetadataAggregateType, MetadataAggregateID,
	MetadataPayloadAbsent, MetadataKeyOrder, MetadataMalformed, MetadataExtraPrefix + "x",
	MetadataExtraPrefix + "userId", MetadataExtraPrefix + "correlationId", "other"}

// FuzzAppendMessageJSONMetadata: as FuzzAppendMessageJSON, for any set of
// metadata keys with any values: data is read as (key index, value length,
// value) triples.
func FuzzAppendMessageJSONMetadata(f *testing.F) {
	f.Add("id-1", []byte(`{"a":1}`), []byte("\x00\x01t\x01\x182026-04-28T10:00:00.123Z\x0d\x01A\x0f\x0e[\"aggregate\",\"id\"]"))
	f.Add("id-2", []byte(`null`), []byte("\x00\x01t\x0c\x01o\x0d\x00\x0e\x01\x00\x0f\x0c[\"timestamp\"]\x0a\x02u1"))
	f.Add("\xed\xa0\x80", []byte(``), []byte("\x00\x01t\x0e\x04true\x03\x05\xed\xa0\x80ab\x07\x02\xff\xfe"))
	f.Fuzz(func(t *testing.T, uuid string, payload, data []byte) {
		msg := message.NewMessage(uuid, payload)
		for len(data) >= 2 {
			k, n := fuzzMetadataKeys[int(data[0])%len(fuzzMetadataKeys)], int(data[1])
			data = data[2:]
			n = min(n, len(data))
			msg.Metadata[k] = string(data[:n])
			data = data[n:]
		}
		// One Extra key at most: of two that are not JSON, FromMessage
		// names whichever the map gives it first.
		extra := 0
		for _, k := range fuzzMetadataKeys {
			if _, ok := msg.Metadata[k]; ok && strings.HasPrefix(k, MetadataExtraPrefix) {
				if extra++; extra > 1 {
					delete(msg.Metadata, k)
				}
			}
		}
		requireSameEncode(t, msg)
	})
}
