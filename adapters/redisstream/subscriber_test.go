package redisstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/leaktest"
	"github.com/arcmill/arcmill/middleware"
)

func TestSubscriberConfig_Defaults(t *testing.T) {
	t.Parallel()
	cfg := SubscriberConfig{Client: redis.NewClient(&redis.Options{}), ConsumerGroup: "g"}
	require.NoError(t, cfg.Validate())
	cfg.setDefaults()
	assert.Equal(t, DefaultBatchSize, cfg.BatchSize)
	assert.Equal(t, DefaultBlockTime, cfg.BlockTime)
	assert.Equal(t, DefaultClaimIdle, cfg.ClaimIdle)
	assert.Equal(t, DefaultClaimInterval, cfg.ClaimInterval)
	assert.Equal(t, DefaultMaxInFlight, cfg.MaxInFlight)
	assert.Equal(t, DefaultMaxDeliveries, cfg.MaxDeliveries)
	assert.Equal(t, DefaultAckFlushInterval, cfg.AckFlushInterval)
	assert.Equal(t, DefaultCloseTimeout, cfg.CloseTimeout)
	assert.Equal(t, DefaultOldestID, cfg.OldestID)
	assert.Equal(t, DefaultMaxEntryBytes, cfg.MaxEntryBytes)
	assert.Equal(t, DefaultMaxBatchBytes, cfg.MaxBatchBytes)
	assert.NotEmpty(t, cfg.Consumer)

	short := SubscriberConfig{Client: cfg.Client, ConsumerGroup: "g", ClaimIdle: time.Second}
	require.NoError(t, short.Validate(), "a short ClaimIdle alone is valid")
	short.setDefaults()
	assert.Equal(t, time.Second, short.ClaimInterval, "claims look as often as ClaimIdle needs")
}

func TestSubscriberConfig_ValidateNamesEachField(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{})
	ok := SubscriberConfig{Client: client, ConsumerGroup: "g"}
	for name, tc := range map[string]struct {
		change func(*SubscriberConfig)
		field  string
	}{
		"no client":                 {func(c *SubscriberConfig) { c.Client = nil }, "Client"},
		"no group":                  {func(c *SubscriberConfig) { c.ConsumerGroup = "" }, "ConsumerGroup"},
		"negative batch":            {func(c *SubscriberConfig) { c.BatchSize = -1 }, "BatchSize"},
		"negative in flight":        {func(c *SubscriberConfig) { c.MaxInFlight = -5 }, "MaxInFlight"},
		"deliveries below None":     {func(c *SubscriberConfig) { c.MaxDeliveries = -2 }, "MaxDeliveries"},
		"close timeout below None":  {func(c *SubscriberConfig) { c.CloseTimeout = -2 }, "CloseTimeout"},
		"negative nack sleep":       {func(c *SubscriberConfig) { c.NackResendSleep = -time.Second }, "NackResendSleep"},
		"claim idle too short":      {func(c *SubscriberConfig) { c.ClaimIdle = time.Millisecond }, "ClaimIdle"},
		"claim interval over idle":  {func(c *SubscriberConfig) { c.ClaimInterval = time.Minute }, "ClaimInterval"},
		"ack flush over idle / 3":   {func(c *SubscriberConfig) { c.AckFlushInterval = 15 * time.Second }, "AckFlushInterval"},
		"oldest id not an entry id": {func(c *SubscriberConfig) { c.OldestID = "latest" }, "OldestID"},
		"batch bytes below None":    {func(c *SubscriberConfig) { c.MaxBatchBytes = -2 }, "MaxBatchBytes"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := ok
			tc.change(&cfg)
			err := cfg.Validate()
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), "SubscriberConfig."+tc.field)
			_, err = NewSubscriber(cfg)
			require.ErrorIs(t, err, ErrInvalidConfig)
		})
	}
	none := ok
	none.ClaimInterval, none.MaxDeliveries, none.AckFlushInterval, none.CloseTimeout = None, None, None, None
	none.MaxEntryBytes, none.MaxBatchBytes = None, None
	require.NoError(t, none.Validate(), "None turns these off")
}

// Close stops reading at once, but a handler keeps a live context to
// finish its message within CloseTimeout, and its ack is written.
func TestSubscriber_CloseLetsHandlersFinish(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish("order.placed", 1)
	sub, msgs := b.subscribe(SubscriberConfig{CloseTimeout: testWait})
	m := <-msgs
	closed := make(chan error, 1)
	go func() { closed <- sub.Close() }()
	<-sub.closing
	require.NoError(t, m.Context().Err(), "the handler's context stays live while Close waits")
	m.Ack()
	require.NoError(t, <-closed)
	assert.Zero(t, b.pending("g"), "its ack was written on the way out")
}

