package main

import (
	"bytes"
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// The defaults touch none of Arc's names: the example dead-letters every
// order.refunded it reads, and must never read a real service's.
func TestRedisInteropDefaultsAreTheExamplesOwnNames(t *testing.T) {
	t.Parallel()
	assert.NotEqual(t, redisstream.ArcStream, defaultStream)
	assert.True(t, strings.HasPrefix(defaultStream, "arcmill-example:"))
	assert.True(t, strings.HasPrefix(defaultGroup, "arcmill-example-"))
	assert.True(t, strings.HasPrefix(defaultPrefix, "arcmill-example-"))
}

// Run twice in a row with the default names, on a Redis that keeps the
// first run's entries, group and dead letter, the example does the same
// thing each time.
func TestRedisInteropRunTwiceWithDefaultNamesDoesTheSameThing(t *testing.T) {
	addr := testenv.RedisAddr(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { assert.NoError(t, client.Close()) })
	for i := 1; i <= 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		dlqTip, err := lastID(ctx, client, defaultStream+":dlq")
		require.NoError(t, err)
		var out bytes.Buffer
		require.NoError(t, run(ctx, &out, addr, defaultStream, defaultGroup, defaultPrefix), "run %d: %s", i, out.String())
		s := out.String()
		assert.Contains(t, s, "Go handler on order.* got: order.created", "run %d", i)
		assert.Contains(t, s, "correlation=req-abc user=u-7", "run %d", i)
		assert.Contains(t, s, "Arc published on "+defaultPrefix+":order.created; Go got order.created", "run %d", i)
		assert.Contains(t, s, "to 1 subscriber(s)", "run %d", i)
		assert.Contains(t, s, "dead-lettered to "+defaultStream+":dlq", "run %d", i)

		// This run added one dead letter: its order.refunded.
		added, err := redisstream.RangeEntries(ctx, client, defaultStream+":dlq", "("+dlqTip, "+", 0)
		require.NoError(t, err)
		require.Len(t, added, 1, "run %d", i)
		dl, err := redisstream.ReadDeadLetterEntry(added[0])
		require.NoError(t, err)
		assert.Equal(t, "order.refunded", dl.Envelope.Event.Type)
		assert.Equal(t, defaultGroup, dl.Group)

		// What Go wrote is an entry an Arc consumer reads: type + data, Arc JSON.
		var data string
		for _, line := range strings.Split(s, "\n") {
			if strings.HasPrefix(line, "  type=order.shipped data=") {
				data = strings.TrimPrefix(line, "  type=order.shipped data=")
			}
		}
		require.NotEmpty(t, data, "run %d", i)
		var ev arc.Event
		require.NoError(t, arc.Unmarshal([]byte(data), &ev))
		assert.Equal(t, "go-billing", ev.Meta.Source)
		var generic map[string]any
		require.NoError(t, json.Unmarshal([]byte(data), &generic))
		assert.Equal(t, []string{"meta", "payload", "type"}, keys(generic))
		cancel()
	}
}

func keys(m map[string]any) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
