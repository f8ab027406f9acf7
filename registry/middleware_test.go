package registry_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/registry"
)

type collect struct{ got []*message.Message }

func (c *collect) Publish(_ string, msgs ...*message.Message) error {
	c.got = append(c.got, msgs...)
	return nil
}
func (c *collect) Close() error { return nil }

// The registry is the middleware's Validator, on both sides.
func TestRegistryValidatesThroughMiddleware(t *testing.T) {
	r := registry.New(registry.Config{})
	type payment struct {
		OrderID string `json:"orderId"`
		Amount  int    `json:"amount" jsonschema:"minimum=1"`
	}
	def := registry.MustDefine[payment](registry.Definition{Name: "payment.requested"})
	require.NoError(t, r.Register(def.Definition()))
	var _ middleware.Validator = r

	good, err := def.Create(payment{OrderID: "o-1", Amount: 99}, arc.Meta{})
	require.NoError(t, err)
	bad, err := def.Create(payment{OrderID: "o-1", Amount: 0}, arc.Meta{})
	require.NoError(t, err)
	goodMsg, err := arc.ToMessage(good)
	require.NoError(t, err)
	badMsg, err := arc.ToMessage(bad)
	require.NoError(t, err)

	// Publish side, reject mode: nothing published, the path named.
	out := &collect{}
	pub, err := middleware.ValidatingPublisher(out, r, middleware.Reject, watermill.NopLogger{})
	require.NoError(t, err)
	require.NoError(t, pub.Publish("t", goodMsg))
	err = pub.Publish("t", badMsg)
	require.ErrorIs(t, err, middleware.ErrValidation)
	require.ErrorIs(t, err, registry.ErrValidation)
	assert.Contains(t, err.Error(), "/amount")
	assert.Len(t, out.got, 1)

	// Consume side: dead-lettered with reason validation_failed, not retried.
	dlq := &collect{}
	stack, err := middleware.NewStack(middleware.StackConfig{Validator: r,
		DeadLetter: middleware.DeadLetterConfig{Publisher: dlq, Topic: "dlq"}})
	require.NoError(t, err)
	h := message.HandlerFunc(func(*message.Message) ([]*message.Message, error) { return nil, errors.New("never called") })
	for i := len(stack.Middleware) - 1; i >= 0; i-- {
		h = stack.Middleware[i](h)
	}
	_, err = h(badMsg)
	require.NoError(t, err, "acked once dead-lettered")
	require.Len(t, dlq.got, 1)
	var dl middleware.DeadLetteredEvent
	require.NoError(t, json.Unmarshal(dlq.got[0].Payload, &dl))
	assert.Equal(t, middleware.ReasonValidationFailed, dl.Reason)
	assert.Equal(t, 1, dl.Attempts)
	assert.Contains(t, dl.Error.Message, "/amount")
	assert.Zero(t, stack.Retry.Retried())
}
