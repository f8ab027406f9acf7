package middleware_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/leaktest"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// outageTimeout bounds each wait of the outage test: generous, the machine
// is shared.
const outageTimeout = 60 * time.Second

// instance is one process of the billing service: a wildcard router over
// arcmill's Redis Streams subscriber, a Stack with a Breaker sharing its
// state through Redis, and the handler "charge" whose own Redis is store.
type instance struct {
	router  *message.Router
	breaker *middleware.Breaker
	stack   *middleware.Stack
	cancel  context.CancelFunc
	done    chan struct{}
}

// A handler whose dependency (its own Redis) goes down and comes back,
// over real Redis Streams, in two instances of one consumer group sharing
// one breaker through Redis:
//   - the breaker opens on every instance, and intake stops: while it is
//     open no call reaches the handler but the fleet's one probe per
//     cool-down;
//   - nothing is dead-lettered and no attempt is counted for the outage;
//   - every event is handled once the dependency is back;
//   - a healthy handler of another consumer group beside it keeps running.
func TestBreakerDownstreamOutageOverRedisStreams(t *testing.T) {
	addr := testenv.RedisAddr(t)
	store := testenv.RestartableRedis(t)
	storeClient := redis.NewClient(&redis.Options{Addr: store.Addr(), MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = storeClient.Close() })
	admin := redis.NewClient(&redis.Options{Addr: addr})
	stream := "arcmill-test:breaker:" + uuid.NewString()
	dlqStream := stream + ":dlq"
	name := "billing/charge-" + uuid.NewString()
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := admin.Keys(ctx, middleware.DefaultBreakerKeyPrefix+"{"+name+"}:*").Result()
		assert.NoError(t, admin.Del(ctx, append(keys, stream, dlqStream)...).Err())
		assert.NoError(t, admin.Close())
	})
	logger := watermill.NopLogger{}
	pubClient := redis.NewClient(&redis.Options{Addr: addr})
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: pubClient})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close(); _ = pubClient.Close() })

	var calls, inflight atomic.Int64
	var mu sync.Mutex
	charged := map[string]bool{}
	audited := map[string]bool{}
	tried := map[string]bool{} // events the handler was called for
	charge := func(ctx context.Context, ev arc.Event) error {
		calls.Add(1)
		inflight.Add(1)
		defer inflight.Add(-1)
		mu.Lock()
		tried[ev.Meta.ID] = true
		mu.Unlock()
		if err := storeClient.SAdd(ctx, "charged", ev.Meta.ID).Err(); err != nil {
			return err // connection refused: the dependency's outage, as go-redis returns it
		}
		mu.Lock()
		charged[ev.Meta.ID] = true
		mu.Unlock()
		return nil
	}
	audit := func(_ context.Context, ev arc.Event) error {
		mu.Lock()
		audited[ev.Meta.ID] = true
		mu.Unlock()
		return nil
	}

	var clients []*redis.Client
	t.Cleanup(func() {
		for _, c := range clients {
			_ = c.Close()
		}
	})
	newClient := func() *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: addr})
		clients = append(clients, c)
		return c
	}
	start := func(withAudit bool) *instance {
		t.Helper()
		breaker, err := middleware.NewBreaker(middleware.BreakerConfig{Name: name, Redis: newClient(),
			MinRequests: 5, Threshold: 0.5, CoolDown: time.Hour, SyncInterval: 20 * time.Millisecond})
		require.NoError(t, err)
		stack, err := middleware.NewStack(middleware.StackConfig{
			Retry: middleware.RetryConfig{MaxRetries: 2, Backoff: time.Millisecond,
				OutageBackoff: 5 * time.Millisecond, OutageMaxBackoff: 20 * time.Millisecond},
			DeadLetter: middleware.DeadLetterConfig{Publisher: pub, Topic: dlqStream, ConsumerGroup: "billing"},
			Breaker:    breaker,
		})
		require.NoError(t, err)
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, logger)
		require.NoError(t, err)
		events, err := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
		require.NoError(t, err)
		sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: newClient(), ConsumerGroup: "billing",
			OldestID: "0", BlockTime: 50 * time.Millisecond})
		require.NoError(t, err)
		_, err = events.Handle(wildcard.HandlerConfig{Name: "charge", Subscriber: breaker.Subscriber(sub), Topic: stream,
			Patterns: []string{"billing.*"}, Middleware: stack.Middleware}, charge)
		require.NoError(t, err)
		if withAudit {
			auditBreaker, err := middleware.NewBreaker(middleware.BreakerConfig{Name: "audit-" + uuid.NewString()})
			require.NoError(t, err)
			auditSub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: newClient(),
				ConsumerGroup: "audit", OldestID: "0", BlockTime: 50 * time.Millisecond})
			require.NoError(t, err)
			_, err = events.Handle(wildcard.HandlerConfig{Name: "audit", Subscriber: auditBreaker.Subscriber(auditSub),
				Topic: stream, Patterns: []string{"billing.*"}, Middleware: []message.HandlerMiddleware{auditBreaker.Middleware}},
				audit)
			require.NoError(t, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		in := &instance{router: router, breaker: breaker, stack: stack, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(in.done)
			_ = events.Run(ctx)
		}()
		select {
		case <-events.Running():
		case <-time.After(outageTimeout):
			t.Fatal("the router did not start")
		}
		return in
	}
	a, b := start(true), start(false)
	fleet := []*instance{a, b}
	stopAll := func() {
		for _, in := range fleet {
			if in.cancel != nil {
				require.NoError(t, in.router.Close())
				in.cancel()
				<-in.done
				in.cancel = nil
			}
		}
	}
	t.Cleanup(stopAll)

	publish := func(n int) []string {
		var ids []string
		for range n {
			ev, err := arc.NewEvent("billing.charge", map[string]int{"amount": 1}, arc.Meta{})
			require.NoError(t, err)
			msg, err := arc.ToMessage(ev)
			require.NoError(t, err)
			require.NoError(t, pub.Publish(stream, msg))
			ids = append(ids, ev.Meta.ID)
		}
		return ids
	}
	countOf := func(m map[string]bool) int {
		mu.Lock()
		defer mu.Unlock()
		return len(m)
	}

	// Healthy first.
	publish(10)
	require.Eventually(t, func() bool { return countOf(charged) == 10 }, outageTimeout, 5*time.Millisecond)

	store.Stop()
	const n = 100
	publish(n)
	require.Eventually(t, func() bool {
		return a.breaker.State() == middleware.BreakerOpen && b.breaker.State() == middleware.BreakerOpen
	}, outageTimeout, 5*time.Millisecond, "the fleet trips together")
	// Intake has stopped: once the calls running at the trip are over, no
	// call reaches the handler.
	require.Eventually(t, func() bool { return inflight.Load() == 0 }, outageTimeout, 5*time.Millisecond)
	before := calls.Load()
	// Counted in events, not calls: Retry calls a failing event several
	// times before the trip, and a loaded machine lets more retries in.
	assert.Less(t, countOf(tried), 10+n, "the breaker stopped the calls before every event was tried")

	// The healthy handler beside it, in its own consumer group, goes on.
	require.Eventually(t, func() bool { return countOf(audited) == 10+n }, outageTimeout, 5*time.Millisecond,
		"the audit handler keeps running")

	// A cool-down ends with the store still down: the fleet's one probe runs
	// and fails, and the breaker is open again.
	require.NoError(t, admin.Del(context.Background(), middleware.DefaultBreakerKeyPrefix+"{"+name+"}:open").Err())
	require.Eventually(t, func() bool {
		return a.breaker.Stats().ProbeFailures+b.breaker.Stats().ProbeFailures == 1
	}, outageTimeout, 5*time.Millisecond, "one probe fails")
	require.Eventually(t, func() bool { return inflight.Load() == 0 }, outageTimeout, 5*time.Millisecond)
	assert.Equal(t, before+1, calls.Load(), "exactly one call, the probe, while the breaker was not closed")
	assert.Equal(t, uint64(1), a.breaker.Stats().Probes+b.breaker.Stats().Probes)

	// The store is back; the next cool-down's probe succeeds and closes the
	// fleet; every event is handled.
	store.Start()
	// Each look ends the cool-down again, standing in for time passing: a
	// probe may still meet a connection the outage left broken.
	require.Eventually(t, func() bool {
		_ = admin.Del(context.Background(), middleware.DefaultBreakerKeyPrefix+"{"+name+"}:open").Err()
		return countOf(charged) == 10+n
	}, outageTimeout, 20*time.Millisecond, "every event handled after the recovery")
	require.Eventually(t, func() bool {
		return a.breaker.State() == middleware.BreakerClosed && b.breaker.State() == middleware.BreakerClosed
	}, outageTimeout, 5*time.Millisecond)
	for _, in := range fleet {
		assert.Zero(t, in.stack.Retry.Retried(), "no attempt counted for the outage")
		assert.Zero(t, in.stack.DeadLetter.Stats().DeadLettered)
	}
	dead, err := admin.XLen(context.Background(), dlqStream).Result()
	require.NoError(t, err)
	assert.Zero(t, dead, "zero dead letters caused by the outage")

	stopAll()
	leaktest.RequireNone(t, "github.com/arcmill/arcmill/middleware", outageTimeout)
}
