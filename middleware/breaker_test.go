package middleware

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/fakeclock"
	"github.com/arcmill/arcmill/internal/leaktest"
	"github.com/arcmill/arcmill/wildcard"
)

var errDown = errors.New("payment API answers 500")

func newTestBreaker(t *testing.T, clock *fakeclock.Clock, cfg BreakerConfig) *Breaker {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "billing/charge"
	}
	cfg.Now = clock.Now
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = 5 * time.Millisecond
	}
	b, err := NewBreaker(cfg)
	require.NoError(t, err)
	return b
}

func TestBreakerConfigDefaultsAndValidation(t *testing.T) {
	t.Parallel()
	var c BreakerConfig
	c.Name = "x"
	c.setDefaults()
	assert.Equal(t, DefaultBreakerThreshold, c.Threshold)
	assert.Equal(t, DefaultBreakerMinRequests, c.MinRequests)
	assert.Equal(t, DefaultBreakerWindow, c.Window)
	assert.Equal(t, DefaultBreakerCoolDown, c.CoolDown)
	assert.Equal(t, DefaultBreakerCoolDown, c.ProbeLease)
	assert.Equal(t, DefaultBreakerProbeAttempts, c.ProbeAttempts)
	assert.NoError(t, BreakerConfig{Name: "x", ProbeAttempts: NoProbeLimit}.Validate())
	for _, bad := range []BreakerConfig{{}, {Name: "x", Threshold: 1.5}, {Name: "x", Threshold: -0.1},
		{Name: "x", MinRequests: -1}, {Name: "x", CoolDown: -time.Second}, {Name: "x", Window: time.Millisecond, Buckets: 10}, {Name: "x", ProbeAttempts: -2}} {
		assert.ErrorIs(t, bad.Validate(), ErrInvalidConfig, "%+v", bad)
	}
}

// MassTransit's rule: 15 % of at least 10 outcomes within the window.
func TestBreakerTripsAtThresholdWithMinimumCount(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Unix(1_800_000_000, 0))
	b := newTestBreaker(t, clock, BreakerConfig{})
	ctx := context.Background()
	for range 8 {
		b.record(ctx, false, nil)
	}
	b.record(ctx, false, errDown) // 1 of 9: under MinRequests
	assert.Equal(t, BreakerClosed, b.State())
	b.record(ctx, false, nil) // 1 of 10 = 10 %: under the threshold
	assert.Equal(t, BreakerClosed, b.State())
	b.record(ctx, false, errDown) // 2 of 11 = 18 %
	assert.Equal(t, BreakerOpen, b.State())
	st := b.Stats()
	assert.False(t, st.Healthy())
	assert.ErrorIs(t, st.LastError, errDown)
	assert.Equal(t, clock.Now().Add(DefaultBreakerCoolDown), st.OpenUntil)
	assert.ErrorIs(t, b.Health(ctx), ErrBreakerOpen)
}

// Outcomes older than the window no longer count.
func TestBreakerWindowSlides(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Unix(1_800_000_000, 0))
	b := newTestBreaker(t, clock, BreakerConfig{MinRequests: 4, Threshold: 0.5})
	ctx := context.Background()
	b.record(ctx, false, errDown)
	b.record(ctx, false, errDown)
	b.record(ctx, false, errDown)
	clock.Advance(DefaultBreakerWindow) // those three leave the window
	b.record(ctx, false, errDown)
	assert.Equal(t, BreakerClosed, b.State(), "one failure in the window, under MinRequests")
	st := b.Stats()
	assert.Equal(t, 1, st.WindowFailures)
}

// Open for CoolDown, then one probe: its failure re-opens for a whole
// cool-down, its success closes with a fresh window.
func TestBreakerCoolDownAndOneProbe(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Unix(1_800_000_000, 0))
	var mu sync.Mutex
	var changes []string
	b := newTestBreaker(t, clock, BreakerConfig{MinRequests: 2, Threshold: 0.5, OnStateChange: func(from, to BreakerState) {
		mu.Lock()
		changes = append(changes, from.String()+">"+to.String())
		mu.Unlock()
	}})
	ctx := context.Background()
	b.record(ctx, false, errDown)
	b.record(ctx, false, errDown)
	require.Equal(t, BreakerOpen, b.State())
	clock.Advance(DefaultBreakerCoolDown - time.Second)
	assert.Equal(t, BreakerOpen, b.State())
	assert.False(t, b.takeProbe(ctx))
	clock.Advance(time.Second)
	assert.Equal(t, BreakerHalfOpen, b.State())
	require.True(t, b.takeProbe(ctx))
	assert.False(t, b.takeProbe(ctx), "one probe at a time")
	b.record(ctx, true, errDown)
	assert.Equal(t, BreakerOpen, b.State())
	clock.Advance(DefaultBreakerCoolDown - time.Second)
	assert.Equal(t, BreakerOpen, b.State(), "the failed probe re-opened it for a whole cool-down")
	clock.Advance(time.Second)
	require.True(t, b.takeProbe(ctx))
	b.record(ctx, true, nil)
	assert.Equal(t, BreakerClosed, b.State())
	st := b.Stats()
	assert.Zero(t, st.WindowFailures+st.WindowSuccesses, "a fresh window")
	assert.Equal(t, uint64(2), st.Opened)
	assert.Equal(t, uint64(2), st.HalfOpened)
	assert.Equal(t, uint64(1), st.Closed)
	assert.Equal(t, uint64(2), st.Probes)
	assert.Equal(t, uint64(1), st.ProbeFailures)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"closed>open", "open>half-open", "half-open>open", "open>half-open", "half-open>closed"}, changes)
}