// After CloseTimeout the handler's context is cancelled with ErrClosed as
// the cause, the entry stays pending, and Close says how many were left.
func TestSubscriber_CloseTimeoutCancelsWithErrClosed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish("order.placed", 1)
	sub, msgs := b.subscribe(SubscriberConfig{CloseTimeout: 100 * time.Millisecond})
	m := <-msgs
	closed := make(chan error, 1)
	go func() { closed <- sub.Close() }()
	select {
	case <-m.Context().Done():
	case <-time.After(testWait):
		t.Fatal("the handler's context was not cancelled after CloseTimeout")
	}
	require.ErrorIs(t, context.Cause(m.Context()), ErrClosed)
	require.True(t, middleware.IsShutdown(m.Context()), "middleware sees a shutdown, not a failure")
	err := <-closed
	require.ErrorIs(t, err, ErrCloseTimeout)
	assert.Contains(t, err.Error(), "1 message(s)")
	assert.Equal(t, int64(1), b.pending("g"), "an unsettled entry stays pending for the group")
}

// Subscribe and Close from many goroutines at once: no error but
// ErrClosed, no deadlock, and no goroutine left behind.
func TestSubscriber_ConcurrentSubscribeAndClose(t *testing.T) {
	b := setup(t)
	b.publish("order.placed", 5)
	var wg sync.WaitGroup
	for g := 0; g < 10; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				sub, err := NewSubscriber(SubscriberConfig{Client: b.client, ConsumerGroup: "g", BlockTime: testBlockTime,
					CloseTimeout: None})
				if !assert.NoError(t, err) {
					return
				}
				var done sync.WaitGroup
				done.Add(1)
				go func() {
					defer done.Done()
					msgs, err := sub.Subscribe(context.Background(), b.stream)
					if errors.Is(err, ErrClosed) {
						return
					}
					if !assert.NoError(t, err) {
						return
					}
					<-sub.Running()
					for m := range msgs {
						m.Ack()
					}
				}()
				if i%2 == 0 {
					<-sub.Running()
				}
				err = sub.Close()
				if !errors.Is(err, ErrCloseTimeout) {
					assert.NoError(t, err)
				}
				done.Wait()
			}
		}()
	}
	wg.Wait()
	leaktest.RequireNone(t, "github.com/arcmill/arcmill/adapters/redisstream", testWait)
}

// A restart under a stable consumer name delivers its own pending entries
// once, then goes on with new ones.
func TestSubscriber_OwnPendingDeliveredOnceAfterRestart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish("order.placed", 3)
	b.readAs("g", "me", 3)
	sub, msgs := b.subscribe(SubscriberConfig{Consumer: "me"})
	var seen counter
	for i := 0; i < 3; i++ {
		m := <-msgs
		seen.add(m.Metadata.Get(MetadataEntryID))
		m.Ack()
	}
	sub.signals.Flushed.WaitUntil(testWait, func(int) bool { return b.pending("g") == 0 })
	sub.signals.Claimed.WaitOrTimeout() // the loop is past its own pending entries
	require.NoError(t, sub.Close())
	for m := range msgs {
		seen.add(m.Metadata.Get(MetadataEntryID))
	}
	assert.Empty(t, seen.twice(), "own pending entries delivered more than once")
	assert.Equal(t, 3, seen.len())
}

// The stream is deleted while the consumer blocks on it: the group is
// created again and new entries are delivered.
func TestSubscriber_RecoversWhenTheStreamIsDeleted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish("order.placed", 1)
	sub, msgs := b.subscribe(SubscriberConfig{})
	(<-msgs).Ack()
	sub.signals.Flushed.WaitOrTimeout()
	require.NoError(t, b.client.Del(context.Background(), b.stream).Err())
	b.publish("order.after", 1)
	select {
	case m := <-msgs:
		ev, err := arc.FromMessage(m)
		require.NoError(t, err)
		assert.Equal(t, "order.after", ev.Type)
		m.Ack()
	case <-time.After(testWait):
		t.Fatal("no delivery after the stream was deleted")
	}
}

