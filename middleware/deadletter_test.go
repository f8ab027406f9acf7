package middleware

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

func TestRetriesThenDeadLetterWithEveryField(t *testing.T) {
	t.Parallel()
	var retries []int
	h := newHarness(t, StackConfig{
		Retry:      RetryConfig{MaxRetries: 2, OnRetry: func(i RetryInfo) { retries = append(retries, i.Attempt) }},
		DeadLetter: DeadLetterConfig{ConsumerGroup: "billing-service"},
	})
	var calls counter
	h.handle("charge", "billing.*", func(context.Context, arc.Event) error {
		calls.inc()
		return fmt.Errorf("charging: %w", codedError{"Stripe API timeout", "ETIMEDOUT"})
	})
	h.run()
	sent := h.publish("billing.charge", map[string]int{"amount": 99}, arc.Meta{CorrelationID: "req-1", UserID: "u-1"})

	dl, msg := h.nextDeadLetter()
	assert.Equal(t, 3, calls.get(), "one call and two retries")
	assert.Equal(t, []int{1, 2}, retries)
	assert.True(t, sent.Equal(dl.Event), "the event, whole")
	assert.Equal(t, ErrorInfo{Message: "charging: Stripe API timeout", Code: "ETIMEDOUT"}, dl.Error, "no stack unless enabled")
	assert.Equal(t, 3, dl.Attempts)
	assert.False(t, dl.FirstFailedAt.IsZero())
	assert.False(t, dl.LastFailedAt.Before(dl.FirstFailedAt))
	assert.Equal(t, "charge", dl.HandlerName)
	assert.Equal(t, ReasonRetryExhausted, dl.Reason)
	assert.Equal(t, "middleware.codedError", dl.ErrorType)
	assert.Equal(t, topic, dl.SourceTopic)
	assert.Equal(t, "billing.*", dl.Pattern)
	assert.Equal(t, "billing-service", dl.ConsumerGroup)
	host, err := os.Hostname()
	require.NoError(t, err)
	assert.Equal(t, host, dl.Host)

	// The same facts in metadata, and the chain kept (Arc's $deadLetter loses its correlationId).
	md := msg.Metadata
	assert.Equal(t, ReasonRetryExhausted, md.Get(MetadataDLQReason))
	assert.Equal(t, "3", md.Get(MetadataDLQAttempts))
	assert.Equal(t, "charge", md.Get(MetadataDLQHandler))
	assert.Equal(t, "billing.*", md.Get(MetadataDLQPattern))
	assert.Equal(t, topic, md.Get(MetadataDLQSourceTopic))
	assert.Equal(t, "billing-service", md.Get(MetadataDLQConsumerGroup))
	assert.Equal(t, "charging: Stripe API timeout", md.Get(MetadataDLQError))
	assert.Equal(t, arc.FormatTimestamp(dl.FirstFailedAt), md.Get(MetadataDLQFirstFailedAt))
	assert.Equal(t, "req-1", md.Get(arc.MetadataCorrelationID))
	assert.Equal(t, sent.Meta.ID, md.Get(arc.MetadataCausationID))
	assert.Equal(t, "charging: Stripe API timeout", md.Get("reason_poisoned"), "Watermill's PoisonQueue keys too")

	// Arc's field names and time format on the wire.
	assert.Contains(t, string(msg.Payload), `"firstFailedAt":"`+arc.FormatTimestamp(dl.FirstFailedAt)+`"`)
	assert.Contains(t, string(msg.Payload), `"handlerName":"charge"`)

	// The source message was acked: no redelivery.
	h.noDeadLetter(100 * time.Millisecond)
	assert.Equal(t, 3, calls.get())
	assert.Equal(t, uint64(2), h.stack.Retry.Retried())
	assert.Equal(t, uint64(1), h.stack.DeadLetter.Stats().DeadLettered)
}

