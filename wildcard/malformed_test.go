package wildcard_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/wildcard"
)

// collect records the ids of the events a handler receives.
type collect struct {
	mu  sync.Mutex
	ids []string
}

func (c *collect) handle(_ context.Context, ev arc.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ids = append(c.ids, ev.Meta.ID)
	return nil
}

func (c *collect) has(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range c.ids {
		if x == id {
			return true
		}
	}
	return false
}

// errorLines returns the captured Error lines whose message contains msg.
func errorLines(l *watermill.CaptureLoggerAdapter, msg string) []watermill.CapturedMessage {
	var out []watermill.CapturedMessage
	for _, m := range l.Captured()[watermill.ErrorLogLevel] {
		if strings.Contains(m.Msg, msg) {
			out = append(out, m)
		}
	}
	return out
}

// Config{} (no OnMalformed) drops a malformed message once: acknowledged,
// counted, logged at Error with why. GoChannel resends a nacked message at
// once, for ever, so by the time a valid event published after it is
// handled, a nack would have brought it back many times.
func TestDefaultMalformedIsDroppedOnceNotLooped(t *testing.T) {
	t.Parallel()
	logger := watermill.NewCaptureLogger()
	pubSub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 16}, watermill.NopLogger{})
	t.Cleanup(func() { assert.NoError(t, pubSub.Close()) })
	mr, err := message.NewRouter(message.RouterConfig{CloseTimeout: streamsWait}, watermill.NopLogger{})
	require.NoError(t, err)
	wr, err := wildcard.NewRouter(mr, wildcard.Config{Logger: logger})
	require.NoError(t, err)
	var got collect
	_, err = wr.Subscribe(pubSub, "events", "*", got.handle)
	require.NoError(t, err)
	go func() { assert.NoError(t, wr.Run(context.Background())) }()
	t.Cleanup(func() { assert.NoError(t, wr.Close()) })
	select {
	case <-wr.Running():
	case <-time.After(streamsWait):
		t.Fatal("router not running")
	}

	require.NoError(t, pubSub.Publish("events", message.NewMessage("bad-1", []byte(`{"not":"an event"}`))))
	// GoChannel sends each message from a goroutine of its own: the
	// malformed one first, then the valid one.
	require.Eventually(t, func() bool { return wr.Stats().Malformed >= 1 }, streamsWait, streamsPoll)
	ev, err := arc.NewEvent("order.created", nil, arc.Meta{})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	require.NoError(t, pubSub.Publish("events", msg))
	require.Eventually(t, func() bool { return got.has(ev.Meta.ID) }, streamsWait, streamsPoll,
		"the event behind the malformed one is handled")

	s := wr.Stats()
	assert.Equal(t, uint64(1), s.Malformed, "seen once: acknowledged, not redelivered")
	assert.Equal(t, uint64(1), s.MalformedDropped)
	lines := errorLines(logger, "Malformed message dropped")
	require.Len(t, lines, 1)
	assert.Equal(t, "bad-1", lines[0].Fields["message_uuid"])
	require.ErrorIs(t, lines[0].Err, arc.ErrMalformedEvent)
	assert.Contains(t, lines[0].Err.Error(), "arc_type", "the line says why")
}

// Over real Redis Streams, an Arc entry whose data is not an event
// (meta.id missing) is dropped by the default, acknowledged (nothing
// pending), and its error says "arc: malformed event" once, though the
// adapter's reason quotes arc's decode error.
func TestDefaultMalformedOverRedisStreamsSaysMalformedOnce(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	stream := "arcmill-test:malformed:" + uuid.NewString()
	t.Cleanup(func() {
		assert.NoError(t, client.Del(context.Background(), stream).Err())
		assert.NoError(t, client.Close())
	})
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client,
		ConsumerGroup: "billing", BlockTime: streamsBlock})
	require.NoError(t, err)
	logger := watermill.NewCaptureLogger()
	mr, err := message.NewRouter(message.RouterConfig{CloseTimeout: streamsWait}, watermill.NopLogger{})
	require.NoError(t, err)
	wr, err := wildcard.NewRouter(mr, wildcard.Config{Logger: logger})
	require.NoError(t, err)
	var got collect
	_, err = wr.Subscribe(sub, stream, "*", got.handle)
	require.NoError(t, err)
	go func() { assert.NoError(t, wr.Run(context.Background())) }()
	t.Cleanup(func() { assert.NoError(t, wr.Close()) })
	select {
	case <-wr.Running():
	case <-time.After(streamsWait):
		t.Fatal("router not running")
	}

	for i, data := range []string{
		`{"type":"order.created","payload":{},"meta":{"timestamp":"2026-04-28T10:00:00.000Z"}}`,
		`{"type":"order.created","payload":{},"meta":{"id":"good-1","timestamp":"2026-04-28T10:00:00.000Z"}}`,
	} {
		require.NoError(t, client.XAdd(context.Background(), &redis.XAddArgs{Stream: stream,
			Values: []any{"type", "order.created", "data", data}}).Err(), fmt.Sprint(i))
	}
	require.Eventually(t, func() bool { return got.has("good-1") }, streamsWait, streamsPoll)
	require.Eventually(t, func() bool {
		p, err := client.XPending(context.Background(), stream, "billing").Result()
		return err == nil && p.Count == 0
	}, streamsWait, streamsPoll, "the malformed entry is acknowledged")
	assert.Equal(t, uint64(1), wr.Stats().MalformedDropped)
	lines := errorLines(logger, "Malformed message dropped")
	require.Len(t, lines, 1)
	text := lines[0].Err.Error()
	assert.Equal(t, 1, strings.Count(text, "arc: malformed event"), text)
	assert.Contains(t, text, "meta.id: must be a non-empty string", text)
}
