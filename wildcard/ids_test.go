package wildcard_test

import (
	"context"
	"sync"
	"testing"

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

// Over real Redis Streams, Arc entries whose ids differ only in lone
// surrogates (as Node writes them: "\ud800") reach a handler as distinct
// events, with distinct message UUIDs, and a handler that publishes them
// on puts the same bytes back on the wire.
func TestLoneSurrogateIDsStayDistinctOverRedisStreams(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	pubClient := redis.NewClient(&redis.Options{Addr: addr})
	stream := "arcmill-test:ids:" + uuid.NewString()
	out := stream + ":out"
	t.Cleanup(func() {
		assert.NoError(t, pubClient.Del(context.Background(), stream, out).Err())
		assert.NoError(t, client.Close())
		assert.NoError(t, pubClient.Close())
	})
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client,
		ConsumerGroup: "billing", BlockTime: streamsBlock})
	require.NoError(t, err)
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: pubClient})
	require.NoError(t, err)
	mr, err := message.NewRouter(message.RouterConfig{CloseTimeout: streamsWait}, watermill.NopLogger{})
	require.NoError(t, err)
	wr, err := wildcard.NewRouter(mr, wildcard.Config{})
	require.NoError(t, err)
	var mu sync.Mutex
	uuids := map[string]bool{}
	_, err = wr.HandleFunc(wildcard.HandlerConfig{Name: "relay", Subscriber: sub, Topic: stream, Patterns: []string{"*"},
		Publisher: pub, PublishTopic: out}, func(msg *message.Message) ([]*message.Message, error) {
		mu.Lock()
		uuids[msg.UUID] = true
		mu.Unlock()
		ev, err := arc.FromMessage(msg)
		if err != nil {
			return nil, err
		}
		back, err := arc.ToMessage(ev)
		return []*message.Message{back}, err
	})
	require.NoError(t, err)
	go func() { assert.NoError(t, wr.Run(context.Background())) }()
	t.Cleanup(func() { assert.NoError(t, wr.Close()) })
	<-wr.Running()

	// What Node's JSON.stringify writes for these ids (arc/testdata's
	// goldens): lone surrogates as lower-case escapes.
	var sent []string
	for _, id := range []string{`\ud800`, `\ud801`, `\udc00`, `\ufffd`, `x\ud83d`} {
		data := `{"type":"order.created","payload":{},"meta":{"id":"` + id + `","timestamp":"2026-04-28T10:00:00.000Z",` +
			`"correlationId":"c` + id + `","causationId":"p` + id + `"}}`
		if id == `\ufffd` {
			data = `{"type":"order.created","payload":{},"meta":{"id":"` + "\ufffd" + `","timestamp":"2026-04-28T10:00:00.000Z",` +
				`"correlationId":"c` + "\ufffd" + `","causationId":"p` + "\ufffd" + `"}}`
		}
		sent = append(sent, data)
		require.NoError(t, client.XAdd(context.Background(), &redis.XAddArgs{Stream: stream,
			Values: []any{"type", "order.created", "data", data}}).Err())
	}
	var got []string
	require.Eventually(t, func() bool {
		entries, err := pubClient.XRange(context.Background(), out, "-", "+").Result()
		if err != nil || len(entries) < len(sent) {
			return false
		}
		got = got[:0]
		for _, e := range entries {
			got = append(got, e.Values["data"].(string))
		}
		return true
	}, streamsWait, streamsPoll, "every event relayed")
	// Distinct ids are distinct partition keys, which the subscriber
	// handles concurrently by default: the order across them is not kept.
	assert.ElementsMatch(t, sent, got, "the same bytes back on the wire")
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, uuids, len(sent), "distinct message UUIDs")
	// The router counts an event handled after its output is published.
	require.Eventually(t, func() bool { return wr.Stats().Handled == uint64(len(sent)) }, streamsWait, streamsPoll,
		"each a distinct event, none taken for another's redelivery")
}
