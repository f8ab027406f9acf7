package redisstream

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// Entries left pending by a dead consumer: one claimed and delivered, one
// at the delivery limit dead-lettered with Redis's real count, one deleted
// while pending dead-lettered as a placeholder instead of vanishing (Arc's
// weakness 14).
func TestClaimsAndDeliveryLimit(t *testing.T) {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer client.Close()
	stream := "arcmill-test:" + uuid.NewString()
	dlq := stream + ":dlq"
	t.Cleanup(func() { client.Del(ctx, stream, dlq) })

	pub, err := NewPublisher(PublisherConfig{Client: client})
	require.NoError(t, err)
	var ids []string
	for _, typ := range []string{"order.poison", "order.ok", "order.deleted"} {
		ev, err := arc.NewEvent(typ, nil, arc.Meta{})
		require.NoError(t, err)
		msg, _ := arc.ToMessage(ev)
		require.NoError(t, pub.Publish(stream, msg))
		ids = append(ids, client.XRevRangeN(ctx, stream, "+", "-", 1).Val()[0].ID)
	}
	require.NoError(t, client.XGroupCreate(ctx, stream, "g", "0").Err())
	// A consumer reads all three and dies; the first was delivered 5 times.
	require.NoError(t, client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "dead", Streams: []string{stream, ">"}, Count: 3}).Err())
	for i := 0; i < 4; i++ {
		require.NoError(t, client.XClaim(ctx, &redis.XClaimArgs{Stream: stream, Group: "g", Consumer: "dead", Messages: ids[:1]}).Err())
	}
	require.NoError(t, client.XDel(ctx, stream, ids[2]).Err())
	time.Sleep(60 * time.Millisecond)

	sub, err := NewSubscriber(SubscriberConfig{Client: client, ConsumerGroup: "g", Consumer: "alive",
		ClaimIdle: 50 * time.Millisecond, ClaimInterval: 50 * time.Millisecond, BlockTime: 50 * time.Millisecond,
		DeadLetterStream: dlq, MaxDeliveries: 5})
	require.NoError(t, err)
	msgs, err := sub.Subscribe(ctx, stream)
	require.NoError(t, err)
	select {
	case m := <-msgs:
		m.Ack()
		ev, err := arc.FromMessage(m)
		require.NoError(t, err)
		assert.Equal(t, "order.ok", ev.Type)
		assert.Equal(t, ids[1], m.Metadata.Get(MetadataEntryID))
	case <-time.After(5 * time.Second):
		t.Fatal("the healthy entry was not claimed")
	}
	require.Eventually(t, func() bool { return client.XLen(ctx, dlq).Val() == 2 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, sub.Close())

	byOriginal := map[string]DeadLetterEntry{}
	for _, e := range client.XRange(ctx, dlq, "-", "+").Val() {
		entry, err := ReadDeadLetter(e)
		require.NoError(t, err)
		byOriginal[entry.OriginalID] = entry
	}
	poison := byOriginal[ids[0]]
	assert.Equal(t, "order.poison", poison.Type)
	assert.Equal(t, "order.poison", poison.Envelope.Event.Type, "the event kept")
	assert.Equal(t, 5, poison.Envelope.Attempts, "Redis's delivery count")
	assert.Equal(t, stream, poison.OriginalStream)
	assert.Equal(t, "g", poison.Group)
	deleted := byOriginal[ids[2]]
	assert.Equal(t, "<unknown>", deleted.Type)
	assert.True(t, strings.Contains(deleted.Envelope.Error.Message, "deleted or trimmed"))

	pending, err := client.XPending(ctx, stream, "g").Result()
	require.NoError(t, err)
	assert.Zero(t, pending.Count, "nothing left pending")
}
