package wildcard_test

import (
	"context"
	"fmt"
	"slices"
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

// An external test package: adapters/redisstream imports middleware, which
// imports wildcard.

const (
	streamsWait  = 10 * time.Second
	streamsPoll  = 10 * time.Millisecond
	streamsBlock = 50 * time.Millisecond
)

// On a real Arc stream (entries written as Arc's RedisStreamTransport
// writes them: XADD with the fields type and data), a router with
// ColonStarLiteral routes "order:*" as Arc 2.11–2.14's Streams consumers
// do: only the literal type "order:*" reaches the handler, and
// "order:placed" is acknowledged unmatched, so it is settled alike
// whichever member of a mixed group reads it. Without the option,
// "order:*" is a prefix, as Arc's Pub/Sub and Arc ≥ 2.12's shared
// matcher read it.
func TestColonStarLiteralOnRealArcStream(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	for _, literal := range []bool{true, false} {
		t.Run(fmt.Sprint("ColonStarLiteral=", literal), func(t *testing.T) {
			t.Parallel()
			client := redis.NewClient(&redis.Options{Addr: addr})
			stream := "arcmill-test:colonstar:" + uuid.NewString()
			t.Cleanup(func() {
				assert.NoError(t, client.Del(context.Background(), stream).Err())
				assert.NoError(t, client.Close())
			})
			sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client,
				ConsumerGroup: "billing", BlockTime: streamsBlock})
			require.NoError(t, err)
			mr, err := message.NewRouter(message.RouterConfig{CloseTimeout: streamsWait}, watermill.NopLogger{})
			require.NoError(t, err)
			wr, err := wildcard.NewRouter(mr, wildcard.Config{ColonStarLiteral: literal})
			require.NoError(t, err)
			var mu sync.Mutex
			var got []string
			_, err = wr.Subscribe(sub, stream, "order:*", func(_ context.Context, ev arc.Event) error {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, ev.Type)
				return nil
			})
			require.NoError(t, err)
			go func() { assert.NoError(t, wr.Run(context.Background())) }()
			t.Cleanup(func() { assert.NoError(t, wr.Close()) })
			select {
			case <-wr.Running():
			case <-time.After(streamsWait):
				t.Fatal("router not running")
			}

			for i, typ := range []string{"order:placed", "order:*"} {
				data := fmt.Sprintf(`{"type":%q,"payload":{"n":%d},"meta":{"id":"e-%d","timestamp":"2026-04-28T10:00:00.000Z"}}`,
					typ, i, i)
				require.NoError(t, client.XAdd(context.Background(), &redis.XAddArgs{Stream: stream,
					Values: []any{"type", typ, "data", data}}).Err())
			}
			require.Eventually(t, func() bool {
				s := wr.Stats()
				return s.Handled+s.Unmatched == 2
			}, streamsWait, streamsPoll, "both entries read")
			// Both are settled: nothing stays pending in the group.
			require.Eventually(t, func() bool {
				p, err := client.XPending(context.Background(), stream, "billing").Result()
				return err == nil && p.Count == 0
			}, streamsWait, streamsPoll, "both entries acknowledged")
			mu.Lock()
			defer mu.Unlock()
			slices.Sort(got)
			if literal {
				assert.Equal(t, []string{"order:*"}, got)
				assert.Equal(t, uint64(1), wr.Stats().Unmatched)
			} else {
				assert.Equal(t, []string{"order:*", "order:placed"}, got)
				assert.Zero(t, wr.Stats().Unmatched)
			}
		})
	}
}