// Closing with messages buffered in the channel (MaxInFlight > 1) nacks
// them: nothing is XACKed that no handler acked.
func TestSubscriber_CloseNeverAcksUnhandledMessages(t *testing.T) {
	t.Parallel()
	for round := 0; round < 5; round++ {
		b := setup(t)
		b.publish("order.placed", 20)
		sub, msgs := b.subscribe(SubscriberConfig{Consumer: "me", MaxInFlight: 8, Consumers: 2,
			CloseTimeout: testWait})
		var acked sync.Map
		var wg sync.WaitGroup
		for i := 0; i < 3; i++ {
			m := <-msgs
			acked.Store(m.Metadata.Get(MetadataEntryID), true)
			wg.Add(1)
			go func() { defer wg.Done(); m.Ack() }()
		}
		require.Eventually(t, func() bool { return len(msgs) > 0 }, testWait, time.Millisecond, "messages buffered")
		var late atomic.Int32
		go func() {
			for m := range msgs { // a late receiver: acks whatever it still gets
				acked.Store(m.Metadata.Get(MetadataEntryID), true)
				late.Add(1)
				m.Ack()
			}
		}()
		require.NoError(t, sub.Close())
		wg.Wait()
		pend, err := b.client.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: b.stream, Group: "g",
			Start: "-", End: "+", Count: 100}).Result()
		require.NoError(t, err)
		pending := map[string]bool{}
		for _, p := range pend {
			pending[p.ID] = true
		}
		entries, err := b.client.XRange(context.Background(), b.stream, "-", "+").Result()
		require.NoError(t, err)
		for _, e := range entries {
			_, a := acked.Load(e.ID)
			require.True(t, a || pending[e.ID], "round %d: entry %s XACKed without being acked", round, e.ID)
		}
	}
}

// The subscriber's messages carry the entry id; a malformed entry is
// flagged, never ends the subscription.
func TestSubscriber_MalformedEntryIsFlaggedNotFatal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.client.Do(context.Background(), "XADD", b.stream, "*", "type", "x", "data", "not json").Err())
	ids := b.publish("order.placed", 1)
	_, msgs := b.subscribe(SubscriberConfig{})
	bad := <-msgs
	assert.NotEmpty(t, bad.Metadata.Get(arc.MetadataMalformed))
	bad.Ack()
	good := <-msgs
	assert.Equal(t, ids[0], good.Metadata.Get(MetadataEntryID))
	assert.Empty(t, good.Metadata.Get(arc.MetadataMalformed))
	good.Ack()
}

var _ message.Subscriber = (*Subscriber)(nil)

// A handler cut short by a shutdown is no failure: the middleware stack
// retries nothing and dead-letters nothing, and the entry stays pending for
// the group's next consumer.
func TestSubscriber_ShutdownBurnsNoAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish("order.placed", 1)
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry:      middleware.RetryConfig{MaxRetries: 5, Backoff: middleware.NoBackoff},
		DeadLetter: middleware.DeadLetterConfig{Publisher: &DeadLetterPublisher{Client: b.client}, Topic: b.dlq},
	})
	require.NoError(t, err)
	calls := 0
	started := make(chan struct{})
	handler := message.HandlerFunc(func(m *message.Message) ([]*message.Message, error) {
		calls++
		close(started)
		<-m.Context().Done() // waits on its dependency until cancelled
		return nil, fmt.Errorf("dependency: %w", context.Cause(m.Context()))
	})
	for i := len(stack.Middleware) - 1; i >= 0; i-- {
		handler = stack.Middleware[i](handler)
	}
	sub, msgs := b.subscribe(SubscriberConfig{CloseTimeout: 50 * time.Millisecond})
	m := <-msgs
	result := make(chan error, 1)
	go func() { _, err := handler(m); result <- err }()
	<-started
	require.ErrorIs(t, sub.Close(), ErrCloseTimeout)
	require.ErrorIs(t, <-result, middleware.ErrShutdown)
	assert.Equal(t, 1, calls, "no retry of a shutdown")
	assert.Zero(t, b.xlen(b.dlq), "no dead letter")
	assert.Equal(t, int64(1), b.pending("g"), "pending for the next consumer")
}

// An own pending entry deleted from the stream before a restart under the
// same name comes back without fields: it is delivered flagged malformed
// (for the router to dead-letter), never dropped unseen, and the entry
// beside it is delivered as usual.
func TestSubscriber_DeletedOwnPendingEntryIsFlaggedNotLost(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.publish("order.placed", 2)
	b.readAs("g", "me", 2)
	require.NoError(t, b.client.XDel(context.Background(), b.stream, ids[0]).Err())
	_, msgs := b.subscribe(SubscriberConfig{Consumer: "me", BatchSize: 2})
	got := map[string]string{}
	for i := 0; i < 2; i++ {
		select {
		case m := <-msgs:
			got[m.Metadata.Get(MetadataEntryID)] = m.Metadata.Get(arc.MetadataMalformed)
			m.Ack()
		case <-time.After(testWait):
			t.Fatalf("only %d of 2 own pending entries delivered", i)
		}
	}
	assert.NotEmpty(t, got[ids[0]], "the deleted entry is flagged malformed")
	assert.Empty(t, got[ids[1]], "the other is an event")
	require.Eventually(t, func() bool { return b.pending("g") == 0 }, testWait, 5*time.Millisecond)
}
