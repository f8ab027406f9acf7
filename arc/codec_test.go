package arc

import (
	"bytes"
	"encoding/json"
	"errors"
	"github.com/ThreeDotsLabs/watermill/message"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A typical event body, byte for byte as Arc's JSON.stringify writes it.
const contractExample = `{"type":"order.created","payload":{"orderId":"o-1","total":99},"meta":{"id":"7b0f2a8e-5a1e-4c1b-9d7e-2f4b7c9d1e00","timestamp":"2026-04-28T10:00:00.000Z","correlationId":"req-abc","userId":"u-7","organizationId":"org-1"}}`

func mustUnmarshal(t *testing.T, s string) Event {
	t.Helper()
	var ev Event
	require.NoError(t, Unmarshal([]byte(s), &ev))
	return ev
}

func mustMarshal(t *testing.T, ev Event) string {
	t.Helper()
	b, err := Marshal(ev)
	require.NoError(t, err)
	return string(b)
}

// Golden: what Arc writes, we read and write back byte for byte.
func TestGoldenRoundTrip(t *testing.T) {
	cases := map[string]string{
		"contract example":    contractExample,
		"every field":         `{"type":"order.shipped","payload":{"a":[1,2.5,-0,1e+21,"x"],"b":null},"meta":{"id":"e-1","timestamp":"2026-04-28T10:00:00.123Z","schemaVersion":3,"correlationId":"c-1","causationId":"p-1","partitionKey":"o-9","source":"commerce","idempotencyKey":"k-1","resource":"order","resourceId":"o-9","userId":"u-1","organizationId":"org-1","aggregate":{"type":"Order","id":"o-9"},"hostKey":{"nested":[true,false]},"zeta":"last"}}`,
		"no payload":          `{"type":"x","meta":{"id":"1"}}`,
		"null payload":        `{"type":"x","payload":null,"meta":{"id":"1"}}`,
		"string payload":      `{"type":"x","payload":"just text","meta":{"id":"1"}}`,
		"number payload":      `{"type":"x","payload":12.50,"meta":{"id":"1"}}`,
		"array payload":       `{"type":"x","payload":[{"a":1},[],{}],"meta":{"id":"1"}}`,
		"bool payload":        `{"type":"x","payload":false,"meta":{"id":"1"}}`,
		"colon type":          `{"type":"order:placed","payload":{},"meta":{"id":"1"}}`,
		"dead letter type":    `{"type":"$deadLetter","payload":{},"meta":{"id":"1"}}`,
		"html and separators": "{\"type\":\"a<b>&c/d\",\"payload\":{\"s\":\"<script>\\u2028\"},\"meta\":{\"id\":\"1\",\"source\":\"x<y>&z/\u2028\u2029\x7f\"}}",
		"unicode":             `{"type":"commande.créée","payload":{"nom":"Zoë 🎉 日本"},"meta":{"id":"ü-1","userId":"用户"}}`,
		"control characters":  `{"type":"x","payload":{},"meta":{"id":"1","source":"a\nb\tc\r\"q\"\\\b\f\u0001\u001f"}}`,
		"empty aggregate":     `{"type":"x","meta":{"id":"1","aggregate":{}}}`,
		"aggregate type only": `{"type":"x","meta":{"id":"1","aggregate":{"type":"Order"}}}`,
		"known key odd type":  `{"type":"x","meta":{"id":"1","resourceId":123,"schemaVersion":"2","userId":{"id":7}}}`,
		"payload whitespace":  `{"type":"x","payload":{ "a" : [ 1 , 2 ] },"meta":{"id":"1"}}`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			ev := mustUnmarshal(t, in)
			assert.Equal(t, in, mustMarshal(t, ev))
		})
	}
}

