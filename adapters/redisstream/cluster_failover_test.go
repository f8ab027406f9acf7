package redisstream

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/leaktest"
	"github.com/arcmill/arcmill/internal/testenv"
)

// The tests of this file and cluster_reshard_test.go kill nodes and move
// slots, so each runs on a private cluster (testenv.PrivateRedisCluster),
// three primaries with one replica each, cluster-node-timeout 1.5 s.

// taggedStream returns a stream name with a hash tag (its dead-letter
// stream shares the tag, so the slot) whose primary differs from those of
// the keys in avoid: a test that must tell "ran on the stream's primary"
// from "ran on another" picks a stream that is not where the others are.
func taggedStream(t *testing.T, c *testenv.Cluster, avoid ...string) string {
	t.Helper()
	avoided := map[string]bool{}
	for _, k := range avoid {
		avoided[c.PrimaryFor(k)] = true
	}
	for _, tag := range []string{"orders", "billing", "shipping", "users", "stock", "audit", "mail", "carts"} {
		s := "{" + tag + "}:events"
		if !avoided[c.PrimaryFor(s)] {
			return s
		}
	}
	t.Fatalf("no candidate stream avoids the primaries of %v", avoid)
	return ""
}

func orderMessage(t *testing.T, i int) *message.Message {
	t.Helper()
	ev, err := arc.NewEvent("order.placed", map[string]int{"i": i}, arc.Meta{})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	return msg
}

// A durable publish on a Cluster is confirmed by the replica of the
// stream's own primary. go-redis' cluster pipeline routes WAIT by its first
// argument as if it were a key ("1"), so WAIT used to run on another
// primary and confirm at once writes it never had: with the stream's
// replica dead, Publish still returned nil. The stream here is picked off
// the primary of the key "1" (and of "replication", where INFO went). The
// gate that then refuses writes is that primary's alone.
func TestCluster_DurablePublishConfirmsOnTheStreamsPrimary(t *testing.T) {
	c := testenv.PrivateRedisCluster(t, 3, 1)
	client, _ := countedClient(c)
	stream := taggedStream(t, c, "1", "replication")
	primary := c.PrimaryFor(stream)
	replicas := c.ReplicasOf(primary)
	require.Len(t, replicas, 1)

	pub, err := NewPublisher(PublisherConfig{Client: client, SkipServerCheck: true,
		Durability: &Durability{Replicas: 1, Timeout: 5 * time.Second}})
	require.NoError(t, err)
	require.NoError(t, pub.Publish(stream, orderMessage(t, 0)), "confirmed by the stream's replica")
	require.NoError(t, pub.Publish(stream, orderMessage(t, 1), orderMessage(t, 2)))

	c.Kill(replicas[0])
	short, err := NewPublisher(PublisherConfig{Client: client, SkipServerCheck: true,
		Durability: &Durability{Replicas: 1, Timeout: 300 * time.Millisecond}})
	require.NoError(t, err)
	err = short.Publish(stream, orderMessage(t, 3))
	require.ErrorIs(t, err, ErrNotDurable, "the stream's primary has no replica left: nothing can confirm")
	assert.Contains(t, err.Error(), "0 of 1 replica(s)")
	// The gate now asks the stream's primary (INFO), not another node, and
	// refuses to write at all.
	require.Eventually(t, func() bool {
		err := short.Publish(stream, orderMessage(t, 4))
		return err != nil && assert.ErrorIs(t, err, ErrNotDurable) && assert.Contains(t, err.Error(), "nothing written")
	}, clusterWait, 50*time.Millisecond)
	// The gate is the primary's: a stream on another primary, whose
	// replica is up, is written and confirmed at once.
	other := taggedStream(t, c, stream)
	require.NoError(t, short.Publish(other, orderMessage(t, 5)),
		"a replica outage behind one primary holds up the streams of another")
	n, err := client.XLen(context.Background(), stream).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(4), n, "three confirmed, one written and not confirmed, none while the gate refused")
}

