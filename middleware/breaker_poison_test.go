package middleware_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// Regression (outside review): with the default Counts, one event failing
// on its own (a bug, a 400 from an API: neither a transport error nor
// ErrUnrecoverable) at low traffic trips the breaker with its own retries.
// It used to be held and probed forever, never dead-lettered, while the
// subscription took nothing. Now, after ProbeAttempts failed probes in a
// row, its failure is returned: Retry counts its attempts and DeadLetter
// takes it, while the breaker stays open for the others.
func TestBreakerPoisonEventDoesNotHoldTheSubscription(t *testing.T) {
	b, err := middleware.NewBreaker(middleware.BreakerConfig{Name: "poison", CoolDown: 100 * time.Millisecond,
		SyncInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	dlq := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	t.Cleanup(func() { _ = dlq.Close() })
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry:      middleware.RetryConfig{Backoff: time.Millisecond, MaxBackoff: time.Millisecond},
		DeadLetter: middleware.DeadLetterConfig{Publisher: dlq, Topic: "dlq"},
		Breaker:    b,
	})
	require.NoError(t, err)
	var h message.HandlerFunc = func(m *message.Message) ([]*message.Message, error) {
		if m.UUID == "poison" {
			return nil, errors.New("nil map in the handler for this one event")
		}
		return nil, nil
	}
	for i := len(stack.Middleware) - 1; i >= 0; i-- {
		h = stack.Middleware[i](h)
	}
	msg := func(id string) *message.Message {
		ev, _ := arc.NewEvent("order.step", map[string]string{}, arc.Meta{})
		m, _ := arc.ToMessage(ev)
		m.UUID = id
		m.SetContext(wildcard.ContextWithInfo(context.Background(), wildcard.Info{Handler: "h", Topic: "t", Event: ev}))
		return m
	}
	for i := 0; i < 8; i++ { // a quiet minute: 8 events
		_, err := h(msg("ok"))
		require.NoError(t, err)
	}
	done := make(chan error, 1)
	go func() { _, err := h(msg("poison")); done <- err }()
	select {
	case err := <-done:
		require.NoError(t, err, "dead-lettered, so acked")
	case <-time.After(outageTimeout):
		st := b.Stats()
		t.Fatalf("the poison event is still held: state %s, probes %d (failed %d), no dead letter; "+
			"the subscription takes nothing meanwhile", st.State, st.Probes, st.ProbeFailures)
	}
	st := b.Stats()
	assert.Equal(t, uint64(1), stack.DeadLetter.Stats().DeadLettered, "the poison event is dead-lettered")
	assert.Equal(t, uint64(middleware.DefaultMaxRetries), stack.Retry.Retried(), "its attempts were counted")
	// Its first attempt failed with the breaker closed (9 outcomes, under
	// MinRequests); the second tripped it and was returned after
	// ProbeAttempts failed probes; the third and fourth each after one more
	// (the same row).
	assert.Equal(t, uint64(middleware.DefaultBreakerProbeAttempts+2), st.ProbeFailures)
	assert.Equal(t, uint64(3), st.Returned)
	assert.Equal(t, middleware.BreakerOpen, st.State, "the breaker stays open: its probe failed")
}
