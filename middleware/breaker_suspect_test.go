package middleware

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/fakeclock"
)

// heldCall runs a message id through b's Middleware over h in a
// goroutine; its result comes on the channel. The test's cleanup ends the
// call (its context) and waits for the goroutine, so none is left.
func heldCall(t *testing.T, b *Breaker, id string, h message.HandlerFunc) <-chan error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	exited := make(chan struct{})
	msg := message.NewMessage(id, nil)
	msg.SetContext(ctx)
	go func() {
		defer close(exited)
		_, err := b.Middleware(h)(msg)
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	return done
}

// coolDowns lets n cool-downs pass, each ending with one failed probe,
// and fails the test if a held call returned meanwhile.
func coolDowns(t *testing.T, clock *fakeclock.Clock, b *Breaker, n, waiting int, calls ...<-chan error) {
	t.Helper()
	for range n {
		before := b.Stats().ProbeFailures
		require.Eventually(t, func() bool { return b.Stats().Waiting == waiting }, waitTimeout, pollInterval)
		clock.Advance(DefaultBreakerCoolDown)
		require.Eventually(t, func() bool { return b.Stats().ProbeFailures == before+1 && b.State() == BreakerOpen },
			waitTimeout, pollInterval, "one failed probe per cool-down")
		for _, c := range calls {
			select {
			case err := <-c:
				t.Fatalf("a held message was returned during an outage: %v", err)
			default:
			}
		}
	}
}

// One message alone in hand, failing its probes on its own fault: after
// ProbeAttempts failed probes its failure is returned, the breaker stays
// open; back from Retry, its next failed probe returns it at once.
func TestBreakerReturnsAMessageThatFailsItsProbesInARow(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Unix(1_800_000_000, 0))
	b := newTestBreaker(t, clock, BreakerConfig{MinRequests: 1})
	b.record(context.Background(), false, errDown)
	h := func(*message.Message) ([]*message.Message, error) { return nil, errDown }
	call := heldCall(t, b, "poison", h)
	coolDowns(t, clock, b, DefaultBreakerProbeAttempts-1, 1, call)
	clock.Advance(DefaultBreakerCoolDown)
	select {
	case err := <-call:
		assert.ErrorIs(t, err, errDown)
	case <-time.After(waitTimeout):
		t.Fatal("not returned after ProbeAttempts failed probes")
	}
	st := b.Stats()
	assert.Equal(t, BreakerOpen, st.State, "still open for the others")
	assert.Equal(t, uint64(DefaultBreakerProbeAttempts), st.ProbeFailures)
	assert.Equal(t, uint64(1), st.Returned)

	call = heldCall(t, b, "poison", h) // Retry's next attempt
	require.Eventually(t, func() bool { return b.Stats().Waiting == 1 }, waitTimeout, pollInterval)
	clock.Advance(DefaultBreakerCoolDown)
	select {
	case err := <-call:
		assert.ErrorIs(t, err, errDown)
	case <-time.After(waitTimeout):
		t.Fatal("the row went on, but the message was held again")
	}
	assert.Equal(t, uint64(2), b.Stats().Returned)
}

// An outage: every message's probe fails. With two messages in hand the
// probes alternate, so neither makes a row, and neither is returned
// however long it lasts (ordinary errors, as a 503 is).
func TestBreakerOutageWithOthersWaitingReturnsNothing(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Unix(1_800_000_000, 0))
	b := newTestBreaker(t, clock, BreakerConfig{MinRequests: 1})
	b.record(context.Background(), false, errDown)
	h := func(*message.Message) ([]*message.Message, error) { return nil, errDown }
	a, c := heldCall(t, b, "a", h), heldCall(t, b, "b", h)
	coolDowns(t, clock, b, 4*DefaultBreakerProbeAttempts, 2, a, c)
	assert.Zero(t, b.Stats().Returned)
}

// An outage reported as transport failures (the dependency out of reach)
// never makes a row, even with one message alone in hand.
func TestBreakerTransportOutageReturnsNothing(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Unix(1_800_000_000, 0))
	b := newTestBreaker(t, clock, BreakerConfig{MinRequests: 1})
	b.record(context.Background(), false, errDown)
	call := heldCall(t, b, "only", func(*message.Message) ([]*message.Message, error) {
		return nil, Transient(fmt.Errorf("dial tcp 10.0.0.7:5432: connection refused"))
	})
	coolDowns(t, clock, b, 4*DefaultBreakerProbeAttempts, 1, call)
	assert.Zero(t, b.Stats().Returned)
}

// Another message's failed probe breaks the row: evidence of an outage.
func TestBreakerAnotherFailedProbeBreaksTheRow(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Unix(1_800_000_000, 0))
	b := newTestBreaker(t, clock, BreakerConfig{MinRequests: 1})
	ctx := context.Background()
	b.record(ctx, false, errDown)
	for range DefaultBreakerProbeAttempts - 1 {
		clock.Advance(DefaultBreakerCoolDown)
		require.True(t, b.takeProbe(ctx))
		b.record(ctx, true, errDown)
		assert.False(t, b.probeFailed("a", errDown))
	}
	clock.Advance(DefaultBreakerCoolDown)
	require.True(t, b.takeProbe(ctx))
	b.record(ctx, true, errDown)
	assert.False(t, b.probeFailed("b", errDown), "another message fails too")
	clock.Advance(DefaultBreakerCoolDown)
	require.True(t, b.takeProbe(ctx))
	b.record(ctx, true, errDown)
	assert.False(t, b.probeFailed("a", errDown), "a's row starts again")

	// NoProbeLimit: never returned.
	nb := newTestBreaker(t, clock, BreakerConfig{MinRequests: 1, ProbeAttempts: NoProbeLimit})
	nb.record(ctx, false, errDown)
	for range 3 * DefaultBreakerProbeAttempts {
		clock.Advance(DefaultBreakerCoolDown)
		require.True(t, nb.takeProbe(ctx))
		nb.record(ctx, true, errDown)
		assert.False(t, nb.probeFailed("a", errDown))
	}
}
