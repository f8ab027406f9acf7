package middleware

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	wmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

// Children are stamped through both paths: messages the handler returns,
// and messages it publishes itself through a decorated publisher.
func TestCausationStampsBothPublishingPaths(t *testing.T) {
	t.Parallel()
	h := newHarness(t, StackConfig{})
	held := CausationPublisher(h.pubSub)
	out, err := h.pubSub.Subscribe(context.Background(), "children")
	require.NoError(t, err)

	// A returned message, built without any context.
	_, err = h.events.HandleFunc(wildcard.HandlerConfig{Name: "returns", Subscriber: h.pubSub, Topic: topic,
		Patterns: []string{"order.created"}, Publisher: h.pubSub, PublishTopic: "children",
		Middleware: append([]message.HandlerMiddleware{wmiddleware.CorrelationID}, h.stack.Middleware...)},
		func(msg *message.Message) ([]*message.Message, error) {
			ev, err := arc.NewEvent("payment.requested", nil, arc.Meta{Source: "payments"})
			if err != nil {
				return nil, err
			}
			m, err := arc.ToMessage(ev)
			return []*message.Message{m}, err
		})
	require.NoError(t, err)
	// A held publisher, with the handler's context.
	h.handle("publishes", "order.created", func(ctx context.Context, ev arc.Event) error {
		m, err := Child(ctx, "email.queued", map[string]string{"to": "a@b"}, arc.Meta{})
		if err != nil {
			return err
		}
		return held.Publish("children", m)
	})
	h.run()
	parent := h.publish("order.created", nil, arc.Meta{UserID: "u-1", OrganizationID: "org-1", Source: "shop",
		CorrelationID: "req-1", IdempotencyKey: "k-1"})

	got := map[string]arc.Event{}
	for len(got) < 2 {
		select {
		case m := <-out:
			m.Ack()
			ev, err := arc.FromMessage(m)
			require.NoError(t, err)
			got[ev.Type] = ev
		case <-time.After(5 * time.Second):
			t.Fatalf("children: %v", got)
		}
	}
	for typ, child := range got {
		assert.Equal(t, parent.Meta.ID, child.Meta.CausationID, typ)
		assert.Equal(t, "req-1", child.Meta.CorrelationID, typ)
		assert.Equal(t, "u-1", child.Meta.UserID, typ)
		assert.Equal(t, "org-1", child.Meta.OrganizationID, typ)
		assert.Equal(t, "k-1", child.Meta.IdempotencyKey, typ)
	}
	assert.Equal(t, "payments", got["payment.requested"].Meta.Source, "the caller's value wins")
	assert.Equal(t, "shop", got["email.queued"].Meta.Source)
}

func TestRootWithoutCorrelationGetsOne(t *testing.T) {
	t.Parallel()
	pub := &failingPublisher{}
	ev, err := arc.NewEvent("order.created", nil, arc.Meta{})
	require.NoError(t, err)
	m, err := arc.ToMessage(ev)
	require.NoError(t, err)
	require.NoError(t, CausationPublisher(pub).Publish("t", m))
	assert.Equal(t, ev.Meta.ID, pub.got[0].Metadata.Get(arc.MetadataCorrelationID))

	// A child of that root: correlation is the root's id.
	msg := eventMessage(t, "x")
	var child *message.Message
	_, err = Causation(func(in *message.Message) ([]*message.Message, error) {
		child, err = Child(in.Context(), "y", nil, arc.Meta{})
		return nil, err
	})(msg)
	require.NoError(t, err)
	assert.Equal(t, msg.UUID, child.Metadata.Get(arc.MetadataCorrelationID))
	assert.Equal(t, msg.UUID, child.Metadata.Get(arc.MetadataCausationID))

	// Without a parent, Child builds a root.
	root, err := Child(context.Background(), "z", nil, arc.Meta{})
	require.NoError(t, err)
	assert.Empty(t, root.Metadata.Get(arc.MetadataCausationID))
}

func TestCausationIgnoresNonEvents(t *testing.T) {
	t.Parallel()
	msg := message.NewMessage("1", []byte("x"))
	called := false
	_, err := Causation(func(m *message.Message) ([]*message.Message, error) {
		_, ok := ParentFromContext(m.Context())
		called = !ok
		return nil, nil
	})(msg)
	require.NoError(t, err)
	assert.True(t, called)
}

// Children a handler returns outlive the attempt's Timeout (the router
// publishes them after the handler returns) and keep its values; the
// message gets its own context back.
func TestReturnedChildrenOutliveTheTimeout(t *testing.T) {
	t.Parallel()
	stack, err := NewStack(StackConfig{Timeout: time.Minute,
		DeadLetter: DeadLetterConfig{Publisher: &failingPublisher{}, Topic: "dlq"}})
	require.NoError(t, err)
	msg := eventMessage(t, "x")
	out, err := chainOf(stack.Middleware, func(m *message.Message) ([]*message.Message, error) {
		child, err := Child(m.Context(), "y", nil, arc.Meta{})
		return []*message.Message{child}, err
	})(msg)
	require.NoError(t, err)
	require.Len(t, out, 1)
	assert.NoError(t, out[0].Context().Err(), "a child's context is not the ended attempt's")
	_, ok := ParentFromContext(out[0].Context())
	assert.True(t, ok, "but it keeps its values")
	assert.NoError(t, msg.Context().Err(), "the message's own context is restored")
}
