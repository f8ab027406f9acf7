package redisstream

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// Timings the tests use: short enough to run fast, long enough for a
// loaded CI machine under -race.
const (
	testBlockTime     = 50 * time.Millisecond
	testClaimIdle     = 300 * time.Millisecond
	testClaimInterval = 50 * time.Millisecond
	testWait          = 10 * time.Second // the longest any condition may take
)

// bundle is one test's fixture: its own client and stream on the real
// Redis, removed at the end.
type bundle struct {
	t      *testing.T
	client *redis.Client
	stream string
	dlq    string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return setupAt(t, testenv.RedisAddr(t))
}

// setupAt is setup on the Redis at addr: a private server (testenv.PrivateRedis)
// for a test whose load would stall the shared one's other clients.
func setupAt(t *testing.T, addr string) *bundle {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr})
	b := &bundle{t: t, client: client, stream: "arcmill-test:" + uuid.NewString()}
	b.dlq = b.stream + ":dlq"
	t.Cleanup(func() {
		client.Del(context.Background(), b.stream, b.dlq)
		_ = client.Close()
	})
	return b
}

// publish appends n events of type typ and returns their entry ids.
func (b *bundle) publish(typ string, n int) []string {
	b.t.Helper()
	pub, err := NewPublisher(PublisherConfig{Client: b.client})
	require.NoError(b.t, err)
	ids := make([]string, 0, n)
	for i := 0; i < n; i++ {
		ev, err := arc.NewEvent(typ, map[string]int{"i": i}, arc.Meta{})
		require.NoError(b.t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(b.t, err)
		require.NoError(b.t, pub.Publish(b.stream, msg))
		last, err := b.client.XRevRangeN(context.Background(), b.stream, "+", "-", 1).Result()
		require.NoError(b.t, err)
		ids = append(ids, last[0].ID)
	}
	return ids
}

// subscriber starts a Subscriber with the tests' timings under cfg, its
// signals on, and closes it at the end.
func (b *bundle) subscriber(cfg SubscriberConfig) *Subscriber {
	b.t.Helper()
	cfg.Client = b.client
	if cfg.ConsumerGroup == "" {
		cfg.ConsumerGroup = "g"
	}
	if cfg.BlockTime == 0 {
		cfg.BlockTime = testBlockTime
	}
	sub, err := NewSubscriber(cfg)
	require.NoError(b.t, err)
	sub.signals.Init(b.t)
	b.t.Cleanup(func() { _ = sub.Close() })
	return sub
}

// subscribe is subscriber and Subscribe.
func (b *bundle) subscribe(cfg SubscriberConfig) (*Subscriber, <-chan *message.Message) {
	b.t.Helper()
	sub := b.subscriber(cfg)
	msgs, err := sub.Subscribe(context.Background(), b.stream)
	require.NoError(b.t, err)
	return sub, msgs
}

// pending is the group's pending count.
func (b *bundle) pending(group string) int64 {
	b.t.Helper()
	p, err := b.client.XPending(context.Background(), b.stream, group).Result()
	require.NoError(b.t, err)
	return p.Count
}

// xlen is a stream's length.
func (b *bundle) xlen(stream string) int64 {
	b.t.Helper()
	n, err := b.client.XLen(context.Background(), stream).Result()
	require.NoError(b.t, err)
	return n
}

// readAs has consumer read n entries of the group without acking them: a
// consumer that then dies.
func (b *bundle) readAs(group, consumer string, n int) {
	b.t.Helper()
	ctx := context.Background()
	err := b.client.XGroupCreate(ctx, b.stream, group, "0").Err()
	if err != nil && err.Error() != "BUSYGROUP Consumer Group name already exists" {
		require.NoError(b.t, err)
	}
	require.NoError(b.t, b.client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer,
		Streams: []string{b.stream, ">"}, Count: int64(n)}).Err())
}

// idleFor waits until every pending entry of the group has been idle for
// at least d, as Redis counts it.
func (b *bundle) idleFor(group string, d time.Duration) {
	b.t.Helper()
	require.Eventually(b.t, func() bool {
		all, err := b.client.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: b.stream, Group: group,
			Start: "-", End: "+", Count: 1000}).Result()
		require.NoError(b.t, err)
		idle, err := b.client.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: b.stream, Group: group,
			Idle: d, Start: "-", End: "+", Count: 1000}).Result()
		require.NoError(b.t, err)
		return len(all) == len(idle)
	}, testWait, 5*time.Millisecond)
}

// counter counts deliveries per key, safely across goroutines.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[key]++
	return c.n[key]
}

// twice returns the keys counted more than once.
func (c *counter) twice() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k, n := range c.n {
		if n > 1 {
			out = append(out, k)
		}
	}
	return out
}

func (c *counter) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.n)
}
