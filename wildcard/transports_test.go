package wildcard

import (
	"context"
	stdsql "database/sql"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// transportScenario runs the router over a real Watermill Pub/Sub: pattern
// fan-out, a handler that fails once and is redelivered alone, and an
// unmatched type that is acked.
func transportScenario(t *testing.T, pub message.Publisher, sub message.Subscriber, topic string) {
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	wr, err := NewRouter(router, Config{})
	require.NoError(t, err)

	var mu sync.Mutex
	seen := map[string][]string{}
	record := func(name string) Handler {
		return func(_ context.Context, ev arc.Event) error {
			mu.Lock()
			defer mu.Unlock()
			seen[name] = append(seen[name], ev.Type)
			return nil
		}
	}
	count := func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen[name])
	}
	var flaky atomic.Int32
	for name, pattern := range map[string]string{"orders": "order.*", "all": "*"} {
		_, err := wr.Handle(HandlerConfig{Name: name, Subscriber: sub, Topic: topic, Patterns: []string{pattern}}, record(name))
		require.NoError(t, err)
	}
	_, err = wr.Handle(HandlerConfig{Name: "flaky", Subscriber: sub, Topic: topic, Patterns: []string{"order.created"}},
		func(context.Context, arc.Event) error {
			if flaky.Add(1) == 1 {
				return errors.New("first delivery fails")
			}
			return nil
		})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = wr.Run(ctx) }()
	<-wr.Running()

	var sent []arc.Event
	for _, typ := range []string{"order.created", "order.item.added", "user.created"} {
		ev, err := arc.NewEvent(typ, map[string]string{"k": "v"}, arc.Meta{CorrelationID: "c-1", UserID: "u-1"})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		require.NoError(t, pub.Publish(topic, msg))
		sent = append(sent, ev)
	}
	require.Eventually(t, func() bool { return wr.Stats().Handled == 3 }, 30*time.Second, 10*time.Millisecond,
		"stats: %+v", wr.Stats())
	require.NoError(t, router.Close())

	assert.Equal(t, 3, count("all"))
	assert.Equal(t, 2, count("orders"), "order.created ran once for orders although flaky failed once")
	assert.Equal(t, int32(2), flaky.Load())
	assert.Equal(t, uint64(1), wr.Stats().Failed)
	mu.Lock()
	assert.Equal(t, []string{"order.created", "order.item.added", "user.created"}, seen["all"])
	mu.Unlock()
}

func TestRouterOverRedisStreams(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	pubClient := redis.NewClient(&redis.Options{Addr: addr})
	subClient := redis.NewClient(&redis.Options{Addr: addr})
	topic := "arcmill-test:" + uuid.NewString()
	t.Cleanup(func() {
		assert.NoError(t, pubClient.Del(context.Background(), topic).Err())
		assert.NoError(t, pubClient.Close())
	})
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: pubClient}, watermill.NopLogger{})
	require.NoError(t, err)
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client: subClient, ConsumerGroup: "arcmill-test", NackResendSleep: 10 * time.Millisecond,
		BlockTime: 100 * time.Millisecond,
	}, watermill.NopLogger{})
	require.NoError(t, err)
	transportScenario(t, pub, sub, topic)
}

func TestRouterOverPostgreSQL(t *testing.T) {
	t.Parallel()
	db, err := stdsql.Open("pgx", testenv.PostgresDSN(t))
	require.NoError(t, err)
	topic := "arcmill_test_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	t.Cleanup(func() {
		_, err := db.Exec(`DROP TABLE IF EXISTS "watermill_` + topic + `"`)
		assert.NoError(t, err)
		_, err = db.Exec(`DROP TABLE IF EXISTS "watermill_offsets_` + topic + `"`)
		assert.NoError(t, err)
		assert.NoError(t, db.Close())
	})
	logger := watermill.NopLogger{}
	pub, err := wsql.NewPublisher(wsql.BeginnerFromStdSQL(db), wsql.PublisherConfig{
		SchemaAdapter: wsql.DefaultPostgreSQLSchema{}, AutoInitializeSchema: true,
	}, logger)
	require.NoError(t, err)
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromStdSQL(db), wsql.SubscriberConfig{
		ConsumerGroup: "arcmill-test", SchemaAdapter: wsql.DefaultPostgreSQLSchema{},
		OffsetsAdapter: wsql.DefaultPostgreSQLOffsetsAdapter{}, InitializeSchema: true,
		PollInterval: 20 * time.Millisecond, ResendInterval: 20 * time.Millisecond,
	}, logger)
	require.NoError(t, err)
	require.NoError(t, sub.SubscribeInitialize(topic))
	transportScenario(t, pub, sub, topic)
}