func TestUnrecoverableSkipsRetries(t *testing.T) {
	t.Parallel()
	errPermanent := errors.New("card declined")
	h := newHarness(t, StackConfig{Retry: RetryConfig{Unrecoverable: func(err error) bool { return errors.Is(err, errPermanent) }}})
	var a, b counter
	h.handle("a", "a.*", func(context.Context, arc.Event) error {
		a.inc()
		return fmt.Errorf("bad payload: %w", arc.ErrUnrecoverable)
	})
	h.handle("b", "b.*", func(context.Context, arc.Event) error { b.inc(); return errPermanent })
	h.run()
	h.publish("a.x", nil, arc.Meta{})
	dl, _ := h.nextDeadLetter()
	assert.Equal(t, ReasonUnrecoverable, dl.Reason)
	assert.Equal(t, 1, dl.Attempts)
	h.publish("b.x", nil, arc.Meta{})
	dl, _ = h.nextDeadLetter()
	assert.Equal(t, ReasonUnrecoverable, dl.Reason)
	assert.Equal(t, 1, a.get())
	assert.Equal(t, 1, b.get())
}

// A panic and a timeout are retried, then dead-lettered.
func TestPanicAndTimeoutAreRetried(t *testing.T) {
	t.Parallel()
	h := newHarness(t, StackConfig{Retry: RetryConfig{MaxRetries: 1}, Timeout: 20 * time.Millisecond,
		DeadLetter: DeadLetterConfig{IncludeStack: true}})
	var panics, timeouts counter
	var freshContexts counter
	h.handle("panics", "p.*", func(context.Context, arc.Event) error {
		panics.inc()
		panic("boom")
	})
	h.handle("slow", "s.*", func(ctx context.Context, _ arc.Event) error {
		timeouts.inc()
		if ctx.Err() == nil {
			freshContexts.inc()
		}
		<-ctx.Done()
		return ctx.Err()
	})
	h.run()
	h.publish("p.x", nil, arc.Meta{})
	dl, _ := h.nextDeadLetter()
	assert.Equal(t, 2, panics.get())
	assert.Equal(t, "panic: boom", dl.Error.Message)
	assert.Contains(t, dl.Error.Stack, "goroutine", "stack included when enabled")
	assert.Equal(t, ReasonRetryExhausted, dl.Reason)

	h.publish("s.x", nil, arc.Meta{})
	dl, _ = h.nextDeadLetter()
	assert.Equal(t, 2, timeouts.get())
	assert.Equal(t, 2, freshContexts.get(), "each attempt starts with a live context")
	assert.Equal(t, 2, dl.Attempts)
	assert.Contains(t, dl.Error.Message, "deadline exceeded")
}

func TestStackTraceOffByDefault(t *testing.T) {
	t.Parallel()
	h := newHarness(t, StackConfig{Retry: RetryConfig{MaxRetries: NoRetries}})
	h.handle("panics", "*", func(context.Context, arc.Event) error { panic("boom") })
	h.run()
	h.publish("x", nil, arc.Meta{})
	dl, _ := h.nextDeadLetter()
	assert.Equal(t, "panic: boom", dl.Error.Message)
	assert.Empty(t, dl.Error.Stack)
	assert.Equal(t, 1, dl.Attempts)
}

// A shutdown during backoff nacks the message; it never dead-letters it.
func TestShutdownDuringBackoffNacks(t *testing.T) {
	t.Parallel()
	h := newHarness(t, StackConfig{Retry: RetryConfig{Backoff: time.Hour, MaxBackoff: time.Hour}})
	var calls counter
	failed := make(chan struct{}, 1)
	h.handle("h", "*", func(context.Context, arc.Event) error {
		calls.inc()
		select {
		case failed <- struct{}{}:
		default:
		}
		return errors.New("down")
	})
	h.run()
	h.publish("x", nil, arc.Meta{})
	<-failed
	start := time.Now()
	h.close()
	assert.Less(t, time.Since(start), 4*time.Second, "close did not wait out the backoff")
	h.noDeadLetter(50 * time.Millisecond)
	assert.Zero(t, h.stack.DeadLetter.Stats().DeadLettered)

	// The same at the middleware level: the message is nacked with ErrShutdown.
	ctx, cancel := context.WithCancel(context.Background())
	msg := eventMessage(t, "x")
	msg.SetContext(ctx)
	chain := chainOf(h.stack.Middleware, func(*message.Message) ([]*message.Message, error) {
		cancel()
		return nil, errors.New("down")
	})
	_, err := chain(msg)
	assert.ErrorIs(t, err, ErrShutdown)
}

