package middleware_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/natsjs"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/fakeclock"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// The same kill switch over JetStream (arcmill's natsjs push consumer): a
// failing dependency trips it, the message in hand is held rather than
// nacked (no redelivery, no delivery of MaxDeliver spent, no dead letter on
// either side), and after the probe every event is handled.
func TestBreakerOverJetStream(t *testing.T) {
	url := testenv.NatsURL(t)
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := nc.JetStream()
	require.NoError(t, err)
	id := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	prefix, stream := "arcmillbrk"+id, "ARCMILL_BRK_"+id
	dlqPrefix, dlqStream := prefix+"dlq", stream+"_DLQ"
	require.NoError(t, natsjs.EnsureStream(js, stream, prefix))
	require.NoError(t, natsjs.EnsureStream(js, dlqStream, dlqPrefix))
	t.Cleanup(func() {
		assert.NoError(t, js.DeleteStream(stream))
		assert.NoError(t, js.DeleteStream(dlqStream))
	})
	pubConn, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(pubConn.Close)
	pub, err := natsjs.NewPublisher(natsjs.PublisherConfig{Conn: pubConn, Prefix: prefix})
	require.NoError(t, err)
	subConn, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(subConn.Close)
	sub, err := natsjs.NewSubscriber(natsjs.SubscriberConfig{Conn: subConn, Group: "billing",
		DeadLetterSubject: dlqPrefix + ".billing"})
	require.NoError(t, err)

	logger := watermill.NopLogger{}
	dlq := gochannel.NewGoChannel(gochannel.Config{}, logger)
	t.Cleanup(func() { _ = dlq.Close() })
	clock := fakeclock.New(time.Unix(1_800_000_000, 0))
	breaker, err := middleware.NewBreaker(middleware.BreakerConfig{Name: "billing/charge", MinRequests: 3, Threshold: 0.5,
		Now: clock.Now, SyncInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry:      middleware.RetryConfig{MaxRetries: 5, Backoff: time.Millisecond},
		DeadLetter: middleware.DeadLetterConfig{Publisher: dlq, Topic: "dlq"},
		Breaker:    breaker,
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, logger)
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{})
	require.NoError(t, err)
	var mu sync.Mutex
	down := true
	handled := map[string]string{} // event id -> the delivery count JetStream gave it
	subject, _ := natsjs.Subject(prefix, "billing.*")
	_, err = events.HandleFunc(wildcard.HandlerConfig{Name: "charge", Subscriber: breaker.Subscriber(sub), Topic: subject,
		Patterns: []string{"billing.*"}, Middleware: stack.Middleware}, func(msg *message.Message) ([]*message.Message, error) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return nil, errors.New("payment API answers 503")
		}
		handled[msg.UUID] = msg.Metadata.Get(natsjs.MetadataDelivered)
		return nil, nil
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

	const n = 20
	for range n {
		ev, err := arc.NewEvent("billing.charge", map[string]int{"amount": 1}, arc.Meta{})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		require.NoError(t, pub.Publish("", msg))
	}
	require.Eventually(t, func() bool {
		return breaker.State() == middleware.BreakerOpen && breaker.Stats().Waiting >= 1
	}, outageTimeout, 5*time.Millisecond, "the breaker opens and the message in hand waits")

	mu.Lock()
	down = false
	mu.Unlock()
	clock.Advance(middleware.DefaultBreakerCoolDown)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == n
	}, outageTimeout, 5*time.Millisecond, "every event handled after the probe")
	assert.Equal(t, middleware.BreakerClosed, breaker.State())
	assert.Zero(t, stack.DeadLetter.Stats().DeadLettered)
	mu.Lock()
	for id, delivered := range handled {
		assert.Equal(t, "1", delivered, "event %s was never redelivered", id)
	}
	mu.Unlock()
	info, err := js.StreamInfo(dlqStream)
	require.NoError(t, err)
	assert.Zero(t, info.State.Msgs, "JetStream gave up on nothing")
}
