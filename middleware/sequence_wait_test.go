package middleware_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// With WaitReplicas, a parked event is acknowledged only once a replica
// has it: with the replica gone it waits (WAITs again, in place) and is
// nacked only when its context ends; its redelivery (parked already, not
// parked twice) waits too until one confirms.
func TestSequenceWaitReplicas(t *testing.T) {
	primary, _ := testenv.PrivateRedis(t)
	killReplica := testenv.RedisReplica(t, primary)
	client := redis.NewClient(&redis.Options{Addr: primary})
	defer client.Close()
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry: middleware.RetryConfig{MaxRetries: middleware.NoRetries},
		DeadLetter: middleware.DeadLetterConfig{Publisher: &redisstream.DeadLetterPublisher{Client: client},
			Topic: "dlq", ConsumerGroup: "g"},
		Sequence: &middleware.SequenceConfig{Handler: "h", WaitReplicas: 1, WaitTimeout: 200 * time.Millisecond,
			StoreBackoff: time.Millisecond},
	})
	require.NoError(t, err)
	defer stack.Close()
	ran := 0
	var h message.HandlerFunc = func(*message.Message) ([]*message.Message, error) {
		ran++
		return nil, fmt.Errorf("%w: head fails", arc.ErrUnrecoverable)
	}
	for i := len(stack.Middleware) - 1; i >= 0; i-- {
		h = stack.Middleware[i](h)
	}
	event := func(i int) *message.Message {
		ev, err := arc.NewEvent("order.step", map[string]int{"i": i}, arc.Meta{PartitionKey: "K"})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		msg.Metadata.Set(middleware.MetadataOriginalID, fmt.Sprintf("%d-0", i+1))
		msg.SetContext(wildcard.ContextWithInfo(context.Background(), wildcard.Info{Handler: "h", Topic: "t", Event: ev}))
		return msg
	}
	_, err = h(event(0))
	require.NoError(t, err, "dead-lettered and parked, with the replica up")
	_, err = h(event(1))
	require.NoError(t, err, "parked and replicated")

	killReplica()
	// A delivery whose context ends (a transport closing) while it waits.
	bounded := func(m *message.Message) *message.Message {
		ctx, cancel := context.WithTimeout(m.Context(), time.Second)
		t.Cleanup(cancel)
		m.SetContext(ctx)
		return m
	}
	third := event(2)
	_, err = h(bounded(third))
	assert.ErrorIs(t, err, middleware.ErrParkNotReplicated)
	_, err = h(bounded(third.Copy()))
	assert.ErrorIs(t, err, middleware.ErrParkNotReplicated, "a redelivery waits again")
	seqs, err := middleware.SequenceAdmin{Client: client}.List(context.Background(), middleware.ParkedFilter{})
	require.NoError(t, err)
	require.Len(t, seqs, 1)
	assert.EqualValues(t, 2, seqs[0].Parked, "parked once, not twice")
	assert.Equal(t, 1, ran, "only the head ran")
}
