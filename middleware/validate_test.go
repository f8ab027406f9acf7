package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// orderValidator wants {"orderId": string} at version 1 and also "total" at
// version 2, as a registry would.
var orderValidator = ValidatorFunc(func(typ string, payload json.RawMessage, version int) error {
	var p map[string]any
	if err := json.Unmarshal(payload, &p); err != nil {
		return fmt.Errorf("/: %v", err)
	}
	if _, ok := p["orderId"].(string); !ok {
		return errors.New("/orderId: required string")
	}
	if version == 2 {
		if _, ok := p["total"].(float64); !ok {
			return errors.New("/total: required number")
		}
	}
	return nil
})

func orderMessage(t *testing.T, payload any, version int) *message.Message {
	ev, err := arc.NewEvent("order.created", payload, arc.Meta{SchemaVersion: version})
	require.NoError(t, err)
	m, err := arc.ToMessage(ev)
	require.NoError(t, err)
	return m
}

func TestValidatingPublisherModes(t *testing.T) {
	t.Parallel()
	valid := func() *message.Message { return orderMessage(t, map[string]any{"orderId": "o-1"}, 1) }
	invalid := func() *message.Message { return orderMessage(t, map[string]any{"orderId": "o-1"}, 2) } // v2 needs total

	logger := watermill.NewCaptureLogger()
	for _, c := range []struct {
		mode      Mode
		wantErr   bool
		published int
	}{{Reject, true, 0}, {Warn, false, 2}, {Off, false, 2}} {
		pub := &failingPublisher{}
		vp, err := ValidatingPublisher(pub, orderValidator, c.mode, logger)
		require.NoError(t, err)
		err = vp.Publish("t", valid(), invalid())
		if c.wantErr {
			require.ErrorIs(t, err, ErrValidation)
			assert.Contains(t, err.Error(), "/total: required number", "the validator's path")
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			assert.Equal(t, 2, ve.Version, "validated against the event's own schemaVersion")
		} else {
			require.NoError(t, err)
		}
		assert.Len(t, pub.got, c.published, "mode %d", c.mode)
	}
	warnings := 0
	for _, m := range logger.Captured()[watermill.ErrorLogLevel] {
		if m.Msg == "Publishing an event that fails validation" {
			warnings++
		}
	}
	assert.Equal(t, 1, warnings, "Warn logs the invalid event; Reject refuses it and Off does not look")

	_, err := ValidatingPublisher(nil, orderValidator, Reject, nil)
	assert.Error(t, err)
}

// An invalid payload is dead-lettered at once with the validator's paths,
// never retried; or skipped, by configuration.
func TestValidationOnConsume(t *testing.T) {
	t.Parallel()
	h := newHarness(t, StackConfig{Validator: orderValidator, Retry: RetryConfig{MaxRetries: 5}})
	var calls counter
	h.handle("orders", "order.*", func(context.Context, arc.Event) error { calls.inc(); return nil })
	h.run()
	h.publish("order.created", map[string]any{"nope": 1}, arc.Meta{})
	dl, _ := h.nextDeadLetter()
	assert.Equal(t, ReasonValidationFailed, dl.Reason)
	assert.Equal(t, 1, dl.Attempts)
	assert.Contains(t, dl.Error.Message, "/orderId: required string")
	assert.Zero(t, calls.get(), "the handler never saw it")
	assert.Zero(t, h.stack.Retry.Retried())

	h.publish("order.created", map[string]any{"orderId": "o-1"}, arc.Meta{})
	eventuallyEqual(t, 1, calls.get)

	skip := newHarness(t, StackConfig{Validator: orderValidator, OnInvalid: SkipInvalid})
	var skipped counter
	skip.handle("orders", "order.*", func(context.Context, arc.Event) error { skipped.inc(); return nil })
	skip.run()
	skip.publish("order.created", map[string]any{"nope": 1}, arc.Meta{})
	skip.publish("order.created", map[string]any{"orderId": "o-2"}, arc.Meta{})
	eventuallyEqual(t, 1, skipped.get)
	skip.noDeadLetter(50e6)
}