func TestUnmarshalFields(t *testing.T) {
	ev := mustUnmarshal(t, `{"type":"t","payload":{"p":1},"meta":{"id":"i","timestamp":"2026-04-28T10:00:00.5+02:00",
		"schemaVersion":7,"correlationId":"c","causationId":"ca","partitionKey":"pk","source":"s","idempotencyKey":"ik",
		"resource":"r","resourceId":"ri","userId":"u","organizationId":"o","aggregate":{"type":"A","id":"1"},"x-host":[1]}}`)
	want := Event{Type: "t", Payload: json.RawMessage(`{"p":1}`), Meta: Meta{
		ID: "i", Timestamp: time.Date(2026, 4, 28, 8, 0, 0, 500e6, time.UTC), SchemaVersion: 7,
		CorrelationID: "c", CausationID: "ca", PartitionKey: "pk", Source: "s", IdempotencyKey: "ik",
		Resource: "r", ResourceID: "ri", UserID: "u", OrganizationID: "o", Aggregate: &Aggregate{"A", "1"},
		Extra: map[string]json.RawMessage{"x-host": json.RawMessage(`[1]`)},
	}}
	assert.Equal(t, want, ev)
}

// Arc writes "userId":null and its handlers see null: every optional meta
// key read as null is written back as null, in its place.
func TestUnmarshalNullsAreKept(t *testing.T) {
	in := `{"type":"t","payload":null,"meta":{"id":"i","timestamp":null,"schemaVersion":null,` +
		`"correlationId":null,"causationId":null,"partitionKey":null,"source":null,"idempotencyKey":null,"resource":null,` +
		`"resourceId":null,"userId":null,"organizationId":null,"aggregate":null}}`
	ev := mustUnmarshal(t, in)
	assert.Empty(t, ev.Meta.UserID)
	assert.True(t, ev.Meta.Timestamp.IsZero())
	assert.Nil(t, ev.Meta.Aggregate)
	assert.Equal(t, json.RawMessage("null"), ev.Meta.Extra["userId"])
	assert.Len(t, ev.Meta.Extra, 12)
	assert.Equal(t, in, mustMarshal(t, ev))

	// In wire order, not the default one.
	in = `{"type":"t","meta":{"userId":null,"id":"i","organizationId":"o","timestamp":"2026-01-01T00:00:00.000Z"}}`
	assert.Equal(t, in, mustMarshal(t, mustUnmarshal(t, in)))
}

func TestUnmarshalLastDuplicateWins(t *testing.T) {
	ev := mustUnmarshal(t, `{"type":"a","type":"b","meta":{"id":"1","userId":7,"userId":"u","resourceId":"r","resourceId":9}}`)
	assert.Equal(t, "b", ev.Type)
	assert.Equal(t, "u", ev.Meta.UserID)
	assert.Equal(t, "", ev.Meta.ResourceID)
	assert.Equal(t, map[string]json.RawMessage{"resourceId": json.RawMessage("9")}, ev.Meta.Extra)
}

func TestUnmarshalEscapedKeysAndStrings(t *testing.T) {
	ev := mustUnmarshal(t, `{"t\u0079pe":"caf\u00e9","meta":{"\u0069d":"\ud83c\udf89","user\u0049d":"a\/b"}}`)
	assert.Equal(t, "café", ev.Type)
	assert.Equal(t, "🎉", ev.Meta.ID)
	assert.Equal(t, "a/b", ev.Meta.UserID)
	assert.Equal(t, `{"type":"café","meta":{"id":"🎉","userId":"a/b"}}`, mustMarshal(t, ev))
}

func TestUnmarshalIgnoresUnknownTopLevelKeys(t *testing.T) {
	ev := mustUnmarshal(t, `{"version":2,"type":"t","meta":{"id":"1"},"extra":{"deep":[1,{"x":null}]}}`)
	assert.Equal(t, `{"type":"t","meta":{"id":"1"}}`, mustMarshal(t, ev))
}

func TestBigPayload(t *testing.T) {
	big := `{"items":[` + strings.Repeat(`{"sku":"abc-123","qty":1,"note":"héllo \"world\""},`, 40000) + `{}]}`
	in := `{"type":"bulk","payload":` + big + `,"meta":{"id":"1","timestamp":"2026-04-28T10:00:00.000Z"}}`
	require.Greater(t, len(in), 1<<20, "larger than Arc's default maxPayloadBytes")
	ev := mustUnmarshal(t, in)
	assert.Equal(t, big, string(ev.Payload))
	assert.Equal(t, in, mustMarshal(t, ev))
}

