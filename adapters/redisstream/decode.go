package redisstream

import (
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
)

// decodeArc reads an entry in Arc's layout (fields type then data, nothing
// else) with a Marshaller, as Marshaller.Unmarshal does, and also returns
// the event it decoded (with the limits it was read under), which the
// delivery carries to the wildcard router (wildcard.ContextWithEvent) so
// the router does not decode it again. The event is decoded in place in
// the decodedEvent: one allocation, not an event and then a copy of it. ok
// is false for any other entry, or one that does not read as an event: the
// caller then goes through Unmarshal, which flags it malformed.
func decodeArc(u any, e Entry) (msg *message.Message, ev *decodedEvent, ok bool) {
	var limits arc.Limits
	switch m := u.(type) {
	case Marshaller:
		limits = m.Limits
	case *Marshaller:
		if m == nil {
			return nil, nil, false
		}
		limits = m.Limits
	default:
		return nil, nil, false
	}
	if len(e.Fields) != 4 || e.Fields[0] != FieldType || e.Fields[2] != FieldData || e.Fields[1] == "" || e.Fields[3] == "" {
		return nil, nil, false
	}
	ev = &decodedEvent{limits: limits}
	if err := limits.Unmarshal([]byte(e.Fields[3]), &ev.ev); err != nil {
		return nil, nil, false
	}
	msg, err := arc.ToMessage(ev.ev)
	if err != nil {
		return nil, nil, false
	}
	return msg, ev, true
}
