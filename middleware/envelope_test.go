package middleware

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// nodeEnvelope is JSON.stringify's output for the envelope below, written by
// Node 20 (an object with the same fields in the same order, the event's
// payload and meta as Arc would hold them).
const nodeEnvelope = "{\"event\":{\"type\":\"billing.charge<x>\",\"payload\":{\"note\":\"a<b>&c\u2028\"},\"meta\":{\"id\":\"e-1\",\"timestamp\":\"2026-04-28T10:00:00.000Z\",\"userId\":null}},\"error\":{\"message\":\"Stripe <timeout> & \u2028 \\u0001 \\\"q\\\"\",\"code\":\"ETIMEDOUT\",\"stack\":\"Error: x\\n    at y\"},\"attempts\":3,\"firstFailedAt\":\"2026-04-28T10:00:01.000Z\",\"lastFailedAt\":\"2026-04-28T10:00:02.500Z\",\"handlerName\":\"order<Projection>\",\"reason\":\"retry_exhausted\",\"errorType\":\"*errors.errorString\",\"sourceTopic\":\"arc:events\",\"pattern\":\"billing.*\",\"consumerGroup\":\"g&1\",\"originalId\":\"1-0\",\"host\":\"h\u2029\",\"raw\":{\"uuid\":\"u-1\",\"metadata\":{\"a\":\"<1>\",\"b\":\"\u2028\"},\"payload\":\"{\\\"x\\\":1}</script>\"}}"

func sampleEnvelope(t *testing.T) DeadLetteredEvent {
	t.Helper()
	var ev arc.Event
	require.NoError(t, arc.Unmarshal([]byte("{\"type\":\"billing.charge<x>\",\"payload\":{\"note\":\"a<b>&c\u2028\"},"+
		"\"meta\":{\"id\":\"e-1\",\"timestamp\":\"2026-04-28T10:00:00.000Z\",\"userId\":null}}"), &ev))
	return DeadLetteredEvent{
		Event:         ev,
		Error:         ErrorInfo{Message: "Stripe <timeout> & \u2028 \u0001 \"q\"", Code: "ETIMEDOUT", Stack: "Error: x\n    at y"},
		Attempts:      3,
		FirstFailedAt: time.Date(2026, 4, 28, 10, 0, 1, 0, time.UTC),
		LastFailedAt:  time.Date(2026, 4, 28, 12, 0, 2, 500e6, time.FixedZone("CEST", 2*3600)),
		HandlerName:   "order<Projection>",
		Reason:        ReasonRetryExhausted,
		ErrorType:     "*errors.errorString",
		SourceTopic:   "arc:events",
		Pattern:       "billing.*",
		ConsumerGroup: "g&1",
		OriginalID:    "1-0",
		Host:          "h\u2029",
		Raw:           &RawMessage{UUID: "u-1", Metadata: map[string]string{"b": "\u2028", "a": "<1>"}, Payload: "{\"x\":1}</script>"},
	}
}

// MarshalArc writes JSON.stringify's bytes: no HTML escaping, U+2028 raw,
// Arc's field order, the event in Arc's wire JSON.
func TestEnvelopeMarshalArcWritesJSONStringifyBytes(t *testing.T) {
	t.Parallel()
	b, err := sampleEnvelope(t).MarshalArc()
	require.NoError(t, err)
	assert.Equal(t, nodeEnvelope, string(b))
}

// What MarshalArc writes reads back to the same envelope, and says what
// encoding/json says (json.Marshal re-escapes, but the value is the same).
func TestEnvelopeRoundTrips(t *testing.T) {
	t.Parallel()
	dl := sampleEnvelope(t)
	b, err := dl.MarshalArc()
	require.NoError(t, err)
	var back DeadLetteredEvent
	require.NoError(t, json.Unmarshal(b, &back))
	assert.True(t, back.Event.Equal(dl.Event))
	assert.True(t, back.LastFailedAt.Equal(dl.LastFailedAt))
	back.Event, back.LastFailedAt, dl.Event, dl.LastFailedAt = arc.Event{}, time.Time{}, arc.Event{}, time.Time{}
	assert.Equal(t, dl, back)

	viaStd, err := json.Marshal(sampleEnvelope(t))
	require.NoError(t, err)
	var a, c any
	require.NoError(t, json.Unmarshal(b, &a))
	require.NoError(t, json.Unmarshal(viaStd, &c))
	assert.Equal(t, a, c)
}

// Optional fields are left out when empty, as omitempty and Arc do.
func TestEnvelopeOmitsEmptyOptionalFields(t *testing.T) {
	t.Parallel()
	ev, err := arc.NewEvent("t", nil, arc.Meta{ID: "1", Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	require.NoError(t, err)
	b, err := DeadLetteredEvent{Event: ev, Error: ErrorInfo{Message: "m"}, Attempts: 1, Reason: ReasonMalformed,
		FirstFailedAt: ev.Meta.Timestamp, LastFailedAt: ev.Meta.Timestamp}.MarshalArc()
	require.NoError(t, err)
	assert.Equal(t, `{"event":{"type":"t","payload":null,"meta":{"id":"1","timestamp":"2026-01-01T00:00:00.000Z"}},`+
		`"error":{"message":"m"},"attempts":1,"firstFailedAt":"2026-01-01T00:00:00.000Z",`+
		`"lastFailedAt":"2026-01-01T00:00:00.000Z","reason":"malformed"}`, string(b))
}

// Reading is liberal: an event whose payload holds a non-date "timestamp"
// and failure times in other forms are read, not refused.
func TestEnvelopeReadsWhatArcWrites(t *testing.T) {
	t.Parallel()
	in := `{"event":{"type":"t","payload":{"timestamp":null,"at":{"timestamp":"yesterday"}},"meta":{"id":"1","timestamp":"2026-01-01T00:00:00.000Z"}},` +
		`"error":{"message":"exhausted retries"},"attempts":5,"firstFailedAt":"Thu, 01 Jan 2026 00:00:00 GMT","lastFailedAt":"junk"}`
	var dl DeadLetteredEvent
	require.NoError(t, json.Unmarshal([]byte(in), &dl))
	assert.Equal(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), dl.FirstFailedAt)
	assert.True(t, dl.LastFailedAt.IsZero())
	assert.JSONEq(t, `{"timestamp":null,"at":{"timestamp":"yesterday"}}`, string(dl.Event.Payload))

	var bad DeadLetteredEvent
	assert.True(t, errors.Is(json.Unmarshal([]byte(`{"event":{"type":"t","meta":{}}}`), &bad), arc.ErrMalformedEvent))
}
