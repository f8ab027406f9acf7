package redispubsub

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// Bodies Arc's RedisEventTransport publishes (PUBLISH arc-events:<type>
// <JSON.stringify(event)>) and Arc's reader delivers: each is received
// here, not flagged malformed, and published back as the same bytes.
func TestArcInterop_PubSubDeliversWhatArcDeliversAndWritesItBack(t *testing.T) {
	t.Parallel()
	bodies := []string{
		`{"type":"order.a","payload":{"timestamp":"yesterday"},"meta":{"id":"ts-1","timestamp":"2026-01-01T10:00:00.000Z"}}`,
		`{"type":"order.a","payload":{"timestamp":""},"meta":{"id":"ts-2","timestamp":"2026-01-01T10:00:00.000Z"}}`,
		`{"type":"order.a","payload":{},"meta":{"id":"n-1","timestamp":"2026-01-01T10:00:00.000Z","userId":null,"source":null}}`,
		`{"type":"order.a","payload":{"s":"\ud800"},"meta":{"id":"s-1","timestamp":"2026-01-01T10:00:00.000Z","note":"\udfff"}}`,
		`{"type":"order.a","payload":null,"meta":{"zeta":1,"id":"k-2","alpha":{"b":2,"a":1},"timestamp":"2026-01-01T10:00:00.000Z"}}`,
		`{"type":"order.a","payload":{"html":"<b>&</b>"},"meta":{"id":"h-1","timestamp":"2026-01-01T10:00:00.000Z","note":"<i>"}}`,
	}
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { _ = client.Close() })
	in, out := "arcmill-test-"+uuid.NewString()[:8], "arcmill-test-"+uuid.NewString()[:8]
	ps, err := New(Config{Client: client})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ps.Close() })
	msgs, err := ps.Subscribe(ctx, in+":order.*")
	require.NoError(t, err)
	// What arcmill writes, read as Arc's reader reads it: the raw body.
	raw := client.Subscribe(ctx, out+":order.a")
	t.Cleanup(func() { _ = raw.Close() })
	_, err = raw.Receive(ctx)
	require.NoError(t, err)
	<-ps.Running()

	for _, body := range bodies {
		require.Eventually(t, func() bool {
			n, err := client.Publish(ctx, in+":order.a", body).Result()
			return err == nil && n > 0 // the subscription is live
		}, 10*time.Second, 10*time.Millisecond)
		var m = <-msgs
		assert.Empty(t, m.Metadata.Get(arc.MetadataMalformed), body)
		ev, err := arc.FromMessage(m)
		require.NoError(t, err, body)
		m.Ack()
		again, err := arc.ToMessage(ev)
		require.NoError(t, err)
		require.NoError(t, ps.Publish(out, again))
		select {
		case got := <-raw.Channel():
			assert.Equal(t, body, got.Payload, "written back as Arc wrote it")
		case <-time.After(10 * time.Second):
			t.Fatal("nothing published back")
		}
	}
}
