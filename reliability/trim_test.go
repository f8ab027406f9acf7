package reliability

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// TestSlowGroupUnderTrimming shows what the safe trimming option prevents.
// A stream carries 2,000 events while one consumer group keeps up and
// another is stopped (a service being deployed, say). With Arc's trimming
// (MAXLEN ~, here 200 for 10,000) the stopped group comes back to find
// most of its events gone, silently. With SafeTrimEvery, trimming never
// passes the slowest group: it reads every event, and the stream is
// trimmed once both groups are done.
func TestSlowGroupUnderTrimming(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer client.Close()
	const events, maxLen = 2000, 200
	rows := []string{"| trimming | events published | fast group read | slow group read afterwards | lost for the slow group | stream length at the end |",
		"|---|---|---|---|---|---|"}
	for _, mode := range []string{"MAXLEN ~ 200 (Arc)", "SafeTrimEvery 100 (arcmill)"} {
		ctx := context.Background()
		stream := "arcmill-trim-test:" + uuid.NewString()
		defer client.Del(ctx, stream)
		require.NoError(t, client.XGroupCreateMkStream(ctx, stream, "fast", "0").Err())
		require.NoError(t, client.XGroupCreateMkStream(ctx, stream, "slow", "0").Err())
		cfg := redisstream.PublisherConfig{Client: client}
		if mode[0] == 'M' {
			cfg.MaxLens = map[string]int64{stream: maxLen}
		} else {
			cfg.SafeTrimEvery = 100
		}
		pub, err := redisstream.NewPublisher(cfg)
		require.NoError(t, err)
		fast := 0
		for i := 0; i < events; i++ {
			ev, err := arc.NewEvent("order.created", map[string]int{"n": i}, arc.Meta{})
			require.NoError(t, err)
			msg, err := arc.ToMessage(ev)
			require.NoError(t, err)
			require.NoError(t, pub.Publish(stream, msg))
			if i%50 == 49 { // the fast group keeps up, 50 at a time
				fast += readAll(t, client, stream, "fast")
			}
		}
		fast += readAll(t, client, stream, "fast")
		slow := readAll(t, client, stream, "slow") // the stopped group comes back
		if mode[0] == 'S' {
			_, err := redisstream.SafeTrim(ctx, client, stream)
			require.NoError(t, err)
		}
		length := client.XLen(ctx, stream).Val()
		rows = append(rows, fmt.Sprintf("| %s | %d | %d | %d | %d | %d |", mode, events, fast, slow, events-slow, length))
		assert.Equal(t, events, fast, mode)
		if mode[0] == 'M' {
			assert.Less(t, slow, events/2, "approximate trimming drops most of a stopped group's events")
		} else {
			assert.Equal(t, events, slow, "safe trimming keeps every event a group still needs")
			assert.Less(t, length, int64(events), "and trims once every group is done")
		}
	}
	t.Logf("results:\n%s\n%s\n%s", rows[0], rows[1], rows[2]+"\n"+rows[3])
}

// readAll reads and acknowledges everything the group has not read yet.
func readAll(t *testing.T, client *redis.Client, stream, group string) int {
	n := 0
	for {
		res, err := client.XReadGroup(context.Background(), &redis.XReadGroupArgs{Group: group, Consumer: "c",
			Streams: []string{stream, ">"}, Count: 500, Block: -1}).Result()
		if errors.Is(err, redis.Nil) {
			return n
		}
		require.NoError(t, err)
		if len(res) == 0 || len(res[0].Messages) == 0 {
			return n
		}
		for _, m := range res[0].Messages {
			client.XAck(context.Background(), stream, group, m.ID)
			n++
		}
	}
}
