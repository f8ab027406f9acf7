package middleware

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

// Regression tests for the review of this package.

// Outside the wildcard router (a plain Watermill handler, or the stack on
// the whole router), a delayed retry targets no handler name: the Watermill
// handler's own name is not one a wildcard source knows.
func TestDelayedRetryTargetsOnlyWildcardHandlers(t *testing.T) {
	delayed := &failingPublisher{}
	stack, err := NewStack(StackConfig{Retry: RetryConfig{MaxRetries: NoRetries},
		DeadLetter: DeadLetterConfig{Publisher: &failingPublisher{}, Topic: "dlq",
			Delayed: &DelayedRetry{Publisher: delayed, Topic: "events", Delays: []time.Duration{time.Second}}}})
	require.NoError(t, err)
	chain := chainOf(stack.Middleware, func(*message.Message) ([]*message.Message, error) { return nil, errors.New("x") })
	_, err = chain(eventMessage(t, "x"))
	require.NoError(t, err)
	require.Len(t, delayed.got, 1)
	assert.Empty(t, delayed.got[0].Metadata.Get(wildcard.MetadataTargetHandler))
}

// A delivery whose context ends before its retries do (a shutdown, or
// watermill-sql's ack deadline) is nacked, and the next delivery to this
// process counts on: the failure ends in the dead-letter topic instead of
// looping for ever.
func TestInterruptedDeliveriesCountOn(t *testing.T) {
	dlq := &failingPublisher{}
	stack, err := NewStack(StackConfig{Retry: RetryConfig{MaxRetries: 3, Backoff: NoBackoff},
		DeadLetter: DeadLetterConfig{Publisher: dlq, Topic: "dlq"}})
	require.NoError(t, err)
	msg := eventMessage(t, "x")
	var calls counter
	var cancelAt int
	var cancel context.CancelFunc
	chain := chainOf(stack.Middleware, func(*message.Message) ([]*message.Message, error) {
		if calls.inc() == cancelAt {
			cancel()
		}
		return nil, errors.New("slow dependency")
	})
	deliver := func(cancelOn int) error {
		var ctx context.Context
		ctx, cancel = context.WithCancel(context.Background())
		defer cancel()
		cancelAt = cancelOn
		m := msg.Copy()
		m.SetContext(ctx)
		_, err := chain(m)
		return err
	}
	require.ErrorIs(t, deliver(2), ErrShutdown, "delivery 1 ends after 2 attempts")
	assert.Empty(t, dlq.got)
	require.NoError(t, deliver(-1), "delivery 2 counts on from 2 and exhausts at 4")
	assert.Equal(t, 4, calls.get())
	require.Len(t, dlq.got, 1)
	var dl DeadLetteredEvent
	require.NoError(t, json.Unmarshal(dlq.got[0].Payload, &dl))
	assert.Equal(t, 4, dl.Attempts)

	// The last attempt failing as the context ends, not because of it: the
	// retries are spent, so it is dead-lettered, not looped.
	msg = eventMessage(t, "y")
	calls = counter{}
	require.NoError(t, deliver(4))
	assert.Len(t, dlq.got, 2)
}

// Children a handler returns must outlive the attempt's Timeout: the router
// publishes them after the handler returns.
func TestReturnedChildrenOutliveTheTimeout(t *testing.T) {
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

// A router reading its own dead-letter topic does not dead-letter the dead
// letters again.
func TestMalformedNeverRedeadLettersADeadLetter(t *testing.T) {
	dlq := &failingPublisher{}
	d, err := NewDeadLetter(DeadLetterConfig{Publisher: dlq, Topic: "dlq"})
	require.NoError(t, err)
	dead := message.NewMessage("d-1", []byte(`{"event":{}}`))
	dead.Metadata.Set(MetadataDLQReason, ReasonRetryExhausted)
	assert.NoError(t, d.Malformed(dead, arc.ErrMalformedEvent))
	assert.Empty(t, dlq.got)
	assert.Equal(t, uint64(1), d.Stats().IgnoredDeadLetters)

	// A binary payload is kept recoverably.
	bin := message.NewMessage("b-1", []byte{0xff, 0xfe, 'a'})
	require.NoError(t, d.Malformed(bin, arc.ErrMalformedEvent))
	var dl DeadLetteredEvent
	require.NoError(t, json.Unmarshal(dlq.got[0].Payload, &dl))
	assert.Equal(t, "base64", dl.Raw.Encoding)
	raw, err := base64.StdEncoding.DecodeString(dl.Raw.Payload)
	require.NoError(t, err)
	assert.Equal(t, []byte{0xff, 0xfe, 'a'}, raw)
}

func TestNoBackoffAndSharedConfig(t *testing.T) {
	r, err := NewRetry(RetryConfig{Backoff: NoBackoff})
	require.NoError(t, err)
	assert.Zero(t, r.Delay(1))
	assert.Zero(t, r.Delay(5))

	shared := &DelayedRetry{Publisher: &failingPublisher{}}
	_, err = NewDeadLetter(DeadLetterConfig{Publisher: &failingPublisher{}, Topic: "x", Delayed: shared})
	require.NoError(t, err)
	assert.Nil(t, shared.Delays, "the caller's value is not changed")
}
