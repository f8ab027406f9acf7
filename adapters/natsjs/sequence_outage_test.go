package natsjs

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
)

// TestSequenceStoreOutageSpendsNoDelivery: an outage of the sequences'
// Redis must not spend JetStream deliveries (a nack is a NakWithDelay that
// counts against MaxDeliver): the Sequencer waits in place, so an outage
// longer than MaxDeliver nacks' worth never has the subscriber dead-letter
// an event that never ran (and whose park check never answered).
func TestSequenceStoreOutageSpendsNoDelivery(t *testing.T) {
	b := setup(t)
	subject := b.prefix + ".>"
	sub := b.subscriber(t, SubscriberConfig{BackOff: []time.Duration{100 * time.Millisecond}, MaxDeliver: 3})
	t.Cleanup(func() { assert.NoError(t, sub.Close()) })
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1}) // the sequences' Redis, down
	defer down.Close()
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry:      middleware.RetryConfig{MaxRetries: middleware.NoRetries},
		DeadLetter: middleware.DeadLetterConfig{Publisher: b.pub, Topic: b.dlqPrefix + ".g", ConsumerGroup: "g", NoGuard: true},
		Sequence:   &middleware.SequenceConfig{Client: down, Handler: "h", StoreBackoff: 10 * time.Millisecond},
	})
	require.NoError(t, err)
	defer stack.Close()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, nil)
	require.NoError(t, err)
	var ran atomic.Int32
	router.AddConsumerHandler("h", subject, sub, func(msg *message.Message) error {
		_, err := chain(stack.Middleware, func(*message.Message) ([]*message.Message, error) {
			ran.Add(1)
			return nil, nil
		})(msg)
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); <-router.Running(); _ = router.Close() }()
	go func() { _ = router.Run(ctx) }()
	<-router.Running()
	ev, err := arc.NewEvent("order.created", map[string]string{}, arc.Meta{PartitionKey: "order-1"})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	require.NoError(t, b.pub.Publish(b.prefix+".order.created", msg))
	// The outage lasts well past MaxDeliver store failures (before the fix,
	// each was a nack, and the third a dead letter).
	var dead []DeadLetter
	require.Eventually(t, func() bool {
		dead, err = ReadDeadLetters(b.js, b.dlqStream, 0, 0)
		require.NoError(t, err)
		return len(dead) > 0 || stack.Sequencer.Stats().StoreFailures >= 8
	}, 60*time.Second, 20*time.Millisecond)
	t.Logf("handler ran %d times; %d store failures; %d dead letter(s)", ran.Load(), stack.Sequencer.Stats().StoreFailures, len(dead))
	assert.Empty(t, dead, "a Redis outage dead-lettered the event")
	assert.Zero(t, ran.Load(), "the event ran past a park check that never answered")
}
