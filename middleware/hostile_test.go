package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

// nested returns a JSON array nested n levels deep.
func nested(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

// publishRaw publishes an event with the given payload bytes.
func (h *harness) publishRaw(typ, payload string) *message.Message {
	h.t.Helper()
	ev := arc.Event{Type: typ, Payload: json.RawMessage(payload), Meta: arc.Meta{ID: typ + "-id"}}
	msg, err := arc.ToMessage(ev)
	require.NoError(h.t, err)
	require.NoError(h.t, h.pubSub.Publish(topic, msg))
	return msg
}

// A payload nested 9,999 levels deep is over the default read limit: it is
// malformed, dead-lettered once with its bytes, and never reaches the
// handler. The next dead letter is the next event's: no second one.
func TestDeepEventDeadLetteredOnceAsMalformed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, StackConfig{Retry: RetryConfig{MaxRetries: 2}})
	var calls counter
	h.handle("fails", "*", func(context.Context, arc.Event) error { calls.inc(); return errors.New("no") })
	h.run()
	deep := nested(9999)
	h.publishRaw("deep", deep)
	dl, _ := h.nextDeadLetter()
	assert.Equal(t, ReasonMalformed, dl.Reason)
	assert.Contains(t, dl.Error.Message, "nested too deeply")
	require.NotNil(t, dl.Raw)
	assert.Equal(t, deep, dl.Raw.Payload, "the original bytes")
	assert.Equal(t, 0, calls.get())

	h.publishRaw("after", "null")
	dl, _ = h.nextDeadLetter()
	assert.Equal(t, "after", dl.Event.Type, "the deep event was dead-lettered once")
	assert.Equal(t, 3, calls.get())
}

// With no read limit, a failing handler on a 9,999-deep event still ends in
// exactly one dead letter: the envelope, over encoding/json's depth, falls
// back to the placeholder with the raw bytes and the reason, and the
// handler runs its attempts and no more (no hot loop).
func TestDeadLetterFallsBackWhenTheEnvelopeCannotBeEncoded(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, StackConfig{Retry: RetryConfig{MaxRetries: 2}},
		wildcard.Config{Limits: arc.Limits{MaxDepth: arc.NoLimit}})
	var calls counter
	h.handle("fails", "*", func(context.Context, arc.Event) error { calls.inc(); return errors.New("no") })
	h.run()
	deep := nested(9999)
	h.publishRaw("deep", deep)
	dl, msg := h.nextDeadLetter()
	assert.Equal(t, ReasonRetryExhausted, dl.Reason)
	assert.Equal(t, "no", dl.Error.Message)
	assert.Equal(t, 3, dl.Attempts)
	assert.Equal(t, "<unknown>", dl.Event.Type)
	assert.Equal(t, "deep-id", dl.Event.Meta.ID, "named by the readable event id")
	assert.Contains(t, dl.EncodeError, "nested too deeply")
	require.NotNil(t, dl.Raw)
	assert.Equal(t, deep, dl.Raw.Payload)
	assert.Equal(t, ReasonRetryExhausted, msg.Metadata.Get(MetadataDLQReason))

	h.publishRaw("after", "null")
	dl, _ = h.nextDeadLetter()
	assert.Equal(t, "after", dl.Event.Type, "one dead letter for the deep event")
	assert.Equal(t, 6, calls.get(), "three attempts each, no loop")
}

// A malformed message's raw payload is kept up to MaxRawBytes: a dead
// letter is never much larger than the limit.
func TestRawPayloadBoundedByMaxRawBytes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, StackConfig{DeadLetter: DeadLetterConfig{MaxRawBytes: 1000}})
	h.handle("any", "*", func(context.Context, arc.Event) error { return nil })
	h.run()
	big := strings.Repeat("x", 1<<20)
	require.NoError(t, h.pubSub.Publish(topic, message.NewMessage("big", []byte(big))))
	dl, msg := h.nextDeadLetter()
	assert.Equal(t, ReasonMalformed, dl.Reason)
	require.NotNil(t, dl.Raw)
	assert.True(t, dl.Raw.Truncated)
	assert.Equal(t, 1<<20, dl.Raw.Size)
	assert.Equal(t, big[:1000], dl.Raw.Payload)
	assert.Less(t, len(msg.Payload), 4000)
}

// The wildcard router's panic errors carry no stack into dead letters
// unless IncludeStack is set.
func TestWildcardPanicStackOnlyWithIncludeStack(t *testing.T) {
	t.Parallel()
	d, err := NewDeadLetter(DeadLetterConfig{Publisher: &failingPublisher{}, Topic: "x"})
	require.NoError(t, err)
	pe := &wildcard.PanicError{Value: "boom", Stack: "goroutine 1 [running]:"}
	assert.Equal(t, ErrorInfo{Message: "panic: boom"}, d.errorInfo(pe))
	d.cfg.IncludeStack = true
	assert.Equal(t, ErrorInfo{Message: "panic: boom", Stack: "goroutine 1 [running]:"}, d.errorInfo(pe))
}

// A panic in a handler under the Stack reaches nothing that leaves the
// process with its stack: not the error a failed dead-letter publish
// returns (which the router logs), not the dead letter; the stack is
// written only with IncludeStack.
func TestStackKeepsPanicStacksInProcess(t *testing.T) {
	t.Parallel()
	for _, include := range []bool{false, true} {
		pub := &failingPublisher{fail: true}
		stack, err := NewStack(StackConfig{Retry: RetryConfig{MaxRetries: NoRetries},
			DeadLetter: DeadLetterConfig{Publisher: pub, Topic: "dlq", IncludeStack: include}})
		require.NoError(t, err)
		chain := chainOf(stack.Middleware, func(*message.Message) ([]*message.Message, error) { panic("boom") })
		msg := eventMessage(t, "x")
		_, err = chain(msg)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "panic: boom")
		assert.NotContains(t, err.Error(), "goroutine", "no stack in the logged error")

		pub.fail = false
		_, err = chain(msg)
		require.NoError(t, err)
		require.Len(t, pub.got, 1)
		var dl DeadLetteredEvent
		require.NoError(t, json.Unmarshal(pub.got[0].Payload, &dl))
		assert.Equal(t, "panic: boom", dl.Error.Message)
		assert.Equal(t, "panic: boom", pub.got[0].Metadata.Get(MetadataDLQError))
		if include {
			assert.Contains(t, dl.Error.Stack, "goroutine")
		} else {
			assert.NotContains(t, string(pub.got[0].Payload), "goroutine")
		}
	}
}