// A payload may nest DefaultMaxDepth-1 levels (the event is the first);
// one more makes the event malformed, so a router dead-letters it once
// instead of wedging on an envelope no writer can encode.
func TestNestingBoundedOnRead(t *testing.T) {
	t.Parallel()
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	event := func(payload string) []byte {
		return []byte(`{"type":"t","payload":` + payload + `,"meta":{"id":"1"}}`)
	}
	ev := mustUnmarshal(t, string(event(nest(DefaultMaxDepth-1))))
	assert.Equal(t, nest(DefaultMaxDepth-1), string(ev.Payload))

	var out Event
	err := Unmarshal(event(nest(DefaultMaxDepth)), &out)
	require.ErrorIs(t, err, ErrMalformedEvent)
	assert.Contains(t, err.Error(), "nested too deeply")

	deep := nest(10000)
	require.NoError(t, Limits{MaxDepth: NoLimit}.Unmarshal(event(deep), &out), "NoLimit takes what V8 takes")
	assert.Equal(t, deep, string(out.Payload))
	require.ErrorIs(t, Limits{MaxDepth: 5}.Unmarshal(event(nest(5)), &out), ErrMalformedEvent)
	require.NoError(t, Limits{MaxDepth: 5}.Unmarshal(event(nest(4)), &out))

	// The same bound on the way in from a Watermill message.
	msg := message.NewMessage("1", []byte(nest(DefaultMaxDepth)))
	msg.Metadata.Set(MetadataType, "t")
	_, err = FromMessage(msg)
	require.ErrorIs(t, err, ErrMalformedEvent)
	msg.Payload = []byte(nest(DefaultMaxDepth - 1))
	_, err = FromMessage(msg)
	require.NoError(t, err)
}

// A type longer than MaxTypeBytes is malformed on read, from the wire and
// from a message; Arc's own longest types pass with room to spare.
func TestTypeLengthBoundedOnRead(t *testing.T) {
	t.Parallel()
	event := func(typ string) []byte { return []byte(`{"type":"` + typ + `","meta":{"id":"1"}}`) }
	var out Event
	require.NoError(t, Unmarshal(event(strings.Repeat("é", MaxTypeLength)), &out))
	require.NoError(t, Unmarshal(event(strings.Repeat("a", DefaultMaxTypeBytes)), &out))
	err := Unmarshal(event(strings.Repeat("a", DefaultMaxTypeBytes+1)), &out)
	require.ErrorIs(t, err, ErrMalformedEvent)
	var de *DecodeError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, "type", de.Field)
	require.NoError(t, Limits{MaxTypeBytes: NoLimit}.Unmarshal(event(strings.Repeat("a", 1<<20)), &out))

	msg := message.NewMessage("1", []byte("null"))
	msg.Metadata.Set(MetadataType, strings.Repeat("a", DefaultMaxTypeBytes+1))
	_, err = FromMessage(msg)
	require.ErrorAs(t, err, &de)
	assert.Equal(t, MetadataType, de.Field)
}

func TestLimitsValidateEachField(t *testing.T) {
	t.Parallel()
	require.NoError(t, Limits{}.Validate())
	require.NoError(t, Limits{MaxDepth: NoLimit, MaxTypeBytes: NoLimit}.Validate())
	require.ErrorIs(t, Limits{MaxDepth: -2}.Validate(), ErrInvalidConfig)
	require.ErrorIs(t, Limits{MaxTypeBytes: -2}.Validate(), ErrInvalidConfig)
}

