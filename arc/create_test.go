package arc

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// NewEvent refuses exactly the payload "timestamp" strings that Node reads as
// Invalid Date, and says so with the path.
func TestNewEventRefusesOnlyNodeInvalidDates(t *testing.T) {
	t.Parallel()
	refused := map[string]string{
		`{"timestamp":"yesterday"}`:                       `payload.timestamp "yesterday" is what Node's new Date() reads as Invalid Date; Arc handlers would see an Invalid Date`,
		`{"audit":{"entries":[{"timestamp":"n/a"}]}}`:     `payload.audit.entries[0].timestamp "n/a" is what Node's new Date() reads as Invalid Date`,
		`{"timestamp":""}`:                                `payload.timestamp "" is what Node's new Date() reads as Invalid Date`,
		`[{"a":1},{"b":[{"timestamp":"1700000000000"}]}]`: `payload[1].b[0].timestamp "1700000000000"`,
		`{"timestamp":"2026-02-30T25:00:00Z"}`:            `payload.timestamp "2026-02-30T25:00:00Z"`,
	}
	for payload, says := range refused {
		_, err := NewEvent("t", json.RawMessage(payload), Meta{})
		require.ErrorIs(t, err, ErrInvalidEvent, payload)
		assert.Contains(t, err.Error(), says)

		ev, err := NewEvent("t", json.RawMessage(payload), Meta{}, AllowInvalidDates())
		require.NoError(t, err, "AllowInvalidDates turns the check off")
		_, err = NewChild(ev, "c", json.RawMessage(payload), Meta{})
		assert.ErrorIs(t, err, ErrInvalidEvent, "NewChild checks too")
		_, err = NewChild(ev, "c", json.RawMessage(payload), Meta{}, AllowInvalidDates())
		assert.NoError(t, err)
	}
	for _, ok := range []string{"2026-01-01T10:00:00", "Thu, 01 Jan 2026 00:00:00 GMT", "2026-01-01", "2026",
		"2026-01-01t10:00:00z", "2026-01-01T10:00:00+0000", "+002026-01-01T00:00:00Z", "-000001-01-01T00:00:00Z",
		"2026/01/01", "Jan 1 2026", "1 January 2026 10:00", "2026-01-01 10:00:00", "0001-01-01T00:00:00Z"} {
		payload := `{"timestamp":` + string(mustJSON(t, ok)) + `,"n":{"timestamp":12}}`
		_, err := NewEvent("t", json.RawMessage(payload), Meta{})
		assert.NoError(t, err, ok)
	}

	// Meta values are read by the same reviver.
	_, err := NewEvent("t", nil, Meta{Extra: map[string]json.RawMessage{"audit": json.RawMessage(`{"timestamp":"x"}`)}})
	assert.ErrorContains(t, err, `meta.audit.timestamp "x"`)
	_, err = NewEvent("t", nil, Meta{Extra: map[string]json.RawMessage{"timestamp": json.RawMessage(`"soon"`)}})
	assert.ErrorContains(t, err, `meta.timestamp "soon"`)
	ev, err := NewEvent("t", nil, Meta{Extra: map[string]json.RawMessage{"timestamp": json.RawMessage(`1777370400123`)}})
	require.NoError(t, err, "a number is left a number by Arc's reviver")
	assert.True(t, ev.Meta.Timestamp.IsZero(), "the caller's raw timestamp wins, as in createEvent")
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// Arc writes a lone surrogate in a meta string as \ud800; so does arcmill,
// from the wire, through a message and back.
func TestLoneSurrogatesInMetaSurvive(t *testing.T) {
	t.Parallel()
	in := `{"type":"t","meta":{"id":"1","userId":"\ud800","source":"a\udc00b","correlationId":"\ud83d\ude00",` +
		`"aggregate":{"type":"\udbff","id":"x"},"k":"\ud800"}}`
	ev := mustUnmarshal(t, in)
	assert.Empty(t, ev.Meta.UserID, "a Go string cannot hold it")
	assert.Equal(t, json.RawMessage(`"\ud800"`), ev.Meta.Extra["userId"])
	assert.Equal(t, "😀", ev.Meta.CorrelationID, "a surrogate pair is an ordinary character")
	// JSON.stringify writes the pair as the character itself.
	want := strings.Replace(in, `\ud83d\ude00`, "😀", 1)
	assert.Equal(t, want, mustMarshal(t, ev))

	msg, err := ToMessage(ev)
	require.NoError(t, err)
	back, err := FromMessage(msg)
	require.NoError(t, err)
	assert.Equal(t, want, mustMarshal(t, back))
}

// Key order survives a Watermill message, and a meta decoded in the
// default order records none (nothing extra in the metadata).
func TestKeyOrderThroughMessage(t *testing.T) {
	t.Parallel()
	in := `{"type":"t","meta":{"organizationId":"o","id":"1","userId":null,"z":1,"timestamp":"2026-01-01T00:00:00.000Z","a":2}}`
	msg, err := UnmarshalMessage([]byte(in))
	require.NoError(t, err)
	assert.Equal(t, `["organizationId","id","userId","z","timestamp","a"]`, msg.Metadata[MetadataKeyOrder])
	ev, err := FromMessage(msg)
	require.NoError(t, err)
	assert.Equal(t, in, mustMarshal(t, ev))

	msg, err = UnmarshalMessage([]byte(contractExample))
	require.NoError(t, err)
	assert.NotContains(t, msg.Metadata, MetadataKeyOrder)

	// A key set later in Go, absent from the recorded order, follows in
	// the default order.
	ev.Meta.Source = "s"
	assert.Equal(t, `{"type":"t","meta":{"organizationId":"o","id":"1","userId":null,"z":1,"timestamp":"2026-01-01T00:00:00.000Z","a":2,"source":"s"}}`,
		mustMarshal(t, ev))
}

func TestHasLoneSurrogate(t *testing.T) {
	t.Parallel()
	cases := map[string]bool{
		`"\ud800"`: true, `"\udc00"`: true, `"a\ud800b"`: true, `"\ud800\ud800"`: true, `"\udc00\ud800"`: true,
		`"\ud800\u0041"`: true, `"\ud800\n"`: true, `"\ud83d\ude00"`: false, `"\\ud800"`: false, `"\\\ud800"`: true,
		`"plain"`: false, `"\u0041\n"`: false, `"\uD83D\uDE00"`: false, `"\uDBFF"`: true, `"x\ud83d\ude00\udfff"`: true,
	}
	for in, want := range cases {
		assert.Equal(t, want, hasLoneSurrogate([]byte(in)), in)
		_, ok := decodeString([]byte(in))
		assert.Equal(t, !want, ok, in)
	}
}

// Arc's createChildEvent copies what the parent holds, whatever its type.
func TestNewChildInheritsOddTypedValues(t *testing.T) {
	parent := mustUnmarshal(t, `{"type":"p","meta":{"id":"P","userId":42,"organizationId":7,"correlationId":99,"source":{"app":"x"},"resourceId":5}}`)
	child, err := NewChild(parent, "c", nil, Meta{ID: "C", Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	require.NoError(t, err)
	assert.Equal(t, `{"type":"c","payload":null,"meta":{"id":"C","timestamp":"2026-01-01T00:00:00.000Z","correlationId":99,"causationId":"P","userId":42,"organizationId":7,"source":{"app":"x"}}}`,
		mustMarshal(t, child))

	// The caller's typed field replaces the inherited odd value.
	child, err = NewChild(parent, "c", nil, Meta{UserID: "u"})
	require.NoError(t, err)
	assert.Equal(t, "u", child.Meta.UserID)
	assert.NotContains(t, child.Meta.Extra, "userId")
	assert.Equal(t, "u", mustUnmarshal(t, mustMarshal(t, child)).Meta.UserID)

	// An empty correlation id is inherited as such, not replaced by the parent's id.
	parent = mustUnmarshal(t, `{"type":"p","meta":{"id":"P","correlationId":""}}`)
	child, err = NewChild(parent, "c", nil, Meta{})
	require.NoError(t, err)
	assert.Empty(t, child.Meta.CorrelationID)
	assert.Equal(t, json.RawMessage(`""`), child.Meta.Extra["correlationId"])
}

func TestDeepTimestampCheckIsLinear(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat(`{"a":`, 9000) + `{"timestamp":"x"}` + strings.Repeat(`}`, 9000)
	_, err := NewEvent("t", json.RawMessage(deep), Meta{})
	require.ErrorIs(t, err, ErrInvalidEvent)
	assert.Contains(t, err.Error(), strings.Repeat(".a", 9000)+".timestamp")
}
