package redispubsub

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// What Watermill's universal suite would check, for a transport that keeps
// nothing (the suite publishes before subscribing in nearly every
// scenario, which at-most-once Pub/Sub cannot serve): order, back-pressure
// until ack, redelivery on nack, metadata, close.
func TestDeliverySemantics(t *testing.T) {
	addr := testenv.RedisAddr(t)
	ps, err := New(Config{Client: redis.NewClient(&redis.Options{Addr: addr}), Codec: WatermillCodec{}, CloseClient: true})
	require.NoError(t, err)
	topic := "arcmill-test-" + uuid.NewString()
	msgs, err := ps.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	var sent []*message.Message
	for i := 0; i < 50; i++ {
		m := message.NewMessage(uuid.NewString(), []byte{byte(i)})
		m.Metadata.Set("i", string(rune('a'+i%26)))
		sent = append(sent, m)
	}
	require.NoError(t, ps.Publish(topic, sent...))

	first := <-msgs
	select {
	case <-msgs:
		t.Fatal("a second message before the first was acked")
	case <-time.After(100 * time.Millisecond):
	}
	first.Nack()
	again := <-msgs
	assert.Equal(t, first.UUID, again.UUID, "a nacked message comes again")
	again.Ack()
	for i := 1; i < 50; i++ {
		m := <-msgs
		assert.Equal(t, sent[i].UUID, m.UUID, "in order")
		assert.Equal(t, sent[i].Metadata.Get("i"), m.Metadata.Get("i"))
		assert.Equal(t, sent[i].Payload, m.Payload)
		m.Ack()
	}
	require.NoError(t, ps.Close())
	_, open := <-msgs
	assert.False(t, open, "Close closes the channel")
	assert.ErrorIs(t, ps.Publish(topic, sent[0]), ErrClosed)
	_, err = ps.Subscribe(context.Background(), topic)
	assert.ErrorIs(t, err, ErrClosed)
	assert.NoError(t, ps.Close(), "idempotent")
}

// Arc's wire: PUBLISH arc-events:<type> <event JSON>; a glob topic uses
// PSUBSCRIBE, a literal one SUBSCRIBE; ours and Arc's bodies read alike.
func TestArcWireOnRealRedis(t *testing.T) {
	addr := testenv.RedisAddr(t)
	raw := redis.NewClient(&redis.Options{Addr: addr})
	defer raw.Close()
	prefix := "arcmill-test-" + uuid.NewString()[:8]
	ps, err := New(Config{Client: redis.NewClient(&redis.Options{Addr: addr}), CloseClient: true})
	require.NoError(t, err)
	defer ps.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	orders, err := ps.Subscribe(ctx, prefix+":order.*")
	require.NoError(t, err)
	exact, err := ps.Subscribe(ctx, prefix+":user.created")
	require.NoError(t, err)
	// Redis says which kind of subscription each one is.
	n, err := raw.Do(ctx, "PUBSUB", "NUMPAT").Int()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, 1)
	subs := raw.PubSubNumSub(ctx, prefix+":user.created").Val()
	assert.Equal(t, int64(1), subs[prefix+":user.created"])

	// An Arc service publishes: its body, its channel.
	arcBody := `{"type":"order.created","payload":{"orderId":"o-1"},"meta":{"id":"e-1","timestamp":"2026-04-28T10:00:00.000Z","correlationId":"req-1","hostKey":{"x":1}}}`
	require.NoError(t, raw.Publish(ctx, prefix+":order.created", arcBody).Err())
	require.NoError(t, raw.Publish(ctx, prefix+":order.created", "not json").Err())
	select {
	case m := <-orders:
		m.Ack()
		ev, err := arc.FromMessage(m)
		require.NoError(t, err)
		out, _ := arc.Marshal(ev)
		assert.Equal(t, arcBody, string(out))
		assert.Equal(t, prefix+":order.created", m.Metadata.Get(MetadataChannel))
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	select {
	case m := <-orders:
		m.Ack()
		_, err := arc.FromMessage(m)
		assert.ErrorIs(t, err, arc.ErrMalformedEvent, "flagged, not dropped")
		assert.Equal(t, "not json", string(m.Payload))
	case <-time.After(5 * time.Second):
		t.Fatal("malformed message dropped")
	}

	// We publish: Arc's channel and body; the count says who got it.
	ev, err := arc.NewEvent("user.created", map[string]string{"name": "Zoë <x>"}, arc.Meta{})
	require.NoError(t, err)
	msg, _ := arc.ToMessage(ev)
	counts, err := ps.PublishCount(prefix, msg)
	require.NoError(t, err)
	assert.Equal(t, []int64{1}, counts)
	select {
	case m := <-exact:
		m.Ack()
		want, _ := arc.Marshal(ev)
		got, _ := arc.FromMessage(m)
		body, _ := arc.Marshal(got)
		assert.Equal(t, string(want), string(body))
	case <-time.After(5 * time.Second):
		t.Fatal("no event on the exact channel")
	}
	counts, err = ps.PublishCount(prefix, msg)
	require.NoError(t, err)
	<-exact // drain
	_ = counts

	// Cancelling really unsubscribes (Arc never does: weakness 17).
	patternsBefore, err := raw.Do(context.Background(), "PUBSUB", "NUMPAT").Int()
	require.NoError(t, err)
	cancel()
	require.Eventually(t, func() bool {
		return raw.PubSubNumSub(context.Background(), prefix+":user.created").Val()[prefix+":user.created"] == 0
	}, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		n, _ := raw.Do(context.Background(), "PUBSUB", "NUMPAT").Int()
		return n == patternsBefore-1 // server-wide: other clients may hold patterns
	}, 5*time.Second, 10*time.Millisecond, "pattern unsubscribed")

	_, err = ps.PublishCount(prefix, message.NewMessage("x", nil))
	assert.Error(t, err, "a message that is not an Arc event has no Arc channel")
	assert.True(t, IsPattern("a:*") && IsPattern("a:?") && IsPattern("a:[ab]") && !IsPattern("a:b"))
}
