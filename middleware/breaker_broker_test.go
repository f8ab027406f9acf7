package middleware_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// errorCounter is a logger that counts Error lines.
type errorCounter struct {
	watermill.NopLogger
	n atomic.Int64
}

func (l *errorCounter) Error(string, error, watermill.LogFields) { l.n.Add(1) }

func (l *errorCounter) With(watermill.LogFields) watermill.LoggerAdapter { return l }

// The subscription's own broker going down is no failure of the handler:
// reads and acks fail inside the subscriber and never reach the breaker,
// which stays closed even though a single counted failure would trip it.
func TestBreakerIgnoresTheSubscriptionsBrokerOutage(t *testing.T) {
	t.Parallel()
	// The broker keeps its data across the restart (an outage, not a loss).
	broker := testenv.RestartableRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	newClient := func() *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: broker.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: newClient()})
	require.NoError(t, err)
	subLog := &errorCounter{}
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: newClient(), ConsumerGroup: "billing",
		OldestID: "0", BlockTime: 50 * time.Millisecond, Logger: subLog,
		ReadErrorBackoff: redisstream.ReadErrorBackoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond, Min: 5 * time.Millisecond}})
	require.NoError(t, err)
	breaker, err := middleware.NewBreaker(middleware.BreakerConfig{Name: "billing/charge", MinRequests: 1})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{})
	require.NoError(t, err)
	var mu sync.Mutex
	handled := map[string]bool{}
	_, err = events.Handle(wildcard.HandlerConfig{Name: "charge", Subscriber: breaker.Subscriber(sub), Topic: "billing",
		Patterns: []string{"billing.*"}, Middleware: []message.HandlerMiddleware{breaker.Middleware}},
		func(_ context.Context, ev arc.Event) error {
			mu.Lock()
			handled[ev.Meta.ID] = true
			mu.Unlock()
			return nil
		})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = events.Run(ctx)
	}()
	t.Cleanup(func() {
		assert.NoError(t, router.Close())
		cancel()
		<-done
	})
	<-events.Running()
	publish := func(n int) {
		for range n {
			ev, err := arc.NewEvent("billing.charge", map[string]int{"amount": 1}, arc.Meta{})
			require.NoError(t, err)
			msg, err := arc.ToMessage(ev)
			require.NoError(t, err)
			require.NoError(t, pub.Publish("billing", msg))
		}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(handled)
	}
	publish(5)
	require.Eventually(t, func() bool { return count() == 5 }, outageTimeout, 5*time.Millisecond)

	broker.Stop()
	require.Eventually(t, func() bool { return subLog.n.Load() >= 3 }, outageTimeout, 5*time.Millisecond,
		"the subscriber meets its broker's outage")
	broker.Start()
	publish(5)
	require.Eventually(t, func() bool { return count() == 10 }, outageTimeout, 5*time.Millisecond,
		"every event handled after the broker is back")
	st := breaker.Stats()
	assert.Equal(t, middleware.BreakerClosed, st.State)
	assert.Zero(t, st.Opened, "the broker's outage never tripped the handler's breaker")
	assert.Zero(t, st.Failures)
}
