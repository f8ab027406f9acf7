package outbox

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// A relay publishing with Durability (WAIT for a replica) through a
// replica outage: rows stay pending and uncharged, the retries write no
// further entries (only the first batch, whose WAIT fell short, is on the
// stream), and once a replica is back every row is delivered.
func TestRelay_DurableOutageWritesNothingWhileTheReplicaIsAway(t *testing.T) {
	t.Parallel()
	f := newFixture(t, PostgreSQL, false)
	primary, _ := testenv.PrivateRedis(t)
	killReplica := testenv.RedisReplica(t, primary)
	client := redis.NewClient(&redis.Options{Addr: primary})
	t.Cleanup(func() { _ = client.Close() })
	ctx := context.Background()
	killReplica()
	require.Eventually(t, func() bool {
		info, err := client.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "connected_slaves:0")
	}, waitTimeout, 10*time.Millisecond, "the primary sees the replica gone")

	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client, SkipServerCheck: true,
		// A WAIT long enough that, once the replica is back, a loaded
		// machine's replication still confirms within it.
		Durability: &redisstream.Durability{Replicas: 1, Timeout: time.Second}})
	require.NoError(t, err)
	passes := make(chan RelayResult, 10000)
	relay, err := f.ob.NewRelay(pub, RelayConfig{BatchSize: 10, DisableNotify: true,
		OutageBackoff: Backoff{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		OnPass: func(res RelayResult) {
			select {
			case passes <- res:
			default:
			}
		}})
	require.NoError(t, err)
	stream := "arcmill:test:durable:" + f.ob.Table()
	const total = 30
	var entries []Entry
	for i := 0; i < total; i++ {
		entries = append(entries, Entry{Topic: stream, Event: f.event("order.created", arc.Meta{})})
	}
	f.commit(entries...)
	stop := run(t, relay)
	defer stop()

	// Many failed passes, across several of the gate's rechecks.
	failed := 0
	for deadline := time.After(waitTimeout); failed < 40; {
		select {
		case res := <-passes:
			failed += res.TransportFailed
		case <-deadline:
			t.Fatalf("timed out waiting for failed passes (%d so far)", failed)
		}
	}
	assert.Equal(t, total, f.count(statusPending), "every row pending")
	assert.Zero(t, f.attempts(), "an outage charges no attempt")
	assert.LessOrEqual(t, client.XLen(ctx, stream).Val(), int64(10),
		"only the first batch is written unconfirmed; %d retries wrote nothing", failed)

	testenv.RedisReplica(t, primary)
	require.Eventually(t, func() bool { return f.count(statusDelivered) == total }, waitTimeout, 10*time.Millisecond,
		"delivered once the replica is back")
	assert.Equal(t, total, f.count(statusDelivered))
	n := client.XLen(ctx, stream).Val()
	assert.GreaterOrEqual(t, n, int64(total))
	// The outage wrote one unconfirmed batch (checked above); after it, a
	// WAIT that still falls short writes its batch again, which is the
	// promise (written, not confirmed: republished). Allow one such batch.
	assert.LessOrEqual(t, n, int64(total+20), "the first unconfirmed batch, and at most one more after the replica is back")
}
