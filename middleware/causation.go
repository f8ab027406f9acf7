package middleware

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

type parentKey struct{}

// WithParent returns ctx carrying ev as the cause of whatever is published
// with it.
func WithParent(ctx context.Context, ev arc.Event) context.Context {
	return context.WithValue(ctx, parentKey{}, ev)
}

// ParentFromContext returns the event being handled, as Causation put it
// in the context.
func ParentFromContext(ctx context.Context) (arc.Event, bool) {
	ev, ok := ctx.Value(parentKey{}).(arc.Event)
	return ev, ok
}

// Causation is a message.HandlerMiddleware that links what a handler
// publishes to the event it handles, as Arc's createChildEvent does: the
// incoming event goes into the message's context (ParentFromContext), and
// every message the handler returns is stamped with Stamp. Messages the
// handler publishes itself are stamped by CausationPublisher when they carry
// the handler's context (message.NewMessageWithContext, or Child). An
// incoming event without a correlation id is treated as a root: its own id
// becomes the chain's correlation id.
//
// It agrees with Watermill's CorrelationID middleware: both use the
// correlation_id metadata key, and neither overwrites a value already set.
func Causation(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		ev, ok := incomingEvent(msg)
		if !ok {
			return h(msg)
		}
		ctx := msg.Context()
		msg.SetContext(WithParent(ctx, ev))
		out, err := h(msg)
		msg.SetContext(ctx)
		for _, m := range out {
			Stamp(m, ev)
			// The router publishes returned messages after the handler
			// returns, when an attempt's Timeout context has ended.
			m.SetContext(context.WithoutCancel(m.Context()))
		}
		return out, err
	}
}

func incomingEvent(msg *message.Message) (arc.Event, bool) {
	if info, ok := wildcard.InfoFromContext(msg.Context()); ok {
		return info.Event, true
	}
	ev, err := arc.FromMessage(msg)
	return ev, err == nil
}

// Stamp makes msg a child of parent in its metadata, leaving every field
// already set as it is: causation = the parent's id; correlation = the
// parent's, or the parent's id; user, organization, source and idempotency
// key inherited. It returns msg.
func Stamp(msg *message.Message, parent arc.Event) *message.Message {
	p := parent.Meta
	corr := p.CorrelationID
	if corr == "" {
		corr = p.ID
	}
	for _, kv := range [...][2]string{
		{arc.MetadataCausationID, p.ID},
		{arc.MetadataCorrelationID, corr},
		{arc.MetadataUserID, p.UserID},
		{arc.MetadataOrganizationID, p.OrganizationID},
		{arc.MetadataSource, p.Source},
		{arc.MetadataIdempotencyKey, p.IdempotencyKey},
	} {
		if kv[1] != "" && msg.Metadata.Get(kv[0]) == "" {
			msg.Metadata.Set(kv[0], kv[1])
		}
	}
	return msg
}

// Child builds a child of the event in ctx (see Causation) as a message
// carrying ctx: arc.NewChild, then arc.ToMessage. Without a parent in ctx
// it builds a root event.
func Child(ctx context.Context, eventType string, payload any, meta arc.Meta) (*message.Message, error) {
	var ev arc.Event
	var err error
	if parent, ok := ParentFromContext(ctx); ok {
		ev, err = arc.NewChild(parent, eventType, payload, meta)
	} else {
		ev, err = arc.NewEvent(eventType, payload, meta)
	}
	if err != nil {
		return nil, err
	}
	msg, err := arc.ToMessage(ev)
	if err != nil {
		return nil, err
	}
	msg.SetContext(ctx)
	return msg, nil
}

// CausationPublisher decorates a publisher so that every message published
// with a handler's context (see Causation) is stamped as that event's
// child, and every Arc event published without one, a root, gets its own id
// as correlation id when it has none.
func CausationPublisher(pub message.Publisher) message.Publisher { return causationPublisher{pub} }

type causationPublisher struct{ message.Publisher }

func (p causationPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		if parent, ok := ParentFromContext(m.Context()); ok {
			Stamp(m, parent)
		} else if m.Metadata.Get(arc.MetadataType) != "" && m.Metadata.Get(arc.MetadataCorrelationID) == "" {
			m.Metadata.Set(arc.MetadataCorrelationID, m.UUID)
		}
	}
	return p.Publisher.Publish(topic, msgs...)
}
