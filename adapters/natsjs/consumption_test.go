package natsjs

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/leaktest"
	"github.com/arcmill/arcmill/middleware"
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
	redelivered := b.mostRedelivered(t, subject, 3*consumerAckWait)
	close(release)
	b.requireAllAcked(t, subject, events)

	assert.Zero(t, redelivered, "no message was redelivered while it waited")
	mu.Lock()
	assert.Equal(t, deliveries(ids, "1"), seen, "each event handled once, in order, on its first delivery")
	mu.Unlock()
	b.requireNoDeadLetters(t)

	require.NoError(t, sub.Close())
	<-done
	leaktest.RequireNone(t, "github.com/arcmill/arcmill/adapters/natsjs", waitTimeout)
}

// The outage of the brief, through the real recovery stack: the handler's
// dependency fails with transport errors for three ack waits, during which
// middleware.Retry holds the first event and retries it without counting
// attempts. The events waiting behind it spend no delivery: once the
// dependency is back, each is handled once, in order, on its first
// delivery, and nothing is dead-lettered, by the stack or by JetStream.
func TestSubscriber_OutageInRetryCostsTheWaitingNoDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	subject := b.prefix + ".>"
	const ackWait, backOff, events = time.Second, time.Second, 10
	sub := b.subscriber(t, SubscriberConfig{AckWaitTimeout: ackWait, BackOff: []time.Duration{backOff},
		MaxDeliver: 2, MaxAckPending: events})
	t.Cleanup(func() { assert.NoError(t, sub.Close()) })
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry: middleware.RetryConfig{MaxRetries: middleware.NoRetries, OutageBackoff: 50 * time.Millisecond,
			OutageMaxBackoff: 200 * time.Millisecond},
		DeadLetter: middleware.DeadLetterConfig{Publisher: b.pub, Topic: b.dlqPrefix + ".g", ConsumerGroup: "g"},
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: waitTimeout}, nil)
	require.NoError(t, err)
	back := make(chan struct{}) // closed when the dependency is back
	var mu sync.Mutex
	var seen []handled
	outages := 0
	router.AddConsumerHandler("outage", subject, sub, func(msg *message.Message) error {
		_, err := chain(stack.Middleware, func(m *message.Message) ([]*message.Message, error) {
			select {
			case <-back:
			default:
				mu.Lock()
				outages++
				mu.Unlock()
				return nil, fmt.Errorf("dependency down: %w", middleware.ErrTransient)
			}
			mu.Lock()
			seen = append(seen, handled{m.UUID, m.Metadata.Get(MetadataDelivered)})
			mu.Unlock()
			return nil, nil
		})(msg)
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		<-router.Running() // Run has started, so Close waits for it
		assert.NoError(t, router.Close())
	})
	go func() { _ = router.Run(ctx) }()
	<-router.Running()
	var ids []string
	for range events {
		ids = append(ids, b.publish(t, "order.created"))
	}
	require.Eventually(t, func() bool {
		info := b.consumer(t, "g", subject)
		mu.Lock()
		defer mu.Unlock()
		return outages > 0 && info.NumPending == 0 && info.NumAckPending == events
	}, waitTimeout, pollInterval, "the outage has begun with every event out on the member")

	redelivered := b.mostRedelivered(t, subject, 3*(ackWait+backOff))
	close(back)
	b.requireAllAcked(t, subject, events)

	assert.Zero(t, redelivered, "no message was redelivered during the outage")
	mu.Lock()
	assert.Equal(t, deliveries(ids, "1"), seen, "each event handled once, in order, on its first delivery")
	mu.Unlock()
	b.requireNoDeadLetters(t)
	assert.Zero(t, stack.DeadLetter.Stats().PublishFailures)
}

// Close stops the intake at once and nacks the messages waiting behind the
// one in the handler: another member of the group receives them while that
// handler still works (Close waits for it), not after the ack wait.
func TestSubscriber_CloseNacksWaitingMessages(t *testing.T) {
	// Not parallel: leaktest counts every goroutine of the package.
	testStopNacksWaitingMessages(t, true)
}

// The end of the subscription's context stops it as Close does: the
// waiting messages go to another member at once, and the channel closes
// once the handler settles its message.
func TestSubscriber_ContextEndNacksWaitingMessages(t *testing.T) {
	// Not parallel: leaktest counts every goroutine of the package.
	testStopNacksWaitingMessages(t, false)
}

