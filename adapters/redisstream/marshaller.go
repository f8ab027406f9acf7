package redisstream

import (
	"encoding/json"
	"fmt"
	"sort"
	"unsafe"

	"github.com/ThreeDotsLabs/watermill"
	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
)

// Stream entry fields, as Arc's RedisStreamTransport writes them.
const (
	FieldType = "type"
	FieldData = "data"
)

// MetadataRawFields holds, on a malformed message, the entry's fields as a
// JSON object, so a dead letter keeps the entry exactly.
const MetadataRawFields = "arc_stream_fields"

// Marshaller writes and reads Arc's stream entries for watermill-redisstream:
// fields type (the event type) and data (the event's Arc JSON), which is
// what Arc's RedisStreamTransport writes and reads. It is both a
// redisstream.Marshaller and a redisstream.Unmarshaller.
//
// Reading is total: Unmarshal never fails, since an Unmarshal error ends a
// Watermill subscription. A foreign or corrupt entry (Arc's malformed
// cases: type or data missing or empty, data not an Arc event) becomes a
// message with arc.MetadataMalformed saying why and MetadataRawFields
// holding the fields, which the wildcard router hands to its OnMalformed
// hook (middleware.DeadLetter.Malformed dead-letters it with reason
// "malformed"). Arc acknowledges and drops such entries; arcmill keeps them.
type Marshaller struct {
	// WatermillUUID also writes _watermill_message_uuid = meta.id. Arc
	// ignores extra fields; Watermill's default unmarshaller needs it.
	WatermillUUID bool
	// Limits bound what Unmarshal accepts from the stream: how deeply the
	// event's JSON nests, how long its type is. An entry over a limit is
	// malformed (arc.MetadataMalformed names the field), and so
	// dead-lettered once with its raw fields, never handed to a handler.
	// The wildcard router checks its own Config.Limits again: set both to
	// take deeper or longer events. A Subscriber refuses invalid Limits.
	// Defaults to arc's defaults (arc.DefaultMaxDepth, arc.DefaultMaxTypeBytes).
	Limits arc.Limits
}

var _ wredis.MarshallerUnmarshaller = Marshaller{}

// Marshal returns the entry fields of an Arc event message. A message that
// is not an Arc event is refused: Arc readers would drop it.
func (m Marshaller) Marshal(_ string, msg *message.Message) (map[string]any, error) {
	pairs, err := m.fields(msg)
	if err != nil {
		return nil, err
	}
	fields := make(map[string]any, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		v := pairs[i+1]
		switch b := v.(type) { // the map is the caller's: values as strings, as go-redis reads them
		case []byte:
			v = string(b)
		case *string:
			v = *b
		}
		fields[pairs[i].(string)] = v
	}
	return fields, nil
}

// fields returns the entry as field/value pairs in Arc's order: type, data
// (then _watermill_message_uuid when asked); data is a string or a
// []byte. The data of a message whose
// Arc JSON was handed over with it (AttachArcJSON, EncodeArcJSON) and
// that is unchanged since is those bytes, not encoded again. The pairs
// may be shared between calls: callers only read them.
func (m Marshaller) fields(msg *message.Message) ([]any, error) {
	if pairs := handedOver(msg); pairs != nil {
		if m.WatermillUUID {
			pairs = append(pairs, wredis.UUIDHeaderKey, msg.UUID)
		}
		return pairs, nil
	}
	data, err := arc.AppendMessageJSON(make([]byte, 0, encodedSizeHint(msg)), msg)
	if err != nil {
		return nil, notArcEvent(msg, err)
	}
	pairs := newArcEntry(msg.Metadata[arc.MetadataType], data)
	if m.WatermillUUID {
		pairs = append(pairs, wredis.UUIDHeaderKey, msg.UUID)
	}
	return pairs, nil
}

// notArcEvent is the error of a message that arc refuses to encode.
func notArcEvent(msg *message.Message, err error) error {
	return fmt.Errorf("redisstream: message %q is not an Arc event: %w", msg.UUID, err)
}

// arcEntry holds the fields of an encoded entry in one allocation: the
// pairs handed to go-redis, and the two strings its values point to.
// go-redis writes a *string argument as the string, so neither value is
// boxed into an interface of its own (an allocation each, a quarter of the
// encode's allocations).
type arcEntry struct {
	pairs     [4]any
	typ, data string
}

// newArcEntry returns the pairs type, typ, data, data. data is the
// caller's fresh encoding, never written again: it is read as a string in
// place, not copied (a tenth of the encode's CPU).
func newArcEntry(typ string, data []byte) []any {
	e := &arcEntry{typ: typ, data: unsafe.String(unsafe.SliceData(data), len(data))}
	e.pairs = [4]any{FieldType, &e.typ, FieldData, &e.data}
	return e.pairs[:]
}

// Unmarshal returns the message of an entry, read under m.Limits; it never
// fails (see Marshaller).
func (m Marshaller) Unmarshal(values map[string]any) (*message.Message, error) {
	typ, _ := values[FieldType].(string)
	data, _ := values[FieldData].(string)
	var why string
	switch {
	case typ == "":
		why = "stream entry has no type field"
	case data == "":
		why = "stream entry has no data field"
	default:
		msg, err := m.Limits.UnmarshalMessage([]byte(data))
		if err != nil {
			why = "stream entry data: " + err.Error()
			break
		}
		return msg, nil
	}
	msg := message.NewMessage(watermill.NewUUID(), []byte(data))
	msg.Metadata.Set(arc.MetadataMalformed, why)
	msg.Metadata.Set(MetadataRawFields, rawFields(values))
	return msg, nil
}

// limitsOf returns the read limits of u: a Marshaller's own, else arc's
// defaults.
func limitsOf(u wredis.Unmarshaller) arc.Limits {
	switch m := u.(type) {
	case Marshaller:
		return m.Limits
	case *Marshaller:
		if m != nil {
			return m.Limits
		}
	}
	return arc.Limits{}
}

// rawFields renders entry fields as a JSON object with sorted keys.
func rawFields(values map[string]any) string {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]string, len(values))
	for _, k := range keys {
		out[k] = fmt.Sprint(values[k])
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// encodedSizeHint is about the size of msg's Arc JSON, a little over: the
// payload, and each metadata key and value with room for quotes and
// punctuation (the metadata's keys are longer than the JSON's). arc.Marshal
// guesses 128 bytes past the payload, which a typical event's meta (an id,
// a timestamp, a user and a correlation id) outgrows: the buffer then grows
// and is copied once per message.
func encodedSizeHint(msg *message.Message) int {
	n := 64 + len(msg.Payload)
	for k, v := range msg.Metadata {
		n += len(k) + len(v) + 8
	}
	return n
}
