package natsjs

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/leaktest"
)

// handled is what a test handler saw of one message.
type handled struct {
	id, delivered string
}

// A handler that waits far longer than the ack wait (a downstream outage:
// middleware.Retry waiting on transport errors, an open breaker) holds one
// message; the messages the server pushed behind it wait in the
// subscriber. They are told to the server as in progress too, so none is
// redelivered, none spends a delivery, and none is dead-lettered by
// JetStream's MaxDeliver although it was never attempted.
func TestSubscriber_WaitingMessagesKeepTheirDeliveries(t *testing.T) {
	// Not parallel: leaktest counts every goroutine of the package.
	b := setup(t)
	subject := b.prefix + ".>"
	const ackWait, backOff, events = time.Second, time.Second, 10
	consumerAckWait := ackWait + backOff // JetStream's BackOff[0]: see ensureConsumer
	sub := b.subscriber(t, SubscriberConfig{AckWaitTimeout: ackWait, BackOff: []time.Duration{backOff},
		MaxDeliver: 2, MaxAckPending: events})
	msgs, err := sub.Subscribe(context.Background(), subject)
	require.NoError(t, err)
	var ids []string
	for range events {
		ids = append(ids, b.publish(t, "order.created"))
	}

	release := make(chan struct{})
	var mu sync.Mutex
	var seen []handled
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range msgs {
			mu.Lock()
			first := len(seen) == 0
			seen = append(seen, handled{m.UUID, m.Metadata.Get(MetadataDelivered)})
			mu.Unlock()
			if first {
				<-release // the outage
			}
			m.Ack()
		}
	}()
	// Every event is out on this member: one in the handler, nine waiting.
	require.Eventually(t, func() bool {
		info := b.consumer(t, "g", subject)
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 1 && info.NumPending == 0 && info.NumAckPending == events
	}, waitTimeout, pollInterval)

	// The handler works for three of the consumer's ack waits: without the
	// progress reports each waiting message would be redelivered and then
	// given up on (MaxDeliver 2) by now.
	busy := time.After(3 * consumerAckWait)
	var redelivered int
watch:
	for {
		select {
		case <-busy:
			break watch
		case <-time.After(pollInterval):
			redelivered = max(redelivered, b.consumer(t, "g", subject).NumRedelivered)
		}
	}
	close(release)
	require.Eventually(t, func() bool {
		info := b.consumer(t, "g", subject)
		return info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == events
	}, waitTimeout, pollInterval, "every event acknowledged")

	assert.Zero(t, redelivered, "no message was redelivered while it waited")
	mu.Lock()
	want := make([]handled, len(ids))
	for i, id := range ids {
		want[i] = handled{id, "1"}
	}
	assert.Equal(t, want, seen, "each event handled once, in order, on its first delivery")
	mu.Unlock()
	dead, err := ReadDeadLetters(b.js, b.dlqStream, 0, 0)
	require.NoError(t, err)
	assert.Empty(t, dead, "%d events dead-lettered", len(dead))

	require.NoError(t, sub.Close())
	<-done
	leaktest.RequireNone(t, "github.com/arcmill/arcmill/adapters/natsjs", waitTimeout)
}

// Close stops the intake at once and nacks the messages waiting behind the
// one in the handler: another member of the group receives them while that
// handler still works (Close waits for it), not after the ack wait.
func TestSubscriber_CloseNacksWaitingMessages(t *testing.T) {
	// Not parallel: leaktest counts every goroutine of the package.
	b := setup(t)
	subject := b.prefix + ".>"
	const events = 5
	// The default ack wait (30 s, plus BackOff[0]) is well past waitTimeout:
	// a message that was not nacked could not reach the other member in
	// time. CloseTimeout is long so that the held message keeps Close
	// waiting until the test releases it.
	cfg := SubscriberConfig{MaxAckPending: events, CloseTimeout: time.Hour}
	first := b.subscriber(t, cfg)
	msgs, err := first.Subscribe(context.Background(), subject)
	require.NoError(t, err)
	var ids []string
	for range events {
		ids = append(ids, b.publish(t, "order.created"))
	}
	var held *message.Message
	select {
	case held = <-msgs:
	case <-time.After(waitTimeout):
		t.Fatal("not delivered")
	}
	assert.Equal(t, ids[0], held.UUID)
	t.Cleanup(func() { held.Ack() }) // on a failure, lets Close return
	require.Eventually(t, func() bool {
		info := b.consumer(t, "g", subject)
		return info.NumPending == 0 && info.NumAckPending == events
	}, waitTimeout, pollInterval, "every event out on the first member")

	other := b.subscriber(t, cfg)
	otherMsgs, err := other.Subscribe(context.Background(), subject)
	require.NoError(t, err)
	closed := make(chan error, 1)
	go func() { closed <- first.Close() }()

	var got []handled
	for range events - 1 {
		select {
		case m := <-otherMsgs:
			got = append(got, handled{m.UUID, m.Metadata.Get(MetadataDelivered)})
			m.Ack()
		case <-time.After(waitTimeout):
			t.Fatalf("a waiting message was not nacked on Close: the other member got %d of %d", len(got), events-1)
		}
	}
	want := make([]handled, 0, events-1)
	for _, id := range ids[1:] {
		want = append(want, handled{id, "2"}) // the nak counts a delivery
	}
	assert.ElementsMatch(t, want, got)
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a handler held its message", err)
	default:
	}

	held.Ack()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(waitTimeout):
		t.Fatal("Close did not return once the handler settled")
	}
	_, open := <-msgs
	assert.False(t, open, "the channel is closed after Close")
	require.Eventually(t, func() bool {
		info := b.consumer(t, "g", subject)
		return info.NumAckPending == 0 && info.AckFloor.Stream == events
	}, waitTimeout, pollInterval, "every event acknowledged once")
	require.NoError(t, other.Close())
	leaktest.RequireNone(t, "github.com/arcmill/arcmill/adapters/natsjs", waitTimeout)
}
