package middleware_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// deepRedis is a router on real Redis whose dead letters go to arcmill's
// DeadLetterPublisher (which reads each envelope back with encoding/json).
type deepRedis struct {
	client *redis.Client
	stream string
	dlq    string
	calls  atomic.Int32
}

func newDeepRedis(t *testing.T, sub message.Subscriber, client *redis.Client, limits arc.Limits) *deepRedis {
	t.Helper()
	stream := "arcmill-test:" + uuid.NewString()
	d := &deepRedis{client: client, stream: stream, dlq: stream + ":dlq"}
	t.Cleanup(func() { assert.NoError(t, client.Del(context.Background(), d.stream, d.dlq).Err()) })
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry:      middleware.RetryConfig{MaxRetries: 2, Backoff: time.Millisecond},
		DeadLetter: middleware.DeadLetterConfig{Publisher: &redisstream.DeadLetterPublisher{Client: client}, Topic: d.dlq},
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{Limits: limits, OnMalformed: stack.DeadLetter.Malformed})
	require.NoError(t, err)
	_, err = events.Handle(wildcard.HandlerConfig{Name: "fails", Subscriber: sub, Topic: stream,
		Patterns: []string{"*"}, Middleware: stack.Middleware},
		func(context.Context, arc.Event) error { d.calls.Add(1); return errors.New("no") })
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = events.Run(ctx) }()
	t.Cleanup(func() { cancel(); assert.NoError(t, router.Close()) })
	select {
	case <-events.Running():
	case <-time.After(10 * time.Second):
		t.Fatal("router did not start")
	}
	return d
}

// waitDeadLetters waits until the dead-letter stream holds n entries and
// returns their types, in order.
func (d *deepRedis) waitDeadLetters(t *testing.T, n int64) []redisstream.DeadLetterEntry {
	t.Helper()
	require.Eventually(t, func() bool { return d.client.XLen(context.Background(), d.dlq).Val() >= n },
		10*time.Second, 10*time.Millisecond)
	entries, err := d.client.XRange(context.Background(), d.dlq, "-", "+").Result()
	require.NoError(t, err)
	out := make([]redisstream.DeadLetterEntry, 0, len(entries))
	for _, e := range entries {
		dl, err := redisstream.ReadDeadLetter(e)
		require.NoError(t, err)
		out = append(out, dl)
	}
	return out
}

func nestedJSON(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

// Arc publishes an event nested 9,999 levels deep on its stream: over the
// default read limit, it is dead-lettered once as malformed with its bytes,
// never reaches the handler, and the lane moves on to the next event.
func TestDeepArcEntryDeadLetteredOnceOnRedis(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { assert.NoError(t, client.Close()) })
	// One at a time: the next event waits for the deep one to be settled,
	// which is what shows that the deep one does not wedge the lane.
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client, ConsumerGroup: "g",
		BlockTime: 100 * time.Millisecond, MaxInFlight: 1})
	require.NoError(t, err)
	d := newDeepRedis(t, sub, client, arc.Limits{})
	ctx := context.Background()
	deep := `{"type":"deep","payload":` + nestedJSON(9999) + `,"meta":{"id":"deep-1"}}`
	require.NoError(t, client.XAdd(ctx, &redis.XAddArgs{Stream: d.stream,
		Values: []string{"type", "deep", "data", deep}}).Err())
	next := `{"type":"next","payload":null,"meta":{"id":"next-1"}}`
	require.NoError(t, client.XAdd(ctx, &redis.XAddArgs{Stream: d.stream,
		Values: []string{"type", "next", "data", next}}).Err())

	dls := d.waitDeadLetters(t, 2)
	require.Len(t, dls, 2, "one dead letter each")
	assert.Equal(t, middleware.ReasonMalformed, dls[0].Envelope.Reason)
	assert.Contains(t, dls[0].Envelope.Error.Message, "nested too deeply")
	assert.Equal(t, "next", dls[1].Envelope.Event.Type)
	assert.Equal(t, int32(3), d.calls.Load(), "only the next event's three attempts")
}

// With no read limit, a 9,999-deep event whose handler fails cannot be put
// in an envelope encoding/json reads back; the fallback envelope is stored
// instead: one dead letter, the handler's three attempts and no more (the
// hot loop of 1,163 calls in 5 s is gone).
func TestDeepEventWithoutLimitDeadLetteredOnceOnRedis(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { assert.NoError(t, client.Close()) })
	logger := watermill.NopLogger{}
	// Watermill's subscriber closes its client when it closes: its own.
	sub, err := wredis.NewSubscriber(wredis.SubscriberConfig{Client: redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)}),
		ConsumerGroup: "g", BlockTime: 100 * time.Millisecond}, logger)
	require.NoError(t, err)
	pub, err := wredis.NewPublisher(wredis.PublisherConfig{Client: client}, logger)
	require.NoError(t, err)
	d := newDeepRedis(t, sub, client, arc.Limits{MaxDepth: arc.NoLimit})

	deep := nestedJSON(9999)
	msg, err := arc.ToMessage(arc.Event{Type: "deep", Payload: json.RawMessage(deep), Meta: arc.Meta{ID: "deep-1"}})
	require.NoError(t, err)
	require.NoError(t, pub.Publish(d.stream, msg))
	next, err := arc.ToMessage(arc.Event{Type: "next", Payload: json.RawMessage("null"), Meta: arc.Meta{ID: "next-1"}})
	require.NoError(t, err)
	require.NoError(t, pub.Publish(d.stream, next))

	dls := d.waitDeadLetters(t, 2)
	require.Len(t, dls, 2, "one dead letter each")
	env := dls[0].Envelope
	assert.Equal(t, middleware.ReasonRetryExhausted, env.Reason)
	assert.Equal(t, "deep-1", env.Event.Meta.ID)
	assert.Contains(t, env.EncodeError, "nested too deeply")
	require.NotNil(t, env.Raw)
	assert.Equal(t, deep, env.Raw.Payload)
	assert.Equal(t, "next", dls[1].Envelope.Event.Type)
	assert.Equal(t, int32(6), d.calls.Load(), "three attempts each, no loop")
}
