package arc

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCorrelationKeyIsWatermills(t *testing.T) {
	assert.Equal(t, middleware.CorrelationIDMetadataKey, MetadataCorrelationID)
}

func TestToMessageMetadata(t *testing.T) {
	ev := mustUnmarshal(t, `{"type":"order.shipped","payload":{"a":1},"meta":{"id":"e-1","timestamp":"2026-04-28T10:00:00.123Z",
		"schemaVersion":3,"correlationId":"c-1","causationId":"p-1","partitionKey":"o-9","source":"commerce","idempotencyKey":"k-1",
		"resource":"order","resourceId":"o-9","userId":"u-1","organizationId":"org-1","aggregate":{"type":"Order","id":"o-9"},"host":{"x":[1]}}}`)
	msg, err := ToMessage(ev)
	require.NoError(t, err)
	assert.Equal(t, "e-1", msg.UUID)
	assert.Equal(t, `{"a":1}`, string(msg.Payload))
	assert.Equal(t, message.Metadata{
		"arc_type": "order.shipped", "arc_timestamp": "2026-04-28T10:00:00.123Z", "arc_schema_version": "3",
		"correlation_id": "c-1", "arc_causation_id": "p-1", "arc_partition_key": "o-9", "arc_source": "commerce",
		"arc_idempotency_key": "k-1", "arc_resource": "order", "arc_resource_id": "o-9", "arc_user_id": "u-1",
		"arc_organization_id": "org-1", "arc_aggregate_type": "Order", "arc_aggregate_id": "o-9", "arc_meta_host": `{"x":[1]}`,
	}, msg.Metadata)
	assert.Equal(t, "c-1", middleware.MessageCorrelationID(msg), "Watermill's helpers see the correlation id")
}

func TestMessageRoundTrip(t *testing.T) {
	ns := time.Date(2026, 4, 28, 10, 0, 0, 123456789, time.FixedZone("x", -7*3600))
	cases := map[string]Event{
		"wire event":       mustUnmarshal(t, contractExample),
		"no payload":       {Type: "t", Meta: Meta{ID: "1"}},
		"null payload":     {Type: "t", Payload: json.RawMessage("null"), Meta: Meta{ID: "1"}},
		"string payload":   {Type: "t", Payload: json.RawMessage(`"s"`), Meta: Meta{ID: "1"}},
		"empty aggregate":  {Type: "t", Meta: Meta{ID: "1", Aggregate: &Aggregate{}}},
		"half aggregate":   {Type: "t", Meta: Meta{ID: "1", Aggregate: &Aggregate{ID: "a"}}},
		"nanosecond time":  {Type: "t", Meta: Meta{ID: "1", Timestamp: ns}},
		"year 1":           {Type: "t", Meta: Meta{ID: "1", Timestamp: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)}},
		"negative version": {Type: "t", Meta: Meta{ID: "1", SchemaVersion: -2}},
		"odd extra keys": {Type: "t", Meta: Meta{ID: "1", Extra: map[string]json.RawMessage{
			"": json.RawMessage(`1`), "a.b:c": json.RawMessage(`null`), "userId": json.RawMessage(`[]`)}}},
		"unicode": mustUnmarshal(t, `{"type":"commande.créée","payload":{"n":"🎉"},"meta":{"id":"ü","source":"\u2028"}}`),
		"long id": {Type: "t", Meta: Meta{ID: "a-very-long-identifier-that-is-not-a-uuid-at-all-0123456789"}},
	}
	for name, ev := range cases {
		t.Run(name, func(t *testing.T) {
			msg, err := ToMessage(ev)
			require.NoError(t, err)
			back, err := FromMessage(msg)
			require.NoError(t, err)
			assert.True(t, ev.Equal(back), "\n%+v\n%+v", ev, back)
			// And through a copy, as transports hand messages around.
			back2, err := FromMessage(msg.Copy())
			require.NoError(t, err)
			assert.True(t, ev.Equal(back2))
			// The wire form agrees.
			assert.Equal(t, mustMarshal(t, ev), mustMarshal(t, back))
		})
	}
}

func TestMessageRoundTripIsDeepEqualForWireEvents(t *testing.T) {
	ev := mustUnmarshal(t, contractExample)
	msg, err := ToMessage(ev)
	require.NoError(t, err)
	back, err := FromMessage(msg)
	require.NoError(t, err)
	assert.Equal(t, ev, back)
}

func TestFromMessageIgnoresOtherMetadata(t *testing.T) {
	msg := message.NewMessage("1", []byte(`{}`))
	msg.Metadata = message.Metadata{"arc_type": "t", "_watermill_delayed_for": "1s", "handler": "x"}
	ev, err := FromMessage(msg)
	require.NoError(t, err)
	assert.Equal(t, Event{Type: "t", Payload: json.RawMessage(`{}`), Meta: Meta{ID: "1"}}, ev)
}

func TestFromMessageMalformed(t *testing.T) {
	msg := func(uuid, payload string, md message.Metadata) *message.Message {
		m := message.NewMessage(uuid, []byte(payload))
		m.Metadata = md
		return m
	}
	cases := map[string]struct {
		msg   *message.Message
		field string
	}{
		"nil message":      {nil, ""},
		"no type":          {msg("1", `{}`, message.Metadata{}), "arc_type"},
		"no uuid":          {msg("", `{}`, message.Metadata{"arc_type": "t"}), "uuid"},
		"payload not JSON": {msg("1", `{x`, message.Metadata{"arc_type": "t"}), "payload"},
		"empty payload":    {msg("1", ``, message.Metadata{"arc_type": "t"}), "payload"},
		"bad timestamp":    {msg("1", `{}`, message.Metadata{"arc_type": "t", "arc_timestamp": "yesterday"}), "arc_timestamp"},
		"bad version":      {msg("1", `{}`, message.Metadata{"arc_type": "t", "arc_schema_version": "two"}), "arc_schema_version"},
		"bad extra":        {msg("1", `{}`, message.Metadata{"arc_type": "t", "arc_meta_k": "not json"}), "arc_meta_k"},
		"extra id":         {msg("1", `{}`, message.Metadata{"arc_type": "t", "arc_meta_id": `"x"`}), ""},
		"bad key order":    {msg("1", `{}`, message.Metadata{"arc_type": "t", "arc_key_order": `{`}), "arc_key_order"},
		"adapter says":     {msg("1", `{}`, message.Metadata{"arc_type": "t", "arc_malformed": "stream entry has no data field"}), ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := FromMessage(c.msg)
			require.ErrorIs(t, err, ErrMalformedEvent)
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, c.field, de.Field)
		})
	}
}

// A transport's reason that quotes a decode error of this package (as the
// Streams adapter's "stream entry data: …" does) is reported with
// "arc: malformed event" once.
func TestMalformedReasonSaysMalformedOnce(t *testing.T) {
	t.Parallel()
	var ev Event
	derr := Unmarshal([]byte(`{"type":"t","meta":{}}`), &ev)
	require.Error(t, derr)
	msg := message.NewMessage("1", []byte(`{"type":"t","meta":{}}`))
	msg.Metadata.Set(MetadataMalformed, "stream entry data: "+derr.Error())
	_, err := FromMessage(msg)
	require.ErrorIs(t, err, ErrMalformedEvent)
	assert.Equal(t, "arc: malformed event: stream entry data: meta.id: must be a non-empty string", err.Error())
}
