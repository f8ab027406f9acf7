package wildcard_test

import (
	"context"
	"errors"
	"sync"
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
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/wildcard"
)

// Over real Redis Streams, an entry no handler matches goes to OnUnrouted;
// while OnUnrouted fails, the entry stays pending and is delivered to it
// again; once it succeeds, the entry is acknowledged (nothing pending),
// and the routed entry beside it was handled, not given to OnUnrouted.
func TestOnUnroutedOverRedisStreams(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	stream := "arcmill-test:unrouted:" + uuid.NewString()
	t.Cleanup(func() {
		assert.NoError(t, client.Del(context.Background(), stream).Err())
		assert.NoError(t, client.Close())
	})
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client, ConsumerGroup: "billing",
		BlockTime: streamsBlock, NackResendSleep: 10 * time.Millisecond})
	require.NoError(t, err)
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
	require.NoError(t, err)

	const failures = 2
	var mu sync.Mutex
	var unrouted []string // event ids, one per call
	onUnrouted := func(_ context.Context, _ *message.Message, ev arc.Event) error {
		mu.Lock()
		defer mu.Unlock()
		unrouted = append(unrouted, ev.Meta.ID)
		if len(unrouted) <= failures {
			return errors.New("parking topic unreachable")
		}
		return nil
	}
	calls := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), unrouted...)
	}
	mr, err := message.NewRouter(message.RouterConfig{CloseTimeout: streamsWait}, watermill.NopLogger{})
	require.NoError(t, err)
	wr, err := wildcard.NewRouter(mr, wildcard.Config{OnUnrouted: onUnrouted})
	require.NoError(t, err)
	_, err = wr.Subscribe(sub, stream, "order.*", func(context.Context, arc.Event) error { return nil })
	require.NoError(t, err)
	go func() { assert.NoError(t, wr.Run(context.Background())) }()
	t.Cleanup(func() { assert.NoError(t, wr.Close()) })
	select {
	case <-wr.Running():
	case <-time.After(streamsWait):
		t.Fatal("router not running")
	}

	var lost arc.Event
	for _, typ := range []string{"user.created", "order.created"} {
		ev, err := arc.NewEvent(typ, map[string]int{"n": 1}, arc.Meta{})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		require.NoError(t, pub.Publish(stream, msg))
		if typ == "user.created" {
			lost = ev
		}
	}
	require.Eventually(t, func() bool {
		p, err := client.XPending(context.Background(), stream, "billing").Result()
		return err == nil && p.Count == 0 && wr.Stats().Handled == 1 && len(calls()) == failures+1
	}, streamsWait, streamsPoll, "both entries settled; stats %+v", wr.Stats())
	for _, id := range calls() {
		assert.Equal(t, lost.Meta.ID, id, "only the unrouted event reaches OnUnrouted")
	}
	st := wr.Stats()
	assert.Equal(t, uint64(failures+1), st.Unmatched)
	assert.Equal(t, uint64(failures), st.UnroutedFailed)
}
