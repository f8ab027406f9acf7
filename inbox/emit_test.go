package inbox

import (
	"context"
	stdsql "database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/outbox"
	"github.com/arcmill/arcmill/wildcard"
)

// relayAll relays the fixture's outbox until nothing is pending or in
// flight.
func (f *fixture) relayAll(pub message.Publisher) {
	f.t.Helper()
	relay, err := f.ob.NewRelay(pub, outbox.RelayConfig{ConsumerID: "inbox-test"})
	require.NoError(f.t, err)
	ctx := context.Background()
	deadline := time.Now().Add(waitTimeout)
	for {
		_, err := relay.RelayBatch(ctx)
		require.NoError(f.t, err)
		st, err := f.ob.Status(ctx)
		require.NoError(f.t, err)
		if st.Pending+st.InFlight+st.Delayed == 0 {
			return
		}
		require.True(f.t, time.Now().Before(deadline), "the outbox drains: %+v", st)
	}
}

// streamEvents reads every Arc event of a Redis stream.
func streamEvents(t testing.TB, rdb *redis.Client, stream string) []arc.Event {
	t.Helper()
	entries, err := redisstream.RangeEntries(context.Background(), rdb, stream, "-", "+", 0)
	require.NoError(t, err)
	var out []arc.Event
	for _, e := range entries {
		data, _ := e.Map()["data"].(string)
		var ev arc.Event
		require.NoError(t, arc.Unmarshal([]byte(data), &ev), "entry %s", e.ID)
		out = append(out, ev)
	}
	return out
}

// The events a handler emits are published once per handled event, through
// the consumer outbox and its relay into Redis Streams, however often (and
// however concurrently) the event is redelivered; each is a child of the
// event it came from.
func TestEmittedPublishedOnce(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d outbox.Dialect) {
		f := newFixture(t, d, nil)
		rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
		t.Cleanup(func() { _ = rdb.Close() })
		f.topic = "arcmill:test:inbox:" + f.ib.Table()
		f.cfg.EmitTopic = f.topic
		ib, err := New(f.db, f.cfg)
		require.NoError(t, err)
		t.Cleanup(func() { rdb.Del(context.Background(), f.topic) })
		ctx := context.Background()

		h := ib.Handle("billing", func(ctx context.Context, tx *stdsql.Tx, ev arc.Event) error {
			if err := f.effect(ctx, tx, "billing", ev); err != nil {
				return err
			}
			_, err := Emit(ctx, "invoice.created", map[string]string{"for": ev.Meta.ID}, arc.Meta{})
			return err
		})
		const events, deliveries = 20, 3
		parents := map[string]arc.Event{}
		var wg sync.WaitGroup
		for i := 0; i < events; i++ {
			ev := newEvent(t, "order.created", arc.Meta{CorrelationID: "corr-" + string(rune('a'+i))})
			parents[ev.Meta.ID] = ev
			for j := 0; j < deliveries; j++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					assert.NoError(t, h(ctx, ev))
				}()
			}
		}
		wg.Wait()
		pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb})
		require.NoError(t, err)
		f.relayAll(pub)

		got := streamEvents(t, rdb, f.topic)
		byParent := map[string]int{}
		for _, ev := range got {
			byParent[ev.Meta.CausationID]++
			p, ok := parents[ev.Meta.CausationID]
			if assert.True(t, ok, "emitted event %s has a handled parent", ev.Meta.ID) {
				assert.Equal(t, "invoice.created", ev.Type)
				assert.Equal(t, p.Meta.CorrelationID, ev.Meta.CorrelationID, "correlation inherited")
			}
		}
		assert.Len(t, got, events, "one emitted event published per handled event")
		for id := range parents {
			assert.Equal(t, 1, byParent[id], "children of %s", id)
			assert.Equal(t, 1, f.applied(id), "effect of %s", id)
		}
	})
}

