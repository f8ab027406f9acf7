package redisstream

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// TestPartitionDrainedDeadLetterStaysInItsPartition: a parked event that
// is dead-lettered while its sequence drains runs on the drainer's
// context, not its delivery's; PartitionDeadLetterPublisher must still
// write its dead letter to its partition's dead-letter stream, naming the
// partition as its source (not to DeadLetter's Topic).
func TestPartitionDrainedDeadLetterStaysInItsPartition(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer client.Close()
	ctx := context.Background()
	id := uuid.NewString()
	parts := Partitions{Stream: "arcmill-test:review:" + id, N: 2}
	prefix := "arcmill-test:reviewseq:" + id + ":"
	defer func() {
		keys, _ := client.Keys(ctx, "arcmill-test:review*"+id+"*").Result()
		if len(keys) > 0 {
			client.Del(ctx, keys...)
		}
	}()
	p := parts.Of("K")
	dlPub := &PartitionDeadLetterPublisher{DeadLetterPublisher{Client: client}}
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry:      middleware.RetryConfig{MaxRetries: middleware.NoRetries},
		DeadLetter: middleware.DeadLetterConfig{Publisher: dlPub, Topic: parts.Stream + ":dlq"},
		Sequence: &middleware.SequenceConfig{Client: client, Handler: "h", Prefix: prefix,
			PollInterval: 50 * time.Millisecond, StoreBackoff: time.Millisecond},
	})
	require.NoError(t, err)
	defer stack.Close()
	var h message.HandlerFunc = func(*message.Message) ([]*message.Message, error) {
		return nil, errors.New("boom")
	}
	for i := len(stack.Middleware) - 1; i >= 0; i-- {
		h = stack.Middleware[i](h)
	}
	deliver := func(entryID string) {
		ev, err := arc.NewEvent("order.step", map[string]string{"id": entryID}, arc.Meta{PartitionKey: "K"})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		msg.Metadata.Set(middleware.MetadataOriginalID, entryID)
		msg.Metadata.Set(MetadataPartitionStream, parts.Key(p))
		c := withPartition(ctx, parts.Key(p))
		c = wildcard.ContextWithInfo(c, wildcard.Info{Handler: "h", Topic: parts.Stream, Event: ev})
		msg.SetContext(c)
		_, err = h(msg)
		require.NoError(t, err)
	}
	deliver("1-1") // dead-lettered: the head
	deliver("1-2") // parked behind it
	n, err := stack.Sequencer.Stats(), error(nil)
	require.EqualValues(t, 1, n.Parked)
	_, err = middleware.SequenceAdmin{Client: client, Prefix: prefix}.Release(ctx, middleware.ParkedFilter{Key: "K"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return stack.Sequencer.Stats().Reparked == 1 }, 20*time.Second, 20*time.Millisecond)
	inPart, _ := client.XLen(ctx, parts.DeadLetterKey(p)).Result()
	inTopic, _ := client.XLen(ctx, parts.Stream+":dlq").Result()
	t.Logf("partition dlq %d, DeadLetter.Topic %d", inPart, inTopic)
	require.EqualValues(t, 2, inPart, "the drained event's dead letter left its partition")
	require.Zero(t, inTopic)
	xs, err := client.XRange(ctx, parts.DeadLetterKey(p), "-", "+").Result()
	require.NoError(t, err)
	for _, x := range xs {
		require.Equal(t, parts.Key(p), x.Values["originalStream"], "dead letter's originalStream")
	}
}
