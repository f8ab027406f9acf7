package redisstream

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/leaktest"
	"github.com/arcmill/arcmill/internal/testenv"
)

// The stream's slot moves to another primary while a publisher and a
// consumer run: the stream, its dead-letter stream and its consumer group
// move together (one hash tag, one slot, one MIGRATE). Both clients meet
// real ASK replies (the key already moved, the slot not yet handed over)
// and MOVED ones (after), and lose nothing: every accepted event is
// handled, nothing is dead-lettered, nothing stays pending. Redeliveries
// (in-flight entries whose XACK met the move) are counted and bounded by
// what a consumer holds at once. The durable publisher follows the
// redirections itself (cluster.go), the plain one through go-redis.
func TestCluster_ReshardWhileConsuming(t *testing.T) {
	for _, tc := range []struct {
		name       string
		durability *Durability
	}{{"plain", nil}, {"durable", &Durability{Replicas: 1, Timeout: 2 * time.Second}}} {
		t.Run(tc.name, func(t *testing.T) {
			c := testenv.PrivateRedisCluster(t, 3, 1)
			client, counter := countedClient(c)
			stream := "{orders}:events"
			dlq := stream + ":dlq"
			from := c.PrimaryFor(stream)
			var to string
			for _, p := range c.Primaries() {
				if p != from {
					to = p
					break
				}
			}
			require.Equal(t, c.Slot(stream), c.Slot(dlq), "the dead-letter stream shares the stream's slot")

			pub, err := NewPublisher(PublisherConfig{Client: client, SkipServerCheck: true, Durability: tc.durability})
			require.NoError(t, err)
			run := newClusterRun(t, client, pub, stream)
			sub, err := NewSubscriber(clusterSubscriberConfig(client, dlq))
			require.NoError(t, err)
			run.consume(sub)
			run.publish()
			run.waitPublished(300)

			c.ReshardWith(from, to, []int{c.Slot(stream)}, func(int) {
				// The slot is migrating and its keys are on the target: the
				// source answers ASK until the hand-over. Let the clients
				// meet it, and publish through it.
				before := run.published.Load()
				require.Eventually(t, func() bool { return counter.get("ASK") > 0 && run.published.Load() > before+20 },
					clusterWait, 5*time.Millisecond, "the clients went through ASK")
			})
			require.Equal(t, to, c.PrimaryFor(stream))
			run.waitPublished(run.published.Load() + 300)
			run.stopPublishing()

			lost := run.waitAllHandled("g")
			require.NoError(t, sub.Close())
			run.stopped.Wait()
			run.report(counter)
			redelivered := run.redelivered()
			t.Logf("accepted %d, lost %d, handled more than once %d; ASK %d, MOVED %d", len(run.acked), lost, redelivered,
				counter.get("ASK"), counter.get("MOVED"))
			assert.Zero(t, lost, "a reshard lost accepted events")
			assert.Zero(t, run.deadLetters(dlq), "a reshard must not dead-letter events")
			assert.Positive(t, counter.get("MOVED"), "the clients went through MOVED")
			assert.LessOrEqual(t, redelivered, DefaultMaxInFlight+DefaultBatchSize,
				"only entries in flight at the move are delivered again")
			leaktest.RequireNone(t, "github.com/arcmill/arcmill/adapters/redisstream", clusterWait)
		})
	}
}