func TestBreakerCountsClassification(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err   error
		count bool
	}{
		{errDown, true},
		{Transient(errors.New("db down")), true},
		{fmt.Errorf("%w: bad payload", arc.ErrUnrecoverable), false},
		{fmt.Errorf("%w: schema", ErrValidation), false},
		{fmt.Errorf("%w: closing", ErrShutdown), false},
		{fmt.Errorf("query: %w", context.Canceled), false},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), true},
		{nil, false},
	} {
		assert.Equal(t, tc.count, DefaultBreakerCounts(tc.err), "%v", tc.err)
	}
}

// Through the wildcard router and the whole Stack: a dependency that fails
// every call trips the breaker; the message in hand is held (no attempt
// burnt, nothing dead-lettered), one probe runs per cool-down, and once
// the dependency is back every event is handled.
func TestBreakerHoldsMessagesThroughAnOutage(t *testing.T) {
	clock := fakeclock.New(time.Unix(1_800_000_000, 0))
	b := newTestBreaker(t, clock, BreakerConfig{MinRequests: 3, Threshold: 0.5})
	const maxRetries = 5
	// One worker: one message in hand at a time, so the counts are exact.
	h := newHarnessWith(t, StackConfig{Breaker: b, Retry: RetryConfig{MaxRetries: maxRetries, Backoff: time.Millisecond}},
		wildcard.Config{Workers: 1})
	var mu sync.Mutex
	down := true
	handled := map[string]bool{}
	var calls, callsNotClosed counter
	_, err := h.events.Handle(wildcard.HandlerConfig{Name: "charge", Subscriber: b.Subscriber(h.pubSub), Topic: topic,
		Patterns: []string{"billing.*"}, Middleware: h.stack.Middleware}, func(ctx context.Context, ev arc.Event) error {
		calls.inc()
		if b.State() != BreakerClosed {
			callsNotClosed.inc()
		}
		mu.Lock()
		defer mu.Unlock()
		if down {
			return errDown
		}
		handled[ev.Meta.ID] = true
		return nil
	})
	require.NoError(t, err)
	h.run()
	const n = 10
	for range n {
		h.publish("billing.charge", map[string]int{"amount": 1}, arc.Meta{})
	}
	require.Eventually(t, func() bool { return b.State() == BreakerOpen && b.Stats().Waiting == 1 },
		waitTimeout, pollInterval, "the breaker opens and the message in hand waits")
	assert.Equal(t, 3, calls.get(), "three failed calls trip it")
	assert.Equal(t, uint64(2), h.stack.Retry.Retried(), "the failures before the trip were attempts; the tripping one was held")
	assert.Equal(t, uint64(1), b.Stats().Held)

	// A cool-down passes with the dependency still down: exactly one probe.
	clock.Advance(DefaultBreakerCoolDown)
	require.Eventually(t, func() bool { return b.Stats().ProbeFailures == 1 && b.State() == BreakerOpen },
		waitTimeout, pollInterval, "the probe fails and re-opens the breaker")
	assert.Equal(t, 4, calls.get())
	assert.Equal(t, 1, callsNotClosed.get(), "one probe while half-open")

	mu.Lock()
	down = false
	mu.Unlock()
	clock.Advance(DefaultBreakerCoolDown)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == n
	}, waitTimeout, pollInterval, "every event handled after the recovery")
	assert.Equal(t, BreakerClosed, b.State())
	assert.Equal(t, 2, callsNotClosed.get(), "the second probe, which closed it")
	assert.Equal(t, uint64(2), h.stack.Retry.Retried(), "no attempt burnt while open")
	assert.Zero(t, h.stack.DeadLetter.Stats().DeadLettered)
	h.noDeadLetter(10 * time.Millisecond)
	assert.Equal(t, n+4, calls.get(), "n successes, 3 failures before the trip, 1 failed probe")
	h.close()
	leaktest.RequireNone(t, "github.com/arcmill/arcmill/middleware", waitTimeout) // the gate's goroutine ended
}

// An unrecoverable failure is the event's: never held, dead-lettered at
// once even while the breaker is open, and it frees the probe slot.
func TestBreakerLetsTheEventsOwnFaultsThrough(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Unix(1_800_000_000, 0))
	b := newTestBreaker(t, clock, BreakerConfig{MinRequests: 1})
	ctx := context.Background()
	b.record(ctx, false, errDown)
	clock.Advance(DefaultBreakerCoolDown)
	msg := message.NewMessage("m-1", nil)
	msg.SetContext(ctx)
	bad := fmt.Errorf("%w: does not decode", arc.ErrUnrecoverable)
	_, err := b.Middleware(func(*message.Message) ([]*message.Message, error) { return nil, bad })(msg)
	assert.ErrorIs(t, err, arc.ErrUnrecoverable)
	assert.Equal(t, BreakerHalfOpen, b.State(), "neither success nor failure")
	assert.True(t, b.takeProbe(ctx), "the probe slot is free again")
}

