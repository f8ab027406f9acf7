package redisstream

import (
	"bytes"
	"context"
	"fmt"
	"maps"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
)

// The pass-through: a producer that already holds a message's Arc JSON
// hands it to the Publisher with the message, and the Publisher writes
// those bytes as the entry's data field instead of encoding the message
// again (arc.FromMessage, then arc.Marshal: 1.2–2 µs an event against
// 0.2 µs for the check below, BenchmarkPublishEncode).
//
// The bytes travel in the message's context, with a snapshot of what they
// were encoded from: the UUID, the payload (copied) and the metadata
// (copied). Publish uses them only while the message still equals that
// snapshot; a message that middleware or a retry changed in any way, or
// whose context was replaced by one not derived from the attaching one,
// is encoded as before. Stale bytes are never written: the encoding is a
// function of exactly those three things, so equal inputs give the bytes
// the snapshot was taken with.

// arcJSONKey is the context key of a handed-over encoding.
type arcJSONKey struct{}

// arcJSON is a message's Arc JSON and the message state it encodes.
type arcJSON struct {
	data    string // the entry's data field
	typ     string // the entry's type field (the event type)
	uuid    string
	payload []byte
	md      message.Metadata
	// pairs is the entry in Arc's layout (type, typ, data, data), built
	// once: every Publish of the message hands go-redis this slice, which
	// it only reads, instead of boxing the two strings again (three
	// allocations an entry).
	pairs []any
}

// EncodeArcJSON encodes msg's event once (arc.FromMessage, arc.Marshal)
// and attaches the result to msg, so that every later Publish of msg, to
// any topic and on any retry, writes those bytes without encoding again,
// for as long as msg is unchanged. It returns the Arc JSON. It fails, as
// Publish would, for a message that is not an Arc event.
func EncodeArcJSON(msg *message.Message) ([]byte, error) {
	ev, err := arc.FromMessage(msg)
	if err != nil {
		return nil, fmt.Errorf("redisstream: message %q is not an Arc event: %w", msg.UUID, err)
	}
	data, err := arc.Marshal(ev)
	if err != nil {
		return nil, err
	}
	attach(msg, string(data))
	return data, nil
}

// AttachArcJSON hands data, the Arc JSON of msg's event as it was encoded
// by arc.Marshal (for instance when it was stored, by the producer that
// stored it), to the Publisher with msg. The caller vouches that data is
// arc.Marshal of arc.FromMessage(msg) for msg as it is now: the Publisher
// writes data as the entry while msg's UUID, payload and metadata stay as
// they are now, and encodes msg itself once any of them changes. Use
// EncodeArcJSON where nothing holds the bytes yet.
func AttachArcJSON(msg *message.Message, data []byte) {
	attach(msg, string(data))
}

func attach(msg *message.Message, data string) {
	w := &arcJSON{data: data, typ: msg.Metadata.Get(arc.MetadataType), uuid: msg.UUID,
		payload: bytes.Clone(msg.Payload), md: maps.Clone(msg.Metadata)}
	w.pairs = []any{FieldType, w.typ, FieldData, w.data}
	msg.SetContext(context.WithValue(msg.Context(), arcJSONKey{}, w))
}

// handedOver returns the attached encoding of msg when msg is unchanged
// since it was attached, or nil.
func handedOver(msg *message.Message) *arcJSON {
	w, _ := msg.Context().Value(arcJSONKey{}).(*arcJSON)
	if w == nil || msg.UUID != w.uuid || len(msg.Metadata) != len(w.md) || !bytes.Equal(msg.Payload, w.payload) {
		return nil
	}
	for k, v := range w.md {
		if got, ok := msg.Metadata[k]; !ok || got != v {
			return nil
		}
	}
	return w
}
