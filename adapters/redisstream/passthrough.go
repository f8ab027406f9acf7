package redisstream

import (
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
)

// The pass-through: a producer that already holds a message's Arc JSON
// hands it to the Publisher with the message (arc.AttachJSON, or
// AttachArcJSON here), and the Publisher writes those bytes as the entry's
// data field instead of encoding the message again (arc.AppendMessageJSON,
// about three times the CPU of the check below, BenchmarkPublishEncode).
// The outbox relay attaches the Arc JSON its writer stored in the row,
// through arc, without importing this package.
//
// The bytes travel in the message's context with a snapshot of what they
// were encoded from (see arc.AttachJSON): Publish uses them only while the
// message still equals that snapshot; a message that middleware or a
// retry changed in any way, or whose context was replaced by one not
// derived from the attaching one, is encoded as before. Stale bytes are
// never written.

// EncodeArcJSON encodes msg's event once (arc.AppendMessageJSON)
// and attaches the result to msg, so that every later Publish of msg, to
// any topic and on any retry, writes those bytes without encoding again,
// for as long as msg is unchanged. It returns the Arc JSON. It fails, as
// Publish would, for a message that is not an Arc event.
func EncodeArcJSON(msg *message.Message) ([]byte, error) {
	data, err := arc.AppendMessageJSON(make([]byte, 0, encodedSizeHint(msg)), msg)
	if err != nil {
		return nil, notArcEvent(msg, err)
	}
	arc.AttachJSON(msg, data)
	return data, nil
}

// AttachArcJSON hands data, the Arc JSON of msg's event as it was encoded
// by arc.Marshal (for instance when it was stored, by the producer that
// stored it), to the Publisher with msg. It is arc.AttachJSON: the caller
// vouches that data is arc.Marshal of arc.FromMessage(msg) for msg as it
// is now; the Publisher writes data as the entry while msg's UUID, payload
// and metadata stay as they are now, and encodes msg itself once any of
// them changes. Use EncodeArcJSON where nothing holds the bytes yet.
func AttachArcJSON(msg *message.Message, data []byte) {
	arc.AttachJSON(msg, data)
}

// handedOver returns the entry's pairs (type, data) from the Arc JSON
// attached to msg when msg is unchanged since it was attached, or nil.
func handedOver(msg *message.Message) []any {
	data, ok := arc.AttachedJSON(msg)
	if !ok {
		return nil
	}
	// One allocation: the pairs and the two strings they point to.
	e := &arcEntry{typ: msg.Metadata.Get(arc.MetadataType), data: data}
	e.pairs = [4]any{FieldType, &e.typ, FieldData, &e.data}
	return e.pairs[:]
}