// Invalid UTF-8 in meta.id is kept, on read and through the message
// mapping, and written back as it came: distinct ids never collide.
func TestIDKeepsInvalidUTF8(t *testing.T) {
	t.Parallel()
	a := "{\"type\":\"t\",\"meta\":{\"id\":\"x\xff\"}}"
	b := "{\"type\":\"t\",\"meta\":{\"id\":\"x\xfe\"}}"
	ea, eb := mustUnmarshal(t, a), mustUnmarshal(t, b)
	assert.Equal(t, "x\xff", ea.Meta.ID)
	assert.NotEqual(t, ea.Meta.ID, eb.Meta.ID)
	assert.Equal(t, a, mustMarshal(t, ea))

	msg, err := UnmarshalMessage([]byte(a))
	require.NoError(t, err)
	assert.Equal(t, "x\xff", msg.UUID)
	back, err := FromMessage(msg)
	require.NoError(t, err)
	assert.Equal(t, a, mustMarshal(t, back))

	// With escapes in the same id, the bytes are still kept.
	esc := mustUnmarshal(t, "{\"type\":\"t\",\"meta\":{\"id\":\"\\n\xff\\u00e9\\ud83d\\ude00\"}}")
	assert.Equal(t, "\n\xffé😀", esc.Meta.ID)
}

func TestUnmarshalMalformed(t *testing.T) {
	cases := []struct {
		name, in, field, says string
	}{
		{"empty input", ``, "", "not JSON"},
		{"not JSON", `{"type":`, "", "not JSON"},
		{"array", `[1,2]`, "", "not a JSON object"},
		{"string", `"order.created"`, "", "not a JSON object"},
		{"bom", "\ufeff" + contractExample, "", "not JSON"},
		{"trailing garbage", contractExample + `x`, "", "not JSON"},
		{"two values", contractExample + contractExample, "", "not JSON"},
		{"missing type", `{"meta":{"id":"1"}}`, "type", "non-empty string"},
		{"empty type", `{"type":"","meta":{"id":"1"}}`, "type", "non-empty string"},
		{"number type", `{"type":5,"meta":{"id":"1"}}`, "type", "must be a string"},
		{"null type", `{"type":null,"meta":{"id":"1"}}`, "type", "must be a string"},
		{"missing meta", `{"type":"t"}`, "meta", "missing"},
		{"null meta", `{"type":"t","meta":null}`, "meta", "JSON object"},
		{"array meta", `{"type":"t","meta":[]}`, "meta", "JSON object"},
		{"missing id", `{"type":"t","meta":{}}`, "meta.id", "non-empty string"},
		{"empty id", `{"type":"t","meta":{"id":""}}`, "meta.id", "non-empty string"},
		{"null id", `{"type":"t","meta":{"id":null}}`, "meta.id", "non-empty string"},
		{"number id", `{"type":"t","meta":{"id":420}}`, "meta.id", "non-empty string"},
		{"control char", "{\"type\":\"a\nb\",\"meta\":{\"id\":\"1\"}}", "", "not JSON"},
		{"bad escape", `{"type":"\x","meta":{"id":"1"}}`, "", "not JSON"},
		{"bad payload", `{"type":"t","payload":{"a":},"meta":{"id":"1"}}`, "", "not JSON"},
		{"leading zero", `{"type":"t","payload":01,"meta":{"id":"1"}}`, "", "not JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ev Event
			err := Unmarshal([]byte(c.in), &ev)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrMalformedEvent)
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, c.field, de.Field)
			assert.Contains(t, err.Error(), c.says)
			assert.Equal(t, Event{}, ev, "the target is written only on success")
			assert.Equal(t, json.Valid([]byte(c.in)), errors.As(err, new(*syntaxError)) == false,
				"a syntax error is reported exactly when encoding/json finds the input invalid")
		})
	}
}

func TestStdlibJSONUsesArcCodec(t *testing.T) {
	var ev Event
	require.NoError(t, json.Unmarshal([]byte(contractExample), &ev))
	assert.Equal(t, "req-abc", ev.Meta.CorrelationID)
	out, err := json.Marshal(ev)
	require.NoError(t, err)
	assert.JSONEq(t, contractExample, string(out))

	// Inside another value, through encoding/json, with HTML escaping off: exact bytes.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	require.NoError(t, enc.Encode(struct {
		Events []Event `json:"events"`
	}{[]Event{ev}}))
	assert.Equal(t, `{"events":[`+contractExample+`]}`+"\n", buf.String())

	// Meta alone.
	var m Meta
	require.NoError(t, json.Unmarshal([]byte(`{"id":"1","userId":"u","k":1}`), &m))
	b, err := json.Marshal(m)
	require.NoError(t, err)
	assert.Equal(t, `{"id":"1","userId":"u","k":1}`, string(b))
}

