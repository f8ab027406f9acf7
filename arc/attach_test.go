package arc

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Attached Arc JSON is returned while the message is as it was attached,
// through derived contexts, and never once its UUID, payload (even changed
// in place) or metadata changed, or its context was replaced.
func TestAttachedJSON_OnlyForTheUnchangedMessage(t *testing.T) {
	t.Parallel()
	ev, err := NewEvent("order.created", map[string]int{"n": 1}, Meta{CorrelationID: "c-1"})
	require.NoError(t, err)
	data, err := Marshal(ev)
	require.NoError(t, err)
	fresh := func() *message.Message {
		msg, err := ToMessage(ev)
		require.NoError(t, err)
		msg.Payload = append([]byte(nil), msg.Payload...)
		AttachJSON(msg, data)
		return msg
	}
	got, ok := AttachedJSON(fresh())
	require.True(t, ok)
	assert.Equal(t, string(data), got)

	derived := fresh()
	derived.SetContext(context.WithValue(derived.Context(), struct{}{}, 1))
	_, ok = AttachedJSON(derived)
	assert.True(t, ok, "a derived context keeps them")

	for name, change := range map[string]func(m *message.Message){
		"uuid":             func(m *message.Message) { m.UUID = "other" },
		"payload in place": func(m *message.Message) { m.Payload[len(m.Payload)-2] = ' ' },
		"payload":          func(m *message.Message) { m.Payload = []byte(`{"n":2}`) },
		"metadata value":   func(m *message.Message) { m.Metadata.Set(MetadataCorrelationID, "c-2") },
		"metadata added":   func(m *message.Message) { m.Metadata.Set("x", "") },
		"metadata removed": func(m *message.Message) { delete(m.Metadata, MetadataCorrelationID) },
		"context replaced": func(m *message.Message) { m.SetContext(context.Background()) },
	} {
		msg := fresh()
		change(msg)
		_, ok := AttachedJSON(msg)
		assert.False(t, ok, name)
	}
	_, ok = AttachedJSON(message.NewMessage("id", nil))
	assert.False(t, ok, "nothing attached")
}
