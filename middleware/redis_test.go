package middleware

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/wildcard"
)

// The whole stack over real Redis Streams: retries, then a dead letter in a
// dead-letter stream with every field; a child event stamped on the way.
func TestStackOverRedisStreams(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	clients := make([]*redis.Client, 3)
	for i := range clients {
		clients[i] = redis.NewClient(&redis.Options{Addr: addr})
	}
	stream := "arcmill-test:" + uuid.NewString()
	dlqStream, childStream := stream+":dlq", stream+":children"
	t.Cleanup(func() {
		assert.NoError(t, clients[0].Del(context.Background(), stream, dlqStream, childStream).Err())
		assert.NoError(t, clients[0].Close())
	})
	logger := watermill.NopLogger{}
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: clients[0]}, logger)
	require.NoError(t, err)
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: clients[1], ConsumerGroup: "billing",
		BlockTime: 100 * time.Millisecond}, logger)
	require.NoError(t, err)
	reader, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: clients[2], ConsumerGroup: "ops",
		BlockTime: 100 * time.Millisecond}, logger)
	require.NoError(t, err)
	defer reader.Close()

	stack, err := NewStack(StackConfig{
		Retry:      RetryConfig{MaxRetries: 2, Backoff: time.Millisecond},
		DeadLetter: DeadLetterConfig{Publisher: pub, Topic: dlqStream, ConsumerGroup: "billing"},
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, logger)
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
	require.NoError(t, err)
	var calls counter
	_, err = events.Handle(wildcard.HandlerConfig{Name: "charge", Subscriber: sub, Topic: stream,
		Patterns: []string{"billing.*"}, Middleware: stack.Middleware},
		func(ctx context.Context, ev arc.Event) error {
			if calls.inc() == 1 {
				// A child published through a held publisher before failing.
				m, err := Child(ctx, "billing.attempted", nil, arc.Meta{})
				if err != nil {
					return err
				}
				if err := CausationPublisher(pub).Publish(childStream, m); err != nil {
					return err
				}
			}
			return codedError{"Stripe API timeout", "ETIMEDOUT"}
		})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = events.Run(ctx) }()
	<-router.Running()
	defer router.Close()

	ev, err := arc.NewEvent("billing.charge", map[string]int{"amount": 99}, arc.Meta{CorrelationID: "req-9"})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(stream, msg))

	dlq, err := reader.Subscribe(ctx, dlqStream)
	require.NoError(t, err)
	select {
	case m := <-dlq:
		m.Ack()
		var dl DeadLetteredEvent
		require.NoError(t, json.Unmarshal(m.Payload, &dl))
		assert.True(t, ev.Equal(dl.Event))
		assert.Equal(t, ErrorInfo{Message: "Stripe API timeout", Code: "ETIMEDOUT"}, dl.Error)
		assert.Equal(t, 3, dl.Attempts)
		assert.Equal(t, ReasonRetryExhausted, dl.Reason)
		assert.Equal(t, "charge", dl.HandlerName)
		assert.Equal(t, "billing.*", dl.Pattern)
		assert.Equal(t, stream, dl.SourceTopic)
		assert.Equal(t, "billing", dl.ConsumerGroup)
		assert.NotEmpty(t, dl.Host)
		assert.False(t, dl.LastFailedAt.Before(dl.FirstFailedAt))
		assert.Equal(t, "req-9", m.Metadata.Get(arc.MetadataCorrelationID))
		assert.Equal(t, ev.Meta.ID, m.Metadata.Get(arc.MetadataCausationID))
		assert.Equal(t, "3", m.Metadata.Get(MetadataDLQAttempts))
	case <-time.After(10 * time.Second):
		t.Fatal("no dead letter on Redis")
	}

	children, err := reader.Subscribe(ctx, childStream)
	require.NoError(t, err)
	select {
	case m := <-children:
		m.Ack()
		child, err := arc.FromMessage(m)
		require.NoError(t, err)
		assert.Equal(t, ev.Meta.ID, child.Meta.CausationID)
		assert.Equal(t, "req-9", child.Meta.CorrelationID)
	case <-time.After(10 * time.Second):
		t.Fatal("no child on Redis")
	}
	assert.Equal(t, 3, calls.get())
}
