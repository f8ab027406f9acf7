package wildcard

import (
	"context"
	"unsafe"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
)

// decoded is an event a transport adapter already decoded, with what it
// was decoded into, so the router can tell whether the message it
// dispatches still says the same.
type decoded struct {
	context.Context // the parent: one allocation carries the event
	ev              arc.Event
	limits          arc.Limits
	uuid            string
	payload         *byte
	size            int
	metadata        []string // msg's metadata when ContextWithEvent was called: key, value, …
	// inline holds metadata of up to 8 keys (what a decoded event
	// usually has), so that the snapshot takes no allocation of its own.
	inline [16]string
}

type decodedKey struct{}

// Value answers the event to eventOf, and the rest from the parent.
func (d *decoded) Value(key any) any {
	if key == (decodedKey{}) {
		return d
	}
	return d.Context.Value(key)
}

// ContextWithEvent returns ctx carrying ev, which a transport adapter
// decoded (under limits) into msg, so that the router dispatches a delivery
// of msg with ev instead of decoding its metadata again (arc.FromMessage,
// a few µs an event). Call it when msg is about to be delivered: it takes
// msg's UUID, payload slice and metadata as they are then as the reference.
//
// The router uses ev only while the message it dispatches still says the
// same: the same UUID, the same payload bytes (the same slice, not an
// equal one: a payload changed in place is not seen), the same metadata
// (every key and value), and limits equal to the router's Config.Limits.
// Otherwise (a router middleware changed the message) it decodes the
// message as it would without ev.
func ContextWithEvent(ctx context.Context, msg *message.Message, ev arc.Event, limits arc.Limits) context.Context {
	d := &decoded{Context: ctx, ev: ev, limits: limits, uuid: msg.UUID,
		payload: unsafe.SliceData(msg.Payload), size: len(msg.Payload)}
	md := d.inline[:0]
	if n := 2 * len(msg.Metadata); n > len(d.inline) {
		md = make([]string, 0, n)
	}
	for k, v := range msg.Metadata {
		md = append(md, k, v)
	}
	d.metadata = md
	return d
}

// eventOf returns msg's event: the one its context carries when msg still
// matches it (see ContextWithEvent), else decoded under limits.
func eventOf(msg *message.Message, limits arc.Limits) (*arc.Event, error) {
	if d, ok := msg.Context().Value(decodedKey{}).(*decoded); ok && d.matches(msg, limits) {
		return &d.ev, nil
	}
	return decode(msg, limits)
}

// decode is FromMessage with the event on the heap, kept out of eventOf
// (noinline) so that the cached path's frame stays small: FromMessage's
// frame is some 900 bytes.
//
//go:noinline
func decode(msg *message.Message, limits arc.Limits) (*arc.Event, error) {
	ev, err := limits.FromMessage(msg)
	if err != nil {
		return nil, err
	}
	return &ev, nil
}

func (d *decoded) matches(msg *message.Message, limits arc.Limits) bool {
	if msg.UUID != d.uuid || unsafe.SliceData(msg.Payload) != d.payload || len(msg.Payload) != d.size ||
		2*len(msg.Metadata) != len(d.metadata) || !sameLimits(limits, d.limits) {
		return false
	}
	for i := 0; i < len(d.metadata); i += 2 {
		if got, ok := msg.Metadata[d.metadata[i]]; !ok || got != d.metadata[i+1] {
			return false
		}
	}
	return true
}

// sameLimits compares two Limits as they apply, zero meaning the default.
func sameLimits(a, b arc.Limits) bool {
	norm := func(l arc.Limits) arc.Limits {
		if l.MaxDepth == 0 {
			l.MaxDepth = arc.DefaultMaxDepth
		}
		if l.MaxTypeBytes == 0 {
			l.MaxTypeBytes = arc.DefaultMaxTypeBytes
		}
		return l
	}
	return norm(a) == norm(b)
}