func TestMarshalRefusesWhatArcCannotRead(t *testing.T) {
	ok := Event{Type: "t", Meta: Meta{ID: "1"}}
	cases := map[string]func(*Event){
		"empty type":       func(e *Event) { e.Type = "" },
		"empty id":         func(e *Event) { e.Meta.ID = "" },
		"payload not JSON": func(e *Event) { e.Payload = json.RawMessage(`{"a":`) },
		"extra not JSON":   func(e *Event) { e.Meta.Extra = map[string]json.RawMessage{"k": json.RawMessage(`nope`)} },
		"extra id":         func(e *Event) { e.Meta.Extra = map[string]json.RawMessage{"id": json.RawMessage(`"x"`)} },
		"extra timestamp": func(e *Event) {
			e.Meta.Extra = map[string]json.RawMessage{"timestamp": json.RawMessage(`"2026-01-01T00:00:00Z"`)}
		},
		"year 10000":    func(e *Event) { e.Meta.Timestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"negative year": func(e *Event) { e.Meta.Timestamp = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			ev := ok
			mutate(&ev)
			_, err := Marshal(ev)
			assert.ErrorIs(t, err, ErrInvalidEvent)
			_, err = ToMessage(ev)
			assert.ErrorIs(t, err, ErrInvalidEvent)
		})
	}
}

func TestExtraTypedFieldWins(t *testing.T) {
	ev := Event{Type: "t", Meta: Meta{ID: "1", UserID: "u", Extra: map[string]json.RawMessage{
		"userId": json.RawMessage(`7`), "resourceId": json.RawMessage(`8`)}}}
	assert.Equal(t, `{"type":"t","meta":{"id":"1","resourceId":8,"userId":"u"}}`, mustMarshal(t, ev))
}

func TestAppendJSONAppends(t *testing.T) {
	ev := mustUnmarshal(t, contractExample)
	b, err := ev.AppendJSON([]byte("prefix:"))
	require.NoError(t, err)
	assert.Equal(t, "prefix:"+contractExample, string(b))
}

func TestScanValueAgreesWithStdlib(t *testing.T) {
	for _, s := range []string{`1`, `-0`, `-`, `1.`, `.5`, `1e`, `1e+`, `1E-2`, `0.0e0`, `"\u12"`, `"\u1234"`,
		`{"a" 1}`, `{"a":1,}`, `[1,]`, `[,]`, `{,}`, `tru`, `nul`, `[1 2]`, `{"a":1 "b":2}`, `{1:2}`, "\"\x7f\"",
		"\"\xff\"", ` [ ] `, `{"a":[{"b":{}}]}`, `"\/"`, `"\a"`, `[[[]]`, `]`, `}`, ``} {
		assert.Equal(t, json.Valid([]byte(s)), validJSON([]byte(s)) == nil, "%q", s)
	}
}

// Values the typed fields cannot hold survive in Extra.
func TestLosslessEmptyAndZero(t *testing.T) {
	for _, in := range []string{
		`{"type":"t","meta":{"id":"1","schemaVersion":0}}`,
		`{"type":"t","meta":{"id":"1","schemaVersion":-0}}`,
		`{"type":"t","meta":{"id":"1","correlationId":"","userId":""}}`,
		`{"type":"t","meta":{"id":"1","aggregate":{"type":""}}}`,
	} {
		assert.Equal(t, in, mustMarshal(t, mustUnmarshal(t, in)))
	}
}

