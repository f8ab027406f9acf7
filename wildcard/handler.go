package wildcard

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/arcmill/arcmill/arc"
)

// Handler is an Arc-shaped handler: it gets the decoded event. Returning an
// error fails this handler only (see Router).
type Handler func(ctx context.Context, ev arc.Event) error

// Typed returns a Handler that decodes the payload into T before calling h.
// A payload that does not decode into T is an error wrapping
// arc.ErrUnrecoverable: retrying cannot fix it.
func Typed[T any](h func(ctx context.Context, ev arc.Event, payload T) error) Handler {
	return func(ctx context.Context, ev arc.Event) error {
		var payload T
		if err := json.Unmarshal(ev.Payload, &payload); err != nil {
			return fmt.Errorf("%w: payload of %q (id %s) does not decode into %T: %v",
				arc.ErrUnrecoverable, ev.Type, ev.Meta.ID, payload, err)
		}
		return h(ctx, ev, payload)
	}
}

// Info describes the delivery of an event to one handler. Middleware reads it
// with InfoFromContext; the same facts are in the handler's message metadata
// under the Metadata* keys, for middleware that reads only metadata.
type Info struct {
	// Handler is the handler's name.
	Handler string
	// Pattern is the pattern that matched (the first, when several did).
	Pattern string
	// Topic is the topic the event was read from.
	Topic string
	// Event is the decoded event.
	Event arc.Event
}

// Metadata keys the router sets on each handler's copy of the message.
const (
	MetadataHandler = "wildcard_handler"
	MetadataPattern = "wildcard_pattern"
	MetadataTopic   = "wildcard_topic"
)

// MetadataTargetHandler, set on a message, delivers it only to the handler
// of that name: a delayed retry of one handler's failure must not run its
// siblings again. If no matching handler has that name, every match runs
// (duplicates rather than a loss): give handlers stable names.
const MetadataTargetHandler = "wildcard_target_handler"

type infoKey struct{}

// infoContext is the context the router gives a handler's message: its
// Info and the parent in one allocation, where context.WithValue would
// take two (the Info, then the context), on every event.
type infoContext struct {
	context.Context
	info Info
}

// Value answers infoKey with the Info, and the rest from the parent.
func (c *infoContext) Value(key any) any {
	if key == (infoKey{}) {
		return &c.info
	}
	return c.Context.Value(key)
}

// ContextWithInfo returns ctx carrying info, as the router sets it; for
// middleware tests and for code that dispatches by hand.
func ContextWithInfo(ctx context.Context, info Info) context.Context {
	return context.WithValue(ctx, infoKey{}, &info)
}

// InfoFromContext returns the delivery Info the router put in ctx.
func InfoFromContext(ctx context.Context) (Info, bool) {
	info, ok := ctx.Value(infoKey{}).(*Info)
	if !ok {
		return Info{}, false
	}
	return *info, true
}
