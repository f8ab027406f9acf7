package redisstream

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
)

// A slow group under approximate MAXLEN loses entries it never read; under
// SafeTrim it loses none, and what every group is done with is trimmed.
func TestSafeTrimKeepsWhatGroupsNeed(t *testing.T) {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer client.Close()
	fillN := func(stream string, n int) {
		for i := 0; i < n; i++ {
			require.NoError(t, client.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"type", "t", "data", "{}"}}).Err())
		}
	}
	stream := "arcmill-test:" + uuid.NewString()
	t.Cleanup(func() { client.Del(ctx, stream) })
	fillN(stream, 1000)
	require.NoError(t, client.XGroupCreate(ctx, stream, "fast", "0").Err())
	require.NoError(t, client.XGroupCreate(ctx, stream, "slow", "0").Err())
	// fast reads and acks 900; slow reads 300 and acks the first 100.
	read := func(group string, n int64) []string {
		res := client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "c", Streams: []string{stream, ">"}, Count: n}).Val()
		var ids []string
		for _, m := range res[0].Messages {
			ids = append(ids, m.ID)
		}
		return ids
	}
	fastIDs := read("fast", 900)
	require.NoError(t, client.XAck(ctx, stream, "fast", fastIDs...).Err())
	slowIDs := read("slow", 300)
	require.NoError(t, client.XAck(ctx, stream, "slow", slowIDs[:100]...).Err())

	trimmed, err := SafeTrim(ctx, client, stream)
	require.NoError(t, err)
	assert.LessOrEqual(t, trimmed, int64(100), "nothing past slow's oldest pending entry")
	first := client.XRangeN(ctx, stream, "-", "+", 1).Val()[0].ID
	assert.False(t, lessID(slowIDs[100], first), "slow's oldest pending entry is kept")
	assert.Equal(t, int64(1000)-trimmed, client.XLen(ctx, stream).Val())

	// Arc's MAXLEN ~ 100 on the same layout drops what slow never read.
	arcStream := "arcmill-test:" + uuid.NewString()
	t.Cleanup(func() { client.Del(ctx, arcStream) })
	fillN(arcStream, 1000)
	require.NoError(t, client.XGroupCreate(ctx, arcStream, "slow", "0").Err())
	require.NoError(t, client.XTrimMaxLenApprox(ctx, arcStream, 100, 0).Err())
	got := client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "slow", Consumer: "c", Streams: []string{arcStream, ">"}, Count: 1000}).Val()
	assert.Less(t, len(got[0].Messages), 1000, "approximate MAXLEN lost entries the group never read")

	// A stream without groups is left alone.
	lone := "arcmill-test:" + uuid.NewString()
	t.Cleanup(func() { client.Del(ctx, lone) })
	fillN(lone, 10)
	n, err := SafeTrim(ctx, client, lone)
	require.NoError(t, err)
	assert.Zero(t, n)

	next, err := nextID("5-3")
	require.NoError(t, err)
	assert.Equal(t, "5-4", next)
	_, err = nextID("x")
	assert.Error(t, err)
}

// The publisher runs SafeTrim every so many messages.
func TestPublisherSafeTrim(t *testing.T) {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer client.Close()
	stream := "arcmill-test:" + uuid.NewString()
	t.Cleanup(func() { client.Del(ctx, stream) })
	pub, err := NewPublisher(PublisherConfig{Client: client, SafeTrimEvery: 100})
	require.NoError(t, err)
	msgs := benchEventsT(t, 1000)
	require.NoError(t, pub.Publish(stream, msgs[:10]...))
	require.NoError(t, client.XGroupCreate(ctx, stream, "g", "0").Err())
	res := client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{stream, ">"}, Count: 10}).Val()
	for _, m := range res[0].Messages {
		require.NoError(t, client.XAck(ctx, stream, "g", m.ID).Err())
	}
	for i := 10; i < 1000; i += 100 {
		require.NoError(t, pub.Publish(stream, msgs[i:min(i+100, 1000)]...))
	}
	// The 10 acknowledged entries may go (approximately, whole nodes only);
	// the 990 the group has not read all stay.
	assert.GreaterOrEqual(t, client.XLen(ctx, stream).Val(), int64(990))
}
