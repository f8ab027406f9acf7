package metrics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/fakeclock"
	"github.com/arcmill/arcmill/middleware"
)

func TestWatchBreaker(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, Config{})
	require.NoError(t, err)
	clock := fakeclock.New(time.Unix(1_800_000_000, 0))
	b, err := middleware.NewBreaker(middleware.BreakerConfig{Name: "billing/charge", MinRequests: 1, Now: clock.Now,
		SyncInterval: time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, m.WatchBreaker(b))
	// One failing call trips it (MinRequests 1); the message is held until
	// the probe, which succeeds once the clock passes the cool-down.
	fail := true
	h := b.Middleware(func(*message.Message) ([]*message.Message, error) {
		if fail {
			fail = false
			return nil, errors.New("payment API answers 500")
		}
		return nil, nil
	})
	msg := message.NewMessage("m-1", nil)
	msg.SetContext(context.Background())
	done := make(chan error, 1)
	go func() { _, err := h(msg); done <- err }()
	require.Eventually(t, func() bool { return b.Stats().Waiting == 1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, testutil.CollectAndCompare(reg, strings.NewReader(`
# HELP arcmill_breaker_state Circuit breaker state: 0 closed, 1 open, 2 half-open.
# TYPE arcmill_breaker_state gauge
arcmill_breaker_state{handler="billing/charge"} 1
# HELP arcmill_breaker_held_total Failures an open circuit breaker held (no attempt counted, nothing dead-lettered).
# TYPE arcmill_breaker_held_total counter
arcmill_breaker_held_total{handler="billing/charge"} 1
# HELP arcmill_breaker_waiting Messages waiting at the circuit breaker's gate now.
# TYPE arcmill_breaker_waiting gauge
arcmill_breaker_waiting{handler="billing/charge"} 1
# HELP arcmill_breaker_returned_total Held messages an open circuit breaker handed back to retry and dead letters as poison events.
# TYPE arcmill_breaker_returned_total counter
arcmill_breaker_returned_total{handler="billing/charge"} 0
`), "arcmill_breaker_state", "arcmill_breaker_held_total", "arcmill_breaker_waiting", "arcmill_breaker_returned_total"))
	clock.Advance(middleware.DefaultBreakerCoolDown)
	require.NoError(t, <-done)
	require.NoError(t, testutil.CollectAndCompare(reg, strings.NewReader(`
# HELP arcmill_breaker_state Circuit breaker state: 0 closed, 1 open, 2 half-open.
# TYPE arcmill_breaker_state gauge
arcmill_breaker_state{handler="billing/charge"} 0
# HELP arcmill_breaker_transitions_total Circuit breaker transitions, by the state entered (open, half_open, closed).
# TYPE arcmill_breaker_transitions_total counter
arcmill_breaker_transitions_total{handler="billing/charge",to="closed"} 1
arcmill_breaker_transitions_total{handler="billing/charge",to="half_open"} 1
arcmill_breaker_transitions_total{handler="billing/charge",to="open"} 1
`), "arcmill_breaker_state", "arcmill_breaker_transitions_total"))
}
