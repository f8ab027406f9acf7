package redisstream

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// arcXAdd writes an entry the way Arc's RedisStreamTransport does:
// XADD <stream> MAXLEN ~ 10000 * type <type> data <json>, fields in order.
func arcXAdd(t *testing.T, c *redis.Client, stream string, fields ...string) {
	t.Helper()
	args := []any{"XADD", stream, "MAXLEN", "~", ArcMaxLen, "*"}
	for _, f := range fields {
		args = append(args, f)
	}
	require.NoError(t, c.Do(context.Background(), args...).Err())
}

// Entries written exactly as Arc writes them reach Arc-shaped handlers;
// malformed ones are dead-lettered with the reason and the subscription
// goes on; what we write, Arc's layout reads.
func TestInteropWithArcOnRealRedis(t *testing.T) {
	addr := testenv.RedisAddr(t)
	newClient := func() *redis.Client { return redis.NewClient(&redis.Options{Addr: addr}) }
	admin := newClient()
	stream := "arcmill-test:" + uuid.NewString()
	t.Cleanup(func() {
		admin.Del(context.Background(), stream, stream+":dlq", stream+":out")
		_ = admin.Close()
	})
	logger := watermill.NopLogger{}
	pub, err := wredis.NewPublisher(WatermillArcPublisherConfig(newClient()), logger)
	require.NoError(t, err)
	sub, err := wredis.NewSubscriber(WatermillArcSubscriberConfig(newClient(), "arcmill-interop", true), logger)
	require.NoError(t, err)
	dlqPub, err := wredis.NewPublisher(wredis.PublisherConfig{Client: newClient()}, logger)
	require.NoError(t, err)

	stack, err := middleware.NewStack(middleware.StackConfig{
		DeadLetter: middleware.DeadLetterConfig{Publisher: dlqPub, Topic: stream + ":dlq"}})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, logger)
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
	require.NoError(t, err)
	got := make(chan arc.Event, 10)
	_, err = events.Handle(wildcard.HandlerConfig{Name: "orders", Subscriber: sub, Topic: stream,
		Patterns: []string{"order.*"}, Middleware: stack.Middleware,
		Publisher: pub, PublishTopic: stream + ":out"},
		func(ctx context.Context, ev arc.Event) error { got <- ev; return nil })
	require.NoError(t, err)

	// Arc's entries, before the group exists (read from the start).
	arcXAdd(t, admin, stream, "type", "order.created", "data", arcData)
	arcXAdd(t, admin, stream, "type", "order.created", "data", "{corrupt")
	arcXAdd(t, admin, stream, "type", "order.shipped") // no data
	arcXAdd(t, admin, stream, "type", "order.paid", "data",
		`{"type":"order.paid","payload":{"timestamp":"2026-04-28T10:00:00.000Z"},"meta":{"id":"p-1","timestamp":"2026-04-28T10:00:01.000Z","hostKey":[1,2]}}`)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = events.Run(ctx) }()
	defer router.Close()

	for i, wantID := range []string{"7b0f2a8e-5a1e-4c1b-9d7e-2f4b7c9d1e00", "p-1"} {
		select {
		case ev := <-got:
			assert.Equal(t, wantID, ev.Meta.ID, "event %d, in order, past the malformed ones", i)
			if ev.Meta.ID == "p-1" {
				assert.Equal(t, json.RawMessage(`[1,2]`), ev.Meta.Extra["hostKey"])
				assert.JSONEq(t, `{"timestamp":"2026-04-28T10:00:00.000Z"}`, string(ev.Payload))
			} else {
				assert.Equal(t, "req-abc", ev.Meta.CorrelationID)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d not handled", i)
		}
	}

	// The two malformed entries are in the dead-letter stream, with why.
	require.Eventually(t, func() bool { return admin.XLen(context.Background(), stream+":dlq").Val() == 2 },
		10*time.Second, 20*time.Millisecond)
	entries := admin.XRange(context.Background(), stream+":dlq", "-", "+").Val()
	reasons := map[string]bool{}
	for _, e := range entries {
		// Watermill's default layout here; the payload is the envelope.
		dlqMsg, err := wredis.DefaultMarshallerUnmarshaller{}.Unmarshal(e.Values)
		require.NoError(t, err)
		var dl middleware.DeadLetteredEvent
		require.NoError(t, json.Unmarshal(dlqMsg.Payload, &dl))
		assert.Equal(t, middleware.ReasonMalformed, dl.Reason)
		require.NotNil(t, dl.Raw)
		reasons[dl.Error.Message] = true
	}
	assert.Len(t, reasons, 2)

	// What we write is Arc's layout, byte for byte.
	ev, err := arc.NewEvent("order.created", map[string]any{"orderId": "o-2", "note": "<ok> & \u2028"},
		arc.Meta{CorrelationID: "c-9", Extra: map[string]json.RawMessage{"tenant": json.RawMessage(`"t1"`)}})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(stream, msg))
	last := admin.XRevRangeN(context.Background(), stream, "+", "-", 1).Val()[0]
	want, err := arc.Marshal(ev)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"type": "order.created", "data": string(want)}, last.Values)
	raw, err := admin.Do(context.Background(), "XRANGE", stream, last.ID, last.ID).Slice()
	require.NoError(t, err)
	fields := raw[0].([]any)[1].([]any)
	assert.Len(t, fields, 4, "type and data, nothing else")
}