func TestLargeSchemaVersionRoundTrips(t *testing.T) {
	ev, err := NewEvent("t", nil, Meta{SchemaVersion: 1 << 40})
	require.NoError(t, err)
	msg, err := ToMessage(ev)
	require.NoError(t, err)
	back, err := FromMessage(msg)
	require.NoError(t, err)
	assert.True(t, ev.Equal(back))
	assert.True(t, ev.Equal(mustUnmarshal(t, mustMarshal(t, ev))))
}

// Reading, writing and mapping never judge payload content: Arc delivers
// such events, so arcmill must relay them byte for byte.
func TestWritesAndReadsPassNonDateTimestamps(t *testing.T) {
	t.Parallel()
	in := `{"type":"t","payload":{"a":[{"timestamp":"yesterday"}],"timestamp":""},"meta":{"id":"1","timestamp":"soon"}}`
	ev := mustUnmarshal(t, in)
	assert.Equal(t, in, mustMarshal(t, ev))
	msg, err := ToMessage(ev)
	require.NoError(t, err)
	back, err := FromMessage(msg)
	require.NoError(t, err)
	assert.Equal(t, in, mustMarshal(t, back))
	require.NoError(t, ev.Validate(), "a raw meta.timestamp counts as one")

	// Validate wants a timestamp, as Arc's createEvent always sets one.
	assert.ErrorIs(t, Event{Type: "t", Meta: Meta{ID: "1"}}.Validate(), ErrInvalidEvent)
}

func TestStdlibJSONConventions(t *testing.T) {
	var holder struct {
		Event *Event `json:"event"`
		Meta  Meta   `json:"meta"`
	}
	require.NoError(t, json.Unmarshal([]byte(`{"event":null,"meta":null}`), &holder))
	assert.Nil(t, holder.Event)

	b, err := json.Marshal(Meta{UserID: "u"})
	require.NoError(t, err)
	assert.Equal(t, `{"userId":"u"}`, string(b))

	var m Meta
	assert.ErrorIs(t, m.UnmarshalJSON([]byte(`{"userId":"u"} trailing`)), ErrMalformedEvent)
}

func TestExtraMustNotShadowTypedFields(t *testing.T) {
	for k, v := range map[string]string{"userId": `"u"`, "schemaVersion": `2`, "aggregate": `{"type":"A"}`} {
		_, err := Marshal(Event{Type: "t", Meta: Meta{ID: "1", Extra: map[string]json.RawMessage{k: json.RawMessage(v)}}})
		assert.ErrorIs(t, err, ErrInvalidEvent, k)
	}
}

// Ids with lone surrogates (meta.id, correlationId, causationId,
// idempotencyKey) are kept: read, mapped to a message and back, and written
// again, each gives its own bytes, and no two distinct ids collide, not
// with each other, nor with U+FFFD, invalid UTF-8 or the escape's text.
func TestIDsKeepLoneSurrogates(t *testing.T) {
	t.Parallel()
	ids := []string{`\ud800`, `\ud801`, `\udc00`, `\udfff`, `\ud800\ud800`, `\udc00\ud800`, `\ud83d`,
		`\ufffd`, `\ufffd\ufffd\ufffd`, "\xff", "\xed\xa0", `\\ud800`, `x\ud800y`, `\ud83d\ude00`, `a`}
	seen := map[string]string{}
	for _, id := range ids {
		in := `{"type":"t","meta":{"id":"` + id + `","correlationId":"c` + id + `","causationId":"p` + id +
			`","idempotencyKey":"k` + id + `"}}`
		ev := mustUnmarshal(t, in)
		if other, dup := seen[ev.Meta.ID]; dup {
			t.Errorf("%q and %q collide", id, other)
		}
		seen[ev.Meta.ID] = id
		assert.Equal(t, "c"+ev.Meta.ID, ev.Meta.CorrelationID, id)
		assert.Equal(t, "p"+ev.Meta.ID, ev.Meta.CausationID, id)
		assert.Equal(t, "k"+ev.Meta.ID, ev.Meta.IdempotencyKey, id)
		assert.Empty(t, ev.Meta.Extra, "typed fields, not raw: %s", id)
		want := strings.Replace(in, `\ud83d\ude00`, "😀", -1) // JSON.stringify writes a pair as the character
		want = strings.Replace(want, `\ufffd`, "\ufffd", -1)
		assert.Equal(t, want, mustMarshal(t, ev), "written back: %s", id)

		msg, err := ToMessage(ev)
		require.NoError(t, err)
		assert.Equal(t, ev.Meta.ID, msg.UUID)
		assert.Equal(t, ev.Meta.CorrelationID, msg.Metadata.Get(MetadataCorrelationID))
		assert.Equal(t, ev.Meta.CausationID, msg.Metadata.Get(MetadataCausationID))
		back, err := FromMessage(msg)
		require.NoError(t, err)
		assert.Equal(t, want, mustMarshal(t, back), "through a message: %s", id)
	}
	// JSON.stringify writes a lone surrogate in lower case; the upper-case
	// escape is the same string.
	upper := mustUnmarshal(t, `{"type":"t","meta":{"id":"\uD800"}}`)
	assert.Equal(t, mustUnmarshal(t, `{"type":"t","meta":{"id":"\ud800"}}`).Meta.ID, upper.Meta.ID)
	assert.Equal(t, `{"type":"t","meta":{"id":"\ud800"}}`, mustMarshal(t, upper))
	// Raw CESU-8 bytes (a high and a low surrogate in a row) go back raw.
	cesu := "{\"type\":\"t\",\"meta\":{\"id\":\"\xed\xa0\xbd\xed\xb8\x80\"}}"
	assert.Equal(t, cesu, mustMarshal(t, mustUnmarshal(t, cesu)))
}

