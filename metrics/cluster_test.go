package metrics

import (
	"context"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
)

// WatchStream on a Redis Cluster reads each stream's groups from the
// primary that serves it (XINFO GROUPS names the stream): streams on
// different primaries each report their own pending count and lag.
func TestWatchStreamOnARedisCluster(t *testing.T) {
	c := testenv.PrivateRedisCluster(t, 3, 1)
	client := c.Client()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	m, err := New(reg, Config{Namespace: "shop"})
	require.NoError(t, err)
	primaries := map[string]bool{}
	for i, tag := range []string{"orders", "billing", "shipping", "users", "stock"} {
		stream := "{" + tag + "}:events"
		primaries[c.PrimaryFor(stream)] = true
		require.NoError(t, client.XGroupCreateMkStream(ctx, stream, "g", "0").Err())
		for j := 0; j < 5; j++ {
			require.NoError(t, client.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"type", "x", "data", "{}"}}).Err())
		}
		require.NoError(t, client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c",
			Streams: []string{stream, ">"}, Count: int64(i + 1)}).Err())
		require.NoError(t, m.WatchStream(client, stream, "g"))
	}
	require.Greater(t, len(primaries), 1, "the streams live on several primaries")
	out := gathered(t, reg)
	for i, tag := range []string{"orders", "billing", "shipping", "users", "stock"} {
		stream := "{" + tag + "}:events"
		assert.Contains(t, out, `shop_consumer_pending{group="g",stream="`+stream+`"} `+itoa(i+1))
		assert.Contains(t, out, `shop_consumer_lag{group="g",stream="`+stream+`"} `+itoa(5-i-1))
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
