package arc

import (
	"bytes"
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Handing over a message's Arc JSON. A producer that already holds the
// bytes Marshal gives for a message's event (an outbox relay reading them
// from the row the writer stored) attaches them to the message, and a
// publisher that writes Arc JSON (the redisstream Publisher) takes them
// instead of encoding the message again. The hand-off lives here, not in
// an adapter, so that the producer need not import the publisher's
// package, and a publisher that does not look for the bytes still gets a
// complete, correct message: attaching is only an optimisation.
//
// The bytes travel in the message's context with a snapshot of what they
// were encoded from: the UUID, the payload (copied) and the metadata
// (copied). AttachedJSON returns them only while the message still equals
// that snapshot; a message that middleware or a retry changed in any way,
// or whose context was replaced by one not derived from the attaching
// one, has none, and is encoded as before. Stale bytes are never
// returned: FromMessage then Marshal is a function of exactly those three
// things, so equal inputs give the bytes the snapshot was taken with.

// attachedKey is the context key of an attached encoding.
type attachedKey struct{}

// attached is a message's Arc JSON and the message state it encodes.
type attached struct {
	data    string
	uuid    string
	payload []byte
	// md is the metadata as key, value, key, value…: one allocation
	// where a cloned map takes several, and as exact (keys are unique).
	md []string
}

// AttachJSON attaches data, the Arc JSON of msg's event as Marshal wrote
// it (Marshal(FromMessage(msg)) for msg as it is now), to msg, for the
// publisher that writes msg next: while msg's UUID, payload and metadata
// stay as they are now, AttachedJSON returns data. The caller vouches for
// data; it is not checked. data is copied.
func AttachJSON(msg *message.Message, data []byte) {
	AttachJSONString(msg, string(data))
}

// AttachJSONString is AttachJSON for data held as a string (not copied).
func AttachJSONString(msg *message.Message, data string) {
	md := make([]string, 0, 2*len(msg.Metadata))
	for k, v := range msg.Metadata {
		md = append(md, k, v)
	}
	a := &attached{data: data, uuid: msg.UUID, payload: bytes.Clone(msg.Payload), md: md}
	msg.SetContext(context.WithValue(msg.Context(), attachedKey{}, a))
}

// AttachedJSON returns the Arc JSON attached to msg (AttachJSON) when msg
// is unchanged since it was attached, and false otherwise: nothing
// attached, or the UUID, the payload or any metadata entry changed.
func AttachedJSON(msg *message.Message) (string, bool) {
	a, _ := msg.Context().Value(attachedKey{}).(*attached)
	if a == nil || msg.UUID != a.uuid || 2*len(msg.Metadata) != len(a.md) || !bytes.Equal(msg.Payload, a.payload) {
		return "", false
	}
	// As many keys, each with its value: the same metadata.
	for i := 0; i < len(a.md); i += 2 {
		if got, ok := msg.Metadata[a.md[i]]; !ok || got != a.md[i+1] {
			return "", false
		}
	}
	return a.data, true
}