// failoverRun publishes to and consumes from stream on a private cluster
// (4 publishers of batches of 10), then stalls the stream's replica
// (SIGSTOP) and has the primary drop its replication link (CLIENT KILL
// TYPE replica), as a cut network does, while the publishers go on,
// SIGKILLs the stream's primary,
// lets the replica go on so that the cluster promotes it, restarts the
// killed node (the new primary's replica), publishes as much again, and
// waits until the consumer has handled every event still in the stream.
// It returns how many events the publishers saw accepted and the stream
// then lost: those the primary acknowledged while its replica was stalled.
func failoverRun(t *testing.T, durability *Durability) (accepted, lost int) {
	c := testenv.PrivateRedisCluster(t, 3, 1)
	client, counter := countedClient(c)
	stream := "{orders}:events"
	dlq := stream + ":dlq"

	pub, err := NewPublisher(PublisherConfig{Client: client, SkipServerCheck: true, Durability: durability})
	require.NoError(t, err)
	run := newClusterRun(t, client, pub, stream)
	sub, err := NewSubscriber(clusterSubscriberConfig(client, dlq))
	require.NoError(t, err)
	run.consume(sub)
	run.publishConcurrently(4, 10)
	run.waitPublished(2000)

	old := c.PrimaryFor(stream)
	replica := c.ReplicasOf(old)[0]
	c.Pause(replica)
	// The primary drops its link to the stalled replica, and with it what
	// it had not yet sent; the replica cannot reconnect while stalled. What
	// the primary acknowledges from now on exists on the primary only.
	primaryClient := redis.NewClient(&redis.Options{Addr: old})
	require.NoError(t, primaryClient.Do(context.Background(), "CLIENT", "KILL", "TYPE", "replica").Err())
	require.NoError(t, primaryClient.Close())
	// The publishers go on until 2000 more are accepted (without
	// durability) or a durable write has been refused.
	before := run.published.Load()
	require.Eventually(t, func() bool { return run.published.Load() >= before+2000 || run.errorCount() > 0 },
		clusterWait, 10*time.Millisecond)
	c.Kill(old)
	c.Resume(replica)
	t.Logf("stalled %s, then killed %s, the primary of %s: %d accepted before the stall, %d by the kill",
		replica, old, stream, before, run.published.Load())
	promoted := c.WaitFailover(stream, old)
	t.Logf("%s promoted, after %d accepted events", promoted, run.published.Load())
	// The killed node comes back as the replica of the promoted one: with
	// one replica per primary, a durable publisher has nothing to confirm
	// its writes until then, and writes nothing (ErrNotDurable).
	c.Restart(old)
	t.Logf("%s back as a replica, after %d accepted events", old, run.published.Load())
	run.waitPublished(run.published.Load() + 2000)
	run.stopPublishing()

	lost = run.waitAllHandled("g")
	require.NoError(t, sub.Close())
	run.stopped.Wait()
	run.report(counter)
	assert.Zero(t, run.deadLetters(dlq), "an outage must not dead-letter events")
	t.Logf("accepted %d, lost %d, handled more than once %d", len(run.acked), lost, run.redelivered())
	assert.Positive(t, counter.get("dial")+counter.get("network")+counter.get("CLUSTERDOWN"),
		"the clients saw the primary go")
	leaktest.RequireNone(t, "github.com/arcmill/arcmill/adapters/redisstream", clusterWait)
	return len(run.acked), lost
}

// With Durability{Replicas: 1}, a primary SIGKILLed mid-run loses nothing
// its publisher was told was written: each Publish returned only once the
// replica had the entries, and the replica is what the cluster promotes.
// The consumer finds the new primary by itself, and no event is
// dead-lettered for the outage.
func TestCluster_PrimaryKilled_DurableLosesNothing(t *testing.T) {
	accepted, lost := failoverRun(t, &Durability{Replicas: 1, Timeout: 2 * time.Second})
	assert.Positive(t, accepted)
	assert.Zero(t, lost, "an event acknowledged as durable was lost")
}

// Without Durability, what the primary acknowledged and had not yet sent
// to its replica when it died is gone: the promoted replica never had it.
// The test measures it (logged: "LOSS without durability") and checks the
// rest: the consumer recovers by itself and handles everything the stream
// still has, with no dead letter.
func TestCluster_PrimaryKilled_NotDurableLossMeasured(t *testing.T) {
	accepted, lost := failoverRun(t, nil)
	assert.Positive(t, accepted)
	t.Logf("LOSS without durability: %d of %d accepted events", lost, accepted)
}