// testStopNacksWaitingMessages stops a member holding one message in its
// handler and four waiting, by Close or by ending the subscription's
// context.
func testStopNacksWaitingMessages(t *testing.T, byClose bool) {
	b := setup(t)
	subject := b.prefix + ".>"
	const events = 5
	// The default ack wait (30 s, plus BackOff[0]) is well past waitTimeout:
	// a message that was not nacked could not reach the other member in
	// time. CloseTimeout is long so that the held message keeps Close
	// waiting until the test releases it.
	cfg := SubscriberConfig{MaxAckPending: events, CloseTimeout: time.Hour}
	first := b.subscriber(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, err := first.Subscribe(ctx, subject)
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
	stopped := make(chan error, 1) // Close's error, or the end of msgs
	if byClose {
		go func() { stopped <- first.Close() }()
	} else {
		cancel()
		go func() {
			if m, open := <-msgs; open {
				stopped <- fmt.Errorf("message %s handed out after the stop", m.UUID)
				return
			}
			stopped <- nil
		}()
	}

	var got []handled
	for range events - 1 {
		select {
		case m := <-otherMsgs:
			got = append(got, handled{m.UUID, m.Metadata.Get(MetadataDelivered)})
			m.Ack()
		case <-time.After(waitTimeout):
			t.Fatalf("a waiting message was not nacked on the stop: the other member got %d of %d", len(got), events-1)
		}
	}
	want := make([]handled, 0, events-1)
	for _, id := range ids[1:] {
		want = append(want, handled{id, "2"}) // the nak counts a delivery
	}
	assert.ElementsMatch(t, want, got)
	select {
	case err := <-stopped:
		t.Fatalf("stopped (%v) while a handler held its message", err)
	default:
	}

	held.Ack()
	select {
	case err := <-stopped:
		require.NoError(t, err)
	case <-time.After(waitTimeout):
		t.Fatal("the stop did not end once the handler settled")
	}
	_, open := <-msgs
	assert.False(t, open, "the channel is closed after the stop")
	require.Eventually(t, func() bool {
		info := b.consumer(t, "g", subject)
		return info.NumAckPending == 0 && info.AckFloor.Stream == events
	}, waitTimeout, pollInterval, "every event acknowledged once")
	if !byClose {
		require.NoError(t, first.Close())
	}
	require.NoError(t, other.Close())
	leaktest.RequireNone(t, "github.com/arcmill/arcmill/adapters/natsjs", waitTimeout)
}

// Messages nobody reads (a router not yet running, a handler busy on
// another subscription's channel) are held too: the one waiting to be
// handed out and those behind it are reported in progress, and on Close
// they are nacked in order, so another member receives them at once, on
// their second delivery (the nak's), with none spent meanwhile.
func TestSubscriber_UnreadMessagesKeepTheirDeliveries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	subject := b.prefix + ".>"
	const ackWait, backOff, events = time.Second, time.Second, 5
	cfg := SubscriberConfig{AckWaitTimeout: ackWait, BackOff: []time.Duration{backOff}, MaxDeliver: 3,
		MaxAckPending: events}
	unread := b.subscriber(t, cfg)
	_, err := unread.Subscribe(context.Background(), subject) // never read
	require.NoError(t, err)
	var ids []string
	for range events {
		ids = append(ids, b.publish(t, "order.created"))
	}
	require.Eventually(t, func() bool {
		info := b.consumer(t, "g", subject)
		return info.NumPending == 0 && info.NumAckPending == events
	}, waitTimeout, pollInterval, "every event out on the member")
	redelivered := b.mostRedelivered(t, subject, 3*(ackWait+backOff))
	assert.Zero(t, redelivered, "no message was redelivered while unread")

	other := b.subscriber(t, cfg)
	t.Cleanup(func() { assert.NoError(t, other.Close()) })
	msgs, err := other.Subscribe(context.Background(), subject)
	require.NoError(t, err)
	require.NoError(t, unread.Close())
	var got []handled
	for range events {
		select {
		case m := <-msgs:
			got = append(got, handled{m.UUID, m.Metadata.Get(MetadataDelivered)})
			m.Ack()
		case <-time.After(waitTimeout):
			t.Fatalf("an unread message was not nacked on Close: the other member got %d of %d", len(got), events)
		}
	}
	assert.Equal(t, deliveries(ids, "2"), got, "nacked in order, one delivery spent: the nak's")
}

// mostRedelivered watches the group's consumer on subject for d and
// returns the most messages it counted redelivered meanwhile.
func (b *bundle) mostRedelivered(t *testing.T, subject string, d time.Duration) int {
	t.Helper()
	end := time.After(d)
	most := 0
	for {
		select {
		case <-end:
			return most
		case <-time.After(pollInterval):
			most = max(most, b.consumer(t, "g", subject).NumRedelivered)
		}
	}
}

// requireAllAcked waits until the group has acknowledged all n events.
func (b *bundle) requireAllAcked(t *testing.T, subject string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		info := b.consumer(t, "g", subject)
		return info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == uint64(n)
	}, waitTimeout, pollInterval, "every event acknowledged")
}

// requireNoDeadLetters checks the dead-letter stream is empty.
func (b *bundle) requireNoDeadLetters(t *testing.T) {
	t.Helper()
	dead, err := ReadDeadLetters(b.js, b.dlqStream, 0, 0)
	require.NoError(t, err)
	assert.Empty(t, dead, "%d events dead-lettered", len(dead))
}

// deliveries is each id with the delivery count it is expected to arrive on.
func deliveries(ids []string, delivered string) []handled {
	out := make([]handled, len(ids))
	for i, id := range ids {
		out[i] = handled{id, delivered}
	}
	return out
}