// failingPublisher fails while fail is set: a broker that is down.
type failingPublisher struct {
	fail bool
	got  []*message.Message
}

func (p *failingPublisher) Publish(_ string, msgs ...*message.Message) error {
	if p.fail {
		return errors.New("broker down")
	}
	p.got = append(p.got, msgs...)
	return nil
}

func (p *failingPublisher) Close() error { return nil }

func TestDeadLetterPublishFailureNacks(t *testing.T) {
	t.Parallel()
	pub := &failingPublisher{fail: true}
	stack, err := NewStack(StackConfig{DeadLetter: DeadLetterConfig{Publisher: pub, Topic: "dlq"},
		Retry: RetryConfig{MaxRetries: NoRetries}})
	require.NoError(t, err)
	chain := chainOf(stack.Middleware, func(*message.Message) ([]*message.Message, error) { return nil, errors.New("nope") })
	msg := eventMessage(t, "x")
	_, err = chain(msg)
	require.Error(t, err, "nacked: nothing is lost")
	assert.Contains(t, err.Error(), "dead letter not published")
	assert.Empty(t, pub.got)
	assert.Equal(t, uint64(1), stack.DeadLetter.Stats().PublishFailures)

	pub.fail = false
	_, err = chain(msg)
	require.NoError(t, err, "acked once the dead letter is stored")
	assert.Len(t, pub.got, 1)
}

func TestDeadLetterOfADeadLetterIsNotRepeated(t *testing.T) {
	t.Parallel()
	pub := &failingPublisher{}
	stack, err := NewStack(StackConfig{DeadLetter: DeadLetterConfig{Publisher: pub, Topic: "dlq"},
		Retry: RetryConfig{MaxRetries: NoRetries}})
	require.NoError(t, err)
	chain := chainOf(stack.Middleware, func(*message.Message) ([]*message.Message, error) { return nil, errors.New("nope") })
	msg := eventMessage(t, "x")
	msg.Metadata.Set(MetadataDLQReason, ReasonRetryExhausted)
	_, err = chain(msg)
	assert.Error(t, err)
	assert.Empty(t, pub.got, "no amplification loop")
}

func TestMalformedMessagesAreDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, StackConfig{})
	h.handle("all", "*", func(context.Context, arc.Event) error { return nil })
	h.run()
	bad := message.NewMessage("m-1", []byte(`{"not":"an event"}`))
	bad.Metadata.Set("foreign", "yes")
	require.NoError(t, h.pubSub.Publish(topic, bad))
	dl, msg := h.nextDeadLetter()
	assert.Equal(t, ReasonMalformed, dl.Reason)
	assert.Equal(t, "<unknown>", dl.Event.Type)
	assert.Equal(t, "m-1", dl.Event.Meta.ID)
	require.NotNil(t, dl.Raw)
	assert.Equal(t, `{"not":"an event"}`, dl.Raw.Payload)
	assert.Equal(t, "yes", dl.Raw.Metadata["foreign"])
	assert.Contains(t, dl.Error.Message, "arc_type")
	assert.Equal(t, ReasonMalformed, msg.Metadata.Get(MetadataDLQReason))
}

func eventMessage(t *testing.T, typ string) *message.Message {
	t.Helper()
	ev, err := arc.NewEvent(typ, map[string]string{"k": "v"}, arc.Meta{})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	return msg
}