// A message waiting at an open breaker gives up with its context: an error
// that wraps ErrBreakerOpen and the context's, so it is nacked.
func TestBreakerWaitEndsWithTheContext(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Unix(1_800_000_000, 0))
	b := newTestBreaker(t, clock, BreakerConfig{MinRequests: 1})
	b.record(context.Background(), false, errDown)
	ctx, cancel := context.WithCancel(context.Background())
	msg := message.NewMessage("m-1", nil)
	msg.SetContext(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := b.Middleware(func(*message.Message) ([]*message.Message, error) { return nil, nil })(msg)
		done <- err
	}()
	require.Eventually(t, func() bool { return b.Stats().Waiting == 1 }, waitTimeout, pollInterval)
	cancel()
	err := <-done
	assert.ErrorIs(t, err, ErrBreakerOpen)
	assert.ErrorIs(t, err, context.Canceled)
}

// The gated subscriber hands out nothing while the breaker is open, one
// message (the probe) when it is half-open, and the next only once that
// one is settled or the breaker closed.
func TestBreakerSubscriberPausesIntake(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Unix(1_800_000_000, 0))
	b := newTestBreaker(t, clock, BreakerConfig{MinRequests: 1})
	pubSub := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	t.Cleanup(func() { _ = pubSub.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.record(ctx, false, errDown)
	require.Equal(t, BreakerOpen, b.State())
	sub := b.Subscriber(pubSub)
	_, ordered := sub.(wildcard.KeyOrderedSubscriber)
	assert.False(t, ordered, "GoChannel orders nothing, nor does its gate")
	out, err := sub.Subscribe(ctx, topic)
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, pubSub.Publish(topic, message.NewMessage(fmt.Sprintf("m-%d", i), nil)))
	}
	require.Eventually(t, func() bool { return b.Stats().Paused == 1 }, waitTimeout, pollInterval)
	select {
	case msg := <-out:
		t.Fatalf("an open breaker handed out %s", msg.UUID)
	default: // still paused (Paused is 1): nothing was handed out
	}
	require.Equal(t, 1, b.Stats().Paused)

	clock.Advance(DefaultBreakerCoolDown) // half-open: one message, to be the probe
	var probe *message.Message
	select {
	case probe = <-out:
	case <-time.After(waitTimeout):
		t.Fatal("no probe message handed out")
	}
	require.True(t, b.takeProbe(ctx))
	require.Eventually(t, func() bool { return b.Stats().Paused == 1 }, waitTimeout, pollInterval,
		"the next waits while the probe runs")
	select {
	case msg := <-out:
		t.Fatalf("a second message %s while the probe runs", msg.UUID)
	default:
	}
	b.record(ctx, true, nil)
	probe.Ack()
	got := map[string]bool{probe.UUID: true}
	for range 2 {
		select {
		case msg := <-out:
			got[msg.UUID] = true
			msg.Ack()
		case <-time.After(waitTimeout):
			t.Fatalf("not handed out once the breaker closed (have %v)", got)
		}
	}
	assert.Len(t, got, 3)
}

// A message whose probe failed leaves the next probe to another waiting
// message, so that one failing on its own fault cannot keep every probe
// (and the breaker open) to itself.
func TestBreakerFailedProbeYieldsToAnotherMessage(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Unix(1_800_000_000, 0))
	b := newTestBreaker(t, clock, BreakerConfig{MinRequests: 1})
	ctx := context.Background()
	b.record(ctx, false, errDown)
	other := make(chan bool, 1)
	go func() {
		probe, err := b.admit(ctx, false)
		assert.NoError(t, err)
		other <- probe
	}()
	require.Eventually(t, func() bool { return b.Stats().Waiting == 1 }, waitTimeout, pollInterval)
	yielder := make(chan bool, 1)
	go func() {
		probe, err := b.admit(ctx, true) // its probe just failed
		assert.NoError(t, err)
		yielder <- probe
	}()
	require.Eventually(t, func() bool { return b.Stats().Waiting == 2 }, waitTimeout, pollInterval)
	clock.Advance(DefaultBreakerCoolDown)
	select {
	case probe := <-other:
		assert.True(t, probe, "the other message probes")
	case <-yielder:
		t.Fatal("the message whose probe failed took the probe again")
	case <-time.After(waitTimeout):
		t.Fatal("no probe")
	}
	b.record(ctx, true, errDown) // that probe fails too
	require.Equal(t, BreakerOpen, b.State())
	clock.Advance(DefaultBreakerCoolDown)
	select {
	case probe := <-yielder:
		assert.True(t, probe, "its turn has come")
	case <-time.After(waitTimeout):
		t.Fatal("the yielding message never probed")
	}
}
