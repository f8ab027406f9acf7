package outbox

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// clusterTestWait bounds the conditions of the cluster tests: a failover
// on a loaded machine takes seconds, and go-redis refreshes a cluster
// client's slot map only every 10 s unless told of a MOVED.
const clusterTestWait = 90 * time.Second

// The relay as the publisher on a Redis Cluster, through a primary killed
// mid-run (SIGKILL) after its replica stalled and lost its link, and the
// replica's promotion: with durable publishing (Durability{Replicas: 1})
// every row the relay marked delivered is on the stream afterwards, the outage charges no attempt and dead-letters
// nothing, and the relay delivers every row once the cluster is back.
func TestRelay_ClusterPrimaryKilledLosesNothingDelivered(t *testing.T) {
	f := newFixture(t, PostgreSQL, false)
	c := testenv.PrivateRedisCluster(t, 3, 1)
	client := c.NewClient(redis.ClusterOptions{})
	ctx := context.Background()
	stream := "{orders}:events"

	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client, SkipServerCheck: true,
		Durability: &redisstream.Durability{Replicas: 1, Timeout: 2 * time.Second}})
	require.NoError(t, err)
	var transportFailed atomic.Int64
	relay, err := f.ob.NewRelay(pub, RelayConfig{BatchSize: 20, DisableNotify: true,
		PollInterval:  10 * time.Millisecond,
		OutageBackoff: Backoff{Base: 10 * time.Millisecond, Max: 500 * time.Millisecond},
		OnPass:        func(res RelayResult) { transportFailed.Add(int64(res.TransportFailed)) }})
	require.NoError(t, err)
	stop := run(t, relay)
	defer stop()

	// Rows are committed all along, before, during and after the failover.
	const total = 1500
	var (
		mu  sync.Mutex
		ids []string
	)
	done, killed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < total; i += 5 {
			var batch []Entry
			for j := 0; j < 5; j++ {
				ev, err := arc.NewEvent("order.created", map[string]int{"n": i + j}, arc.Meta{})
				if !assert.NoError(t, err) {
					return
				}
				batch = append(batch, Entry{Topic: stream, Event: ev})
				mu.Lock()
				ids = append(ids, ev.Meta.ID)
				mu.Unlock()
			}
			f.commit(batch...)
			if i == total/3 {
				// Hold the rest until the replica is away, so rows are
				// written during the outage as well as before it.
				<-killed
			}
		}
	}()

	require.Eventually(t, func() bool { return f.count(statusDelivered) >= 200 }, clusterTestWait, 10*time.Millisecond)
	old := c.PrimaryFor(stream)
	// The replica stalls (SIGSTOP) and the primary drops its link to it:
	// what the primary takes from now on exists only there. A durable
	// publish is then never confirmed, and the relay keeps its rows
	// pending until the primary dies.
	replica := c.ReplicasOf(old)[0]
	c.Pause(replica)
	primaryClient := redis.NewClient(&redis.Options{Addr: old})
	require.NoError(t, primaryClient.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err())
	require.NoError(t, primaryClient.Close())
	close(killed) // the rest of the rows are committed from now on
	require.Eventually(t, func() bool { return transportFailed.Load() > 0 }, clusterTestWait, 10*time.Millisecond,
		"the relay's publishes fall short while the replica is away")
	c.Kill(old)
	c.Resume(replica)
	t.Logf("stalled %s, cut its link, killed %s, the primary of %s, with %d rows delivered", replica, old, stream,
		f.count(statusDelivered))
	c.WaitFailover(stream, old)
	c.Restart(old) // the promoted primary's replica, which durable writes need
	<-done
	require.Eventually(t, func() bool { return f.count(statusDelivered) == total }, clusterTestWait, 20*time.Millisecond,
		"every row delivered once the cluster is back")

	present := map[string]bool{}
	entries, err := redisstream.RangeEntries(ctx, client, stream, "-", "+", 0)
	require.NoError(t, err)
	for _, e := range entries {
		data, _ := e.Map()["data"].(string)
		var ev arc.Event
		require.NoError(t, arc.Unmarshal([]byte(data), &ev))
		present[ev.Meta.ID] = true
	}
	lost := 0
	for _, id := range ids {
		if !present[id] {
			lost++
		}
	}
	t.Logf("%d rows delivered, %d stream entries (%d republished), %d lost", total, len(entries), len(entries)-len(present), lost)
	assert.Zero(t, lost, "rows the relay marked delivered are missing from the stream")
	assert.Zero(t, f.attempts(), "the failover charged attempts to rows")
	assert.Zero(t, f.count(statusDead), "the failover dead-lettered rows")
}