func chainOf(mw []message.HandlerMiddleware, h message.HandlerFunc) message.HandlerFunc {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// A router reading its own dead-letter topic acknowledges the dead letters
// it finds there and never dead-letters them again; a binary payload is
// kept recoverably, in base64.
func TestMalformedAcksDeadLettersAndKeepsBinaryPayloads(t *testing.T) {
	t.Parallel()
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

// NewDeadLetter fills in the defaults on its own copy of a DelayedRetry:
// one value may be shared by several configs.
func TestDeadLetterLeavesTheCallersDelayedRetryAlone(t *testing.T) {
	t.Parallel()
	shared := &DelayedRetry{Publisher: &failingPublisher{}}
	_, err := NewDeadLetter(DeadLetterConfig{Publisher: &failingPublisher{}, Topic: "x", Delayed: shared})
	require.NoError(t, err)
	assert.Nil(t, shared.Delays, "the caller's value is not changed")
}

// Every refused DeadLetterConfig or StackConfig names its field and wraps
// ErrInvalidConfig.
func TestDeadLetterConfigRefusesEachBadField(t *testing.T) {
	t.Parallel()
	pub := &failingPublisher{}
	ok := DeadLetterConfig{Publisher: pub, Topic: "x"}
	for name, tc := range map[string]struct {
		mutate func(*DeadLetterConfig)
		field  string
	}{
		"no publisher":              {func(c *DeadLetterConfig) { c.Publisher = nil }, "Publisher"},
		"no topic":                  {func(c *DeadLetterConfig) { c.Topic = "" }, "Topic"},
		"negative publish timeout":  {func(c *DeadLetterConfig) { c.PublishTimeout = -1 }, "PublishTimeout"},
		"negative max raw bytes":    {func(c *DeadLetterConfig) { c.MaxRawBytes = -2 }, "MaxRawBytes"},
		"delayed without publisher": {func(c *DeadLetterConfig) { c.Delayed = &DelayedRetry{} }, "DelayedRetry.Publisher"},
		"zero delay": {func(c *DeadLetterConfig) {
			c.Delayed = &DelayedRetry{Publisher: pub, Delays: []time.Duration{time.Second, 0}}
		}, "Delays[1]"},
	} {
		c := ok
		tc.mutate(&c)
		_, err := NewDeadLetter(c)
		require.ErrorIs(t, err, ErrInvalidConfig, name)
		assert.Contains(t, err.Error(), tc.field, name)
		assert.ErrorIs(t, c.Validate(), ErrInvalidConfig, name)
	}
	require.NoError(t, ok.Validate())

	_, err := NewStack(StackConfig{DeadLetter: ok, Timeout: -2})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, err = NewStack(StackConfig{DeadLetter: ok, OnInvalid: 7})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, err = NewStack(StackConfig{DeadLetter: ok, Timeout: NoTimeout})
	assert.NoError(t, err)
	_, err = ValidatingPublisher(nil, nil, Reject, nil)
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

// A dead letter is logged at Error (Watermill's logger has no Warn), with
// its reason and the handler's error, for someone to look at.
func TestDeadLettersAreLoggedAtErrorWithTheReason(t *testing.T) {
	t.Parallel()
	logger := watermill.NewCaptureLogger()
	stack, err := NewStack(StackConfig{Retry: RetryConfig{MaxRetries: NoRetries},
		DeadLetter: DeadLetterConfig{Publisher: &failingPublisher{}, Topic: "dlq", Logger: logger}})
	require.NoError(t, err)
	msg := eventMessage(t, "order.created")
	_, err = chainOf(stack.Middleware, func(*message.Message) ([]*message.Message, error) {
		return nil, errors.New("card declined")
	})(msg)
	require.NoError(t, err)
	var lines []watermill.CapturedMessage
	for _, m := range logger.Captured()[watermill.ErrorLogLevel] {
		if m.Msg == "Message dead-lettered" {
			lines = append(lines, m)
		}
	}
	require.Len(t, lines, 1)
	assert.Equal(t, ReasonRetryExhausted, lines[0].Fields["reason"])
	assert.Equal(t, "order.created", lines[0].Fields["event_type"])
	assert.Equal(t, msg.UUID, lines[0].Fields["event_id"])
	assert.EqualError(t, lines[0].Err, "card declined")
	assert.Empty(t, logger.Captured()[watermill.InfoLogLevel])
}
