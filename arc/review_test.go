package arc

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Regression tests for the review of the first version of this package.

// Go's time.Parse reads these; Node's Date parser does not.
func TestParseTimestampOnlyWhatNodeReads(t *testing.T) {
	for _, s := range []string{"2026-04-28T1:00:00Z", "2026-04-28T1:00Z", "2026-04-28T10:00:00,123Z",
		"2026-04-28T10:00:00+24:00", "2026-04-28T10:00:00+23:60", "2026-04-28T10:00:00+2400",
		"2026-04-28T10:00:00+0060", "2026-04-28T10:00:00.Z", "2026-04-28T10:00:00.1234567890Z",
		"2026-4-28T10:00:00Z", "+2026-04-28T10:00:00Z", "2026-04-28T10:00:00+02", "2026-04-28Z"} {
		_, err := ParseTimestamp(s)
		assert.Error(t, err, s)
	}
	_, err := NewEvent("x", map[string]string{"timestamp": "2026-04-28T10:00:00,123Z"}, Meta{})
	assert.ErrorIs(t, err, ErrInvalidEvent)
}

func TestFormatTimestampNeverPanics(t *testing.T) {
	assert.Equal(t, "+010000-01-01T00:00:00.000Z", FormatTimestamp(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)))
	assert.Equal(t, "-000001-01-01T00:00:00.000Z", FormatTimestamp(time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)))
	assert.NotPanics(t, func() { FormatTimestamp(time.Date(100000000, 1, 1, 0, 0, 0, 0, time.UTC)) })
	assert.NotPanics(t, func() { FormatTimestamp(time.Date(-100000000, 1, 1, 0, 0, 0, 0, time.UTC)) })
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

func TestTypeLengthCountsUTF16Units(t *testing.T) {
	assert.Error(t, ValidateType(strings.Repeat("😀", 129)), "258 JavaScript characters")
	assert.NoError(t, ValidateType(strings.Repeat("😀", 128)))
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

func TestDeepTimestampCheckIsLinear(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat(`{"a":`, 9000) + `{"timestamp":"x"}` + strings.Repeat(`}`, 9000)
	_, err := NewEvent("t", json.RawMessage(deep), Meta{})
	require.ErrorIs(t, err, ErrInvalidEvent)
	assert.Contains(t, err.Error(), strings.Repeat(".a", 9000)+".timestamp")
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

func TestDedupeKeyKeepsSameTypeSiblings(t *testing.T) {
	parent, err := NewEvent("order.created", nil, Meta{IdempotencyKey: "req-1"})
	require.NoError(t, err)
	a, _ := NewChild(parent, "email.send", map[string]string{"to": "a@x"}, Meta{})
	b, _ := NewChild(parent, "email.send", map[string]string{"to": "b@x"}, Meta{})
	again, _ := NewChild(parent, "email.send", map[string]string{"to": "a@x"}, Meta{})
	assert.NotEqual(t, DedupeKey(a), DedupeKey(b))
	assert.Equal(t, DedupeKey(a), DedupeKey(again))
}