// DedupeKey tells apart children whose causation ids, and events whose
// idempotency keys, differ only in a lone surrogate: before ids kept them,
// such values were dropped from the typed fields and deduplication merged
// them (causation) or skipped them (idempotency key).
func TestDedupeKeyKeepsLoneSurrogates(t *testing.T) {
	t.Parallel()
	key := func(meta string) string {
		return DedupeKey(mustUnmarshal(t, `{"type":"t","payload":{},"meta":{"id":"1",`+meta+`}}`))
	}
	k1 := key(`"idempotencyKey":"k","causationId":"\ud800"`)
	k2 := key(`"idempotencyKey":"k","causationId":"\ud801"`)
	k3 := key(`"idempotencyKey":"k","causationId":"\ufffd"`)
	assert.NotEmpty(t, k1)
	assert.NotEqual(t, k1, k2)
	assert.NotEqual(t, k1, k3)
	assert.NotEqual(t, k2, k3)
	assert.Equal(t, k1, key(`"idempotencyKey":"k","causationId":"\uD800"`), "the same id, escaped in upper case")
	i1, i2 := key(`"idempotencyKey":"\ud800"`), key(`"idempotencyKey":"\udc00"`)
	assert.NotEmpty(t, i1, "deduplicated, not skipped")
	assert.NotEqual(t, i1, i2)
}

// A message mapped before ids kept lone surrogates carries such an id in
// arc_meta_<key>: it is read into the typed field, and written back the
// same.
func TestFromMessageTakesRawIDsIntoTypedFields(t *testing.T) {
	t.Parallel()
	msg := message.NewMessage("1", []byte(`{}`))
	msg.Metadata.Set(MetadataType, "t")
	msg.Metadata.Set(MetadataExtraPrefix+"correlationId", `"\ud800"`)
	msg.Metadata.Set(MetadataExtraPrefix+"userId", `"\ud800"`)
	ev, err := FromMessage(msg)
	require.NoError(t, err)
	assert.Equal(t, "\xed\xa0\x80", ev.Meta.CorrelationID)
	assert.Equal(t, json.RawMessage(`"\ud800"`), ev.Meta.Extra["userId"], "other fields stay raw")
	assert.NotContains(t, ev.Meta.Extra, "correlationId")
	assert.Equal(t, `{"type":"t","payload":{},"meta":{"id":"1","correlationId":"\ud800","userId":"\ud800"}}`,
		mustMarshal(t, ev))
}
