package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/wildcard"
)

// A handler whose own Redis goes down for a while, over real Redis
// Streams: nothing is dead-lettered, no attempt is spent on the outage,
// and every event is handled once the dependency is back. A failure that
// is the event's own is still dead-lettered after its attempts.
func TestDownstreamRedisOutageBurnsNoAttempts(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	down := testenv.RestartableRedis(t)
	store := redis.NewClient(&redis.Options{Addr: down.Addr(), MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = store.Close() })

	// The publisher and the subscriber close their clients; admin is the
	// test's own.
	clients := make([]*redis.Client, 2)
	for i := range clients {
		clients[i] = redis.NewClient(&redis.Options{Addr: addr})
	}
	admin := redis.NewClient(&redis.Options{Addr: addr})
	stream := "arcmill-test:" + uuid.NewString()
	dlqStream := stream + ":dlq"
	t.Cleanup(func() {
		assert.NoError(t, admin.Del(context.Background(), stream, dlqStream).Err())
		assert.NoError(t, admin.Close())
	})
	logger := watermill.NopLogger{}
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: clients[0]}, logger)
	require.NoError(t, err)
	defer pub.Close()
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: clients[1], ConsumerGroup: "billing",
		BlockTime: 100 * time.Millisecond}, logger)
	require.NoError(t, err)

	const maxRetries = 2
	stack, err := NewStack(StackConfig{
		Retry: RetryConfig{MaxRetries: maxRetries, Backoff: time.Millisecond,
			OutageBackoff: 5 * time.Millisecond, OutageMaxBackoff: 50 * time.Millisecond},
		DeadLetter: DeadLetterConfig{Publisher: pub, Topic: dlqStream, ConsumerGroup: "billing"},
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, logger)
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
	require.NoError(t, err)
	var declined counter
	_, err = events.Handle(wildcard.HandlerConfig{Name: "charge", Subscriber: sub, Topic: stream,
		Patterns: []string{"billing.*"}, Middleware: stack.Middleware},
		func(ctx context.Context, ev arc.Event) error {
			if ev.Type == "billing.declined" {
				declined.inc()
				return errors.New("card declined") // the event's own fault
			}
			// The go-redis error of a server that is down, returned as it is.
			return store.SAdd(ctx, "charged", ev.Meta.ID).Err()
		})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = events.Run(ctx) }()
	<-events.Running()
	defer router.Close()

	publish := func(typ string) string {
		t.Helper()
		ev, err := arc.NewEvent(typ, map[string]int{"amount": 99}, arc.Meta{})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		require.NoError(t, pub.Publish(stream, msg))
		return ev.Meta.ID
	}

	down.Stop()
	const n = 20
	for range n {
		publish("billing.charge")
	}
	// Down for a while: far more failed calls than the attempts an event
	// has (maxRetries+1), none of them counted.
	require.Eventually(t, func() bool { return stack.Retry.OutageWaits() >= 5*(maxRetries+1) },
		30*time.Second, pollInterval, "the handler meets the outage")
	assert.Zero(t, stack.Retry.Retried(), "no attempt spent on the outage")
	down.Start()

	require.Eventually(t, func() bool {
		got, err := store.SCard(context.Background(), "charged").Result()
		return err == nil && got == n
	}, 30*time.Second, pollInterval, "every event handled after the recovery")
	assert.Zero(t, stack.Retry.Retried())
	assert.Zero(t, stack.DeadLetter.Stats().DeadLettered)

	// The event's own failure, after the recovery: dead-lettered after its
	// attempts, and the only dead letter there is.
	id := publish("billing.declined")
	require.Eventually(t, func() bool { return stack.DeadLetter.Stats().DeadLettered == 1 },
		30*time.Second, pollInterval, "the declined charge is dead-lettered")
	entries, err := admin.XRange(context.Background(), dlqStream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 1, "the outage dead-lettered nothing")
	var dl DeadLetteredEvent
	require.NoError(t, json.Unmarshal([]byte(entries[0].Values["payload"].(string)), &dl))
	assert.Equal(t, id, dl.Event.Meta.ID)
	assert.Equal(t, maxRetries+1, dl.Attempts)
	assert.Equal(t, maxRetries+1, declined.get())
	assert.Equal(t, ReasonRetryExhausted, dl.Reason)
}

// The errors real servers give when they are down or cannot take writes
// are transport errors: a stopped Redis (connection refused), a closed
// client, a replica's READONLY reply, a closed NATS connection and a NATS
// server that is not there. A real Redis reply about the command itself
// is not.
func TestRealServersOutageErrorsAreTransportErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	primary := testenv.RestartableRedis(t)
	replica := testenv.RestartableRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port()))
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rc.Close() })
	readonly := rc.Set(ctx, "k", "v", 0).Err()
	require.Error(t, readonly)
	assert.True(t, IsTransportError(readonly), "%v", readonly)
	readonlyList := rc.LPush(ctx, "k", "v").Err() // READONLY too: a replica takes no write at all
	assert.True(t, IsTransportError(readonlyList), "%v", readonlyList)

	pc := redis.NewClient(&redis.Options{Addr: primary.Addr(), MaxRetries: -1})
	require.NoError(t, pc.Set(ctx, "k", "v", 0).Err())
	notTransport := pc.LPush(ctx, "k", "v").Err() // WRONGTYPE: the command's fault
	require.Error(t, notTransport)
	assert.False(t, IsTransportError(notTransport), "%v", notTransport)
	primary.Stop()
	refused := pc.Get(ctx, "k").Err()
	require.Error(t, refused)
	assert.True(t, IsTransportError(refused), "%v", refused)
	require.NoError(t, pc.Close())
	closed := pc.Get(ctx, "k").Err()
	assert.True(t, IsTransportError(closed), "%v", closed)

	nc, err := nats.Connect(testenv.NatsURL(t))
	require.NoError(t, err)
	nc.Close()
	natsClosed := nc.Publish("arcmill.test", []byte("x"))
	assert.True(t, IsTransportError(natsClosed), "%v", natsClosed)
	_, err = nats.Connect("nats://"+primary.Addr(), nats.MaxReconnects(0), nats.Timeout(time.Second))
	require.Error(t, err)
	assert.True(t, IsTransportError(err), "%v", err)
}
