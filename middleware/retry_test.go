package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Arc's withRetry delays: 1 s, 2 s, 4 s, capped at 30 s, jitter adding up to 10 %.
func TestArcBackoff(t *testing.T) {
	t.Parallel()
	r, err := NewRetry(RetryConfig{})
	require.NoError(t, err)
	for n, base := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: 30 * time.Second, 40: 30 * time.Second} {
		for range 50 {
			d := r.Delay(n)
			assert.GreaterOrEqual(t, d, base)
			assert.Less(t, d, base+base/10+1)
		}
	}
	r, err = NewRetry(RetryConfig{Jitter: NoJitter})
	require.NoError(t, err)
	assert.Equal(t, 2*time.Second, r.Delay(2))

	r, err = NewRetry(RetryConfig{Backoff: NoBackoff})
	require.NoError(t, err)
	assert.Zero(t, r.Delay(1), "NoBackoff retries at once")
	assert.Zero(t, r.Delay(5))
}

// A delivery whose context ends before its retries do (a shutdown, or
// watermill-sql's ack deadline) is nacked, and the next delivery to this
// process counts on: the failure ends in the dead-letter topic instead of
// looping for ever.
func TestInterruptedDeliveriesCountOn(t *testing.T) {
	t.Parallel()
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

// The zero RetryConfig is Arc's withRetry, and Validate sees the defaults.
func TestRetryConfigDefaults(t *testing.T) {
	t.Parallel()
	var c RetryConfig
	c.setDefaults()
	assert.Equal(t, DefaultMaxRetries, c.MaxRetries)
	assert.Equal(t, DefaultBackoff, c.Backoff)
	assert.Equal(t, DefaultMaxBackoff, c.MaxBackoff)
	assert.Equal(t, DefaultJitter, c.Jitter)
	require.NoError(t, RetryConfig{}.Validate())

	c = RetryConfig{Backoff: time.Minute}
	c.setDefaults()
	assert.Equal(t, time.Minute, c.MaxBackoff, "a default cap never undercuts Backoff")
	for _, none := range []RetryConfig{{MaxRetries: NoRetries}, {Backoff: NoBackoff}, {Jitter: NoJitter}} {
		assert.NoError(t, none.Validate(), "%+v", none)
	}
}

// Every refused RetryConfig names its field and wraps ErrInvalidConfig:
// -1 means none, any other negative value is invalid, and MaxBackoff must
// not undercut Backoff.
func TestRetryConfigRefusesEachBadField(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		cfg   RetryConfig
		field string
	}{
		"MaxRetries -2":            {RetryConfig{MaxRetries: -2}, "MaxRetries"},
		"Backoff -2":               {RetryConfig{Backoff: -2}, "Backoff"},
		"MaxBackoff negative":      {RetryConfig{MaxBackoff: -time.Second}, "MaxBackoff"},
		"MaxBackoff below Backoff": {RetryConfig{Backoff: time.Minute, MaxBackoff: time.Second}, "MaxBackoff"},
		"Jitter -0.5":              {RetryConfig{Jitter: -0.5}, "Jitter"},
		"Jitter above 1":           {RetryConfig{Jitter: 2}, "Jitter"},
	} {
		_, err := NewRetry(tc.cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, name)
		assert.Contains(t, err.Error(), tc.field, name)
		assert.ErrorIs(t, tc.cfg.Validate(), ErrInvalidConfig, name)
	}
}

// closedCause stands for a transport's ErrClosed: it matches ErrShutdown.
type closedCause struct{}

func (closedCause) Error() string        { return "transport: closed" }
func (closedCause) Is(target error) bool { return target == ErrShutdown }

// IsShutdown is true only for a context cancelled with a cause that
// matches ErrShutdown: not for a plain cancel, a deadline, or a live one.
func TestIsShutdownNeedsTheShutdownCause(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancelCause(context.Background())
	assert.False(t, IsShutdown(ctx), "live")
	cancel(closedCause{})
	assert.True(t, IsShutdown(ctx))
	assert.True(t, IsShutdown(context.WithValue(ctx, parentKey{}, nil)), "derived contexts inherit the cause")

	plain, stop := context.WithCancel(context.Background())
	stop()
	assert.False(t, IsShutdown(plain))
	other, stopOther := context.WithCancelCause(context.Background())
	stopOther(errors.New("ack deadline"))
	assert.False(t, IsShutdown(other))
}

// A handler failing because its transport shuts down is no attempt: the
// message is nacked with ErrShutdown, never dead-lettered, and the next
// delivery starts where the real failures left off.
func TestShutdownFailureIsNotCountedAsAnAttempt(t *testing.T) {
	t.Parallel()
	dlq := &failingPublisher{}
	stack, err := NewStack(StackConfig{Retry: RetryConfig{MaxRetries: 2, Backoff: NoBackoff},
		DeadLetter: DeadLetterConfig{Publisher: dlq, Topic: "dlq"}})
	require.NoError(t, err)
	msg := eventMessage(t, "x")
	var calls counter
	var shutdownOn int
	var cancel context.CancelCauseFunc
	chain := chainOf(stack.Middleware, func(m *message.Message) ([]*message.Message, error) {
		if calls.inc() == shutdownOn {
			cancel(closedCause{})
			return nil, fmt.Errorf("query: %w", context.Cause(m.Context()))
		}
		return nil, errors.New("dependency down")
	})
	deliver := func(on int) error {
		var ctx context.Context
		ctx, cancel = context.WithCancelCause(context.Background())
		defer cancel(nil)
		shutdownOn = on
		m := msg.Copy()
		m.SetContext(ctx)
		_, err := chain(m)
		return err
	}
	// Delivery 1: attempt 1 fails for real, the second call meets the
	// shutdown. Only one attempt counts.
	err = deliver(2)
	require.ErrorIs(t, err, ErrShutdown)
	assert.Empty(t, dlq.got, "a shutdown is never dead-lettered")
	// Delivery 2 starts from attempt 2 and exhausts at 3 (MaxRetries 2).
	require.NoError(t, deliver(-1))
	assert.Equal(t, 4, calls.get(), "2 calls, then 2 more: the shutdown's call did not count")
	require.Len(t, dlq.got, 1)
	var dl DeadLetteredEvent
	require.NoError(t, json.Unmarshal(dlq.got[0].Payload, &dl))
	assert.Equal(t, 3, dl.Attempts)

	// The first call of a delivery meeting the shutdown leaves no trace.
	msg = eventMessage(t, "y")
	calls = counter{}
	require.ErrorIs(t, deliver(1), ErrShutdown)
	require.NoError(t, deliver(-1))
	assert.Equal(t, 4, calls.get(), "a fresh budget of three attempts after the uncounted one")
	require.Len(t, dlq.got, 2)
	require.NoError(t, json.Unmarshal(dlq.got[1].Payload, &dl))
	assert.Equal(t, 3, dl.Attempts)
}

// Without Retry inside, DeadLetter alone nacks a failure that meets a
// shutdown, whatever the error says.
func TestDeadLetterNacksFailuresDuringShutdown(t *testing.T) {
	t.Parallel()
	dlq := &failingPublisher{}
	d, err := NewDeadLetter(DeadLetterConfig{Publisher: dlq, Topic: "dlq"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancelCause(context.Background())
	msg := eventMessage(t, "x")
	msg.SetContext(ctx)
	_, err = d.Middleware(func(*message.Message) ([]*message.Message, error) {
		cancel(closedCause{})
		return nil, &RetryError{Err: errors.New("boom"), Attempts: 1}
	})(msg)
	require.Error(t, err, "nacked")
	assert.Empty(t, dlq.got)
}