// The middleware form in middleware.NewStack's documented position (last:
// inside Retry, inside Causation), on the wildcard router: a failed attempt
// is retried in a fresh transaction; a redelivery is acked and skipped; the
// handler's returned messages go into the consumer outbox, stamped as
// children, and not to the router's publisher.
func TestMiddlewareInStack(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d outbox.Dialect) {
		f := newFixture(t, d, nil)
		logger := watermill.NopLogger{}
		pubSub := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, logger)
		t.Cleanup(func() { _ = pubSub.Close() })
		dlq := &capture{}
		stack, err := middleware.NewStack(middleware.StackConfig{
			Retry:      middleware.RetryConfig{MaxRetries: 2, Backoff: time.Millisecond, MaxBackoff: time.Millisecond},
			DeadLetter: middleware.DeadLetterConfig{Publisher: dlq, Topic: "dlq"},
		})
		require.NoError(t, err)
		router, err := message.NewRouter(message.RouterConfig{}, logger)
		require.NoError(t, err)
		events, err := wildcard.NewRouter(router, wildcard.Config{Workers: 1})
		require.NoError(t, err)

		var attempts, handled atomic.Int32
		done := make(chan string, 16)
		direct := &capture{}
		_, err = events.HandleFunc(wildcard.HandlerConfig{Name: "billing", Subscriber: pubSub, Topic: "arc:events",
			Patterns: []string{"order.*"}, Middleware: append(stack.Middleware, f.ib.Middleware("")),
			Publisher: direct, PublishTopic: "direct"},
			func(msg *message.Message) ([]*message.Message, error) {
				ctx := msg.Context()
				ev, ok := Parent(ctx)
				require.True(t, ok)
				if attempts.Add(1) == 1 {
					return nil, errors.New("first attempt fails")
				}
				tx, err := Tx(ctx)
				if err != nil {
					return nil, err
				}
				if err := f.effect(ctx, tx, "billing", ev); err != nil {
					return nil, err
				}
				child, err := middleware.Child(ctx, "invoice.created", map[string]int{"n": 1}, arc.Meta{})
				if err != nil {
					return nil, err
				}
				handled.Add(1)
				done <- ev.Meta.ID
				return []*message.Message{child}, nil
			})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		runErr := make(chan error, 1)
		go func() { runErr <- events.Run(ctx) }()
		select {
		case <-events.Running():
		case <-time.After(waitTimeout):
			t.Fatal("the router runs")
		}

		ev := newEvent(t, "order.created", arc.Meta{})
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		require.NoError(t, pubSub.Publish("arc:events", msg))
		select {
		case id := <-done:
			assert.Equal(t, ev.Meta.ID, id)
		case <-time.After(waitTimeout):
			t.Fatal("the event is handled")
		}
		// The redelivery, then a marker event: the router handles one
		// subscription's messages in order, so once the marker is handled
		// the redelivery has been through the inbox.
		redelivery, err := arc.ToMessage(ev)
		require.NoError(t, err)
		marker := newEvent(t, "order.marker", arc.Meta{})
		markerMsg, err := arc.ToMessage(marker)
		require.NoError(t, err)
		require.NoError(t, pubSub.Publish("arc:events", redelivery, markerMsg))
		select {
		case id := <-done:
			assert.Equal(t, marker.Meta.ID, id, "the redelivery was skipped, the marker handled")
		case <-time.After(waitTimeout):
			t.Fatal("the marker is handled")
		}
		// The handler has returned; wait for its commit before closing the
		// router (which cancels the message's context).
		deadline := time.Now().Add(waitTimeout)
		for seen, _ := f.ib.Seen(ctx, "billing", marker); !seen; seen, _ = f.ib.Seen(ctx, "billing", marker) {
			require.True(t, time.Now().Before(deadline), "the marker's transaction commits")
			time.Sleep(time.Millisecond)
		}
		require.NoError(t, events.Close())
		require.NoError(t, <-runErr)

		assert.EqualValues(t, 2, handled.Load(), "the event and the marker, once each")
		assert.Equal(t, 1, f.applied(ev.Meta.ID))
		assert.Zero(t, direct.len(), "returned messages go to the outbox, not the router's publisher")
		assert.Zero(t, dlq.len(), "nothing dead-lettered")
		seen, err := f.ib.Seen(context.Background(), "billing", ev)
		require.NoError(t, err)
		assert.True(t, seen, "the consumer is named after the wildcard handler")

		rec := &capture{}
		f.relayAll(rec)
		require.Equal(t, 2, rec.len(), "one child per handled event")
		child, err := arc.FromMessage(rec.msgs[0])
		require.NoError(t, err)
		assert.Equal(t, ev.Meta.ID, child.Meta.CausationID)
		assert.Equal(t, ev.Meta.ID, child.Meta.CorrelationID, "a root's id is its children's correlation id")
	})
}

// capture is a publisher that keeps what it gets.
type capture struct {
	mu   sync.Mutex
	msgs []*message.Message
}

func (c *capture) Publish(_ string, msgs ...*message.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, msgs...)
	return nil
}

func (c *capture) Close() error { return nil }

func (c *capture) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// A message that is not an Arc event is keyed by its UUID; a middleware
// without a consumer name and outside any router is refused.
func TestMiddlewarePlainMessage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, outbox.SQLite, nil)
	runs := 0
	h := f.ib.Middleware("plain")(func(msg *message.Message) ([]*message.Message, error) {
		runs++
		_, err := Tx(msg.Context())
		return nil, err
	})
	msg := message.NewMessage("m-1", []byte("not an arc event"))
	for i := 0; i < 2; i++ {
		out, err := h(msg)
		require.NoError(t, err)
		assert.Empty(t, out)
	}
	assert.Equal(t, 1, runs)
	_, err := f.ib.Middleware("")(func(*message.Message) ([]*message.Message, error) { return nil, nil })(msg)
	assert.ErrorIs(t, err, ErrInvalidKey)
}
