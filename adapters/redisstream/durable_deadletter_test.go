package redisstream

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// replicated starts a private primary and a replica in sync with it, and
// returns the primary's address, a client of the replica, and a function
// that kills the replica.
func replicated(t *testing.T) (primary string, replica *redis.Client, kill func()) {
	t.Helper()
	primary, _ = testenv.PrivateRedis(t)
	host, port, _ := strings.Cut(primary, ":")
	addr, kill := testenv.PrivateRedis(t, "--replicaof", host, port)
	replica = redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = replica.Close() })
	require.Eventually(t, func() bool {
		info, err := replica.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	}, testWait, 10*time.Millisecond, "replica in sync")
	return primary, replica, kill
}

// With Durability, a DeadLetterPublisher returns only once a replica has
// the dead letter, and reports ErrNotDurable when none confirms: the
// middleware then nacks the message instead of acknowledging an event
// whose dead letter a failover could lose.
func TestDeadLetterPublisher_DurabilityWaitsForReplicas(t *testing.T) {
	t.Parallel()
	primary, replica, killReplica := replicated(t)
	client := redis.NewClient(&redis.Options{Addr: primary})
	t.Cleanup(func() { _ = client.Close() })
	letter := func() *message.Message {
		ev, err := arc.NewEvent("order.x", nil, arc.Meta{})
		require.NoError(t, err)
		data, err := middleware.DeadLetteredEvent{Event: ev, Reason: middleware.ReasonRetryExhausted}.MarshalArc()
		require.NoError(t, err)
		return message.NewMessage(ev.Meta.ID, data)
	}
	pub := &DeadLetterPublisher{Client: client, Durability: &Durability{Replicas: 1, Timeout: 5 * time.Second}}
	require.NoError(t, pub.Publish("arc:events:dlq", letter()))
	require.NoError(t, pub.Publish("arc:events:dlq", letter(), letter()))
	assert.Equal(t, int64(3), replica.XLen(context.Background(), "arc:events:dlq").Val(),
		"the replica has every dead letter when Publish returns")

	killReplica()
	require.Eventually(t, func() bool {
		info, err := client.Info(context.Background(), "replication").Result()
		return err == nil && acknowledgingReplicas(info) == 0
	}, testWait, 10*time.Millisecond, "the primary sees the replica gone")
	short := &DeadLetterPublisher{Client: client, Durability: &Durability{Replicas: 1, Timeout: 100 * time.Millisecond}}
	err := short.Publish("arc:events:dlq", letter())
	require.ErrorIs(t, err, ErrNotDurable)
	t.Log(err)
	// The gate now knows the replica is missing: the next one is refused
	// before anything is written.
	err = short.Publish("arc:events:dlq", letter())
	require.ErrorIs(t, err, ErrNotDurable)
	require.Contains(t, err.Error(), "nothing written")
	assert.Equal(t, int64(4), client.XLen(context.Background(), "arc:events:dlq").Val(),
		"one written unconfirmed, then none while the replica is known missing")

	bad := &DeadLetterPublisher{Client: client, Durability: &Durability{}}
	require.ErrorIs(t, bad.Publish("arc:events:dlq", letter()), ErrInvalidConfig)
}

// The subscriber's own dead letters (MaxDeliveries reached) wait for the
// replica too: unconfirmed, the entry is not acknowledged and stays
// pending; once a replica confirms, it is dead-lettered and acknowledged.
func TestSubscriber_DeadLetterDurabilityKeepsTheEntryPendingUntilConfirmed(t *testing.T) {
	t.Parallel()
	primary, _, killReplica := replicated(t)
	killReplica()
	b := setupAt(t, primary)
	ids := b.publish("order.placed", 1)
	b.readAs("g", "dead", 1)
	for range 4 {
		require.NoError(t, b.client.XClaim(context.Background(), &redis.XClaimArgs{Stream: b.stream, Group: "g",
			Consumer: "dead", Messages: ids}).Err())
	}
	const idle = 50 * time.Millisecond
	b.idleFor("g", idle)
	cfg := SubscriberConfig{Consumer: "c", ClaimIdle: idle, ClaimInterval: idle, DeadLetterStream: b.dlq,
		MaxDeliveries: 5, DeadLetterDurability: &Durability{Replicas: 1, Timeout: 100 * time.Millisecond}}
	sub, _ := b.subscribe(cfg)
	// Claim rounds pass with no replica: nothing is acknowledged.
	for range 5 {
		sub.signals.Claimed.WaitOrTimeout()
	}
	assert.Equal(t, int64(1), b.pending("g"), "the entry stays pending while its dead letter is unconfirmed")

	// A replica joins: the next attempt is confirmed, and the entry acked.
	host, port, _ := strings.Cut(primary, ":")
	_, _ = testenv.PrivateRedis(t, "--replicaof", host, port)
	require.Eventually(t, func() bool { return b.pending("g") == 0 }, 30*time.Second, 20*time.Millisecond,
		"dead-lettered and acknowledged once a replica confirms")
	require.NoError(t, sub.Close())
	assert.GreaterOrEqual(t, b.xlen(b.dlq), int64(1))

	require.ErrorIs(t, SubscriberConfig{Client: b.client, ConsumerGroup: "g", DeadLetterDurability: &Durability{}}.Validate(),
		ErrInvalidConfig)
}

// A dead letter written but not confirmed (ErrNotDurable) is not a dead
// letter the next delivery may acknowledge on finding it: the guard
// releases the failed claim, the next delivery takes it over and asks
// FindDeadLetter, and the dead letter it finds is still only in the
// primary's memory. Acknowledging then is what Durability exists to
// prevent (on a Cluster the ack and the guard's done mark live on other
// shards than the dead letter, and survive its primary's failover). Once
// a replica confirms it, the delivery acknowledges without writing it
// again.
func TestDeadLetter_DurableFoundButUnconfirmedIsNotAcknowledged(t *testing.T) {
	t.Parallel()
	primary, _, killReplica := replicated(t)
	client := redis.NewClient(&redis.Options{Addr: primary})
	t.Cleanup(func() { _ = client.Close() })
	killReplica()
	require.Eventually(t, func() bool {
		info, err := client.Info(context.Background(), "replication").Result()
		return err == nil && acknowledgingReplicas(info) == 0
	}, testWait, 10*time.Millisecond, "the primary sees the replica gone")

	const dlq = "arc:events:dlq"
	pub := &DeadLetterPublisher{Client: client, Durability: &Durability{Replicas: 1, Timeout: 100 * time.Millisecond}}
	d, err := middleware.NewDeadLetter(middleware.DeadLetterConfig{Publisher: pub, Topic: dlq, ConsumerGroup: "billing",
		OutageBackoff: time.Millisecond, OutageMaxBackoff: 50 * time.Millisecond})
	require.NoError(t, err)
	require.True(t, d.Guarded())
	ev, err := arc.NewEvent("billing.charge", map[string]int{"n": 1}, arc.Meta{})
	require.NoError(t, err)
	deliver := func() error {
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		msg.Metadata.Set(MetadataEntryID, "1-1")
		msg.SetContext(wildcard.ContextWithInfo(context.Background(), wildcard.Info{Handler: "charge",
			Topic: "arc:events", Pattern: "billing.*", Event: ev}))
		_, err = d.Middleware(func(*message.Message) ([]*message.Message, error) {
			return nil, errors.Join(arc.ErrUnrecoverable, errors.New("card declined"))
		})(msg)
		return err
	}
	err = deliver()
	require.ErrorIs(t, err, ErrNotDurable, "written, not confirmed: nacked")
	require.EqualValues(t, 1, client.XLen(context.Background(), dlq).Val(), "written on the primary")

	err = deliver()
	require.Error(t, err, "the next delivery finds the dead letter, still unconfirmed: it must not acknowledge")

	host, port, _ := strings.Cut(primary, ":")
	addr, _ := testenv.PrivateRedis(t, "--replicaof", host, port)
	replica := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = replica.Close() })
	require.Eventually(t, func() bool {
		info, err := client.Info(context.Background(), "replication").Result()
		return err == nil && acknowledgingReplicas(info) == 1
	}, testWait, 10*time.Millisecond, "a replica joins")
	require.Eventually(t, func() bool { return deliver() == nil }, testWait, 50*time.Millisecond,
		"acknowledged once a replica confirms the dead letter")
	require.EqualValues(t, 1, client.XLen(context.Background(), dlq).Val(), "found, not written again")
	require.EqualValues(t, 1, replica.XLen(context.Background(), dlq).Val(), "the replica has it")
}

// On a Cluster, a durable DeadLetterPublisher confirms a dead letter it
// finds on the primary of the dead-letter stream's slot (the WAIT after a
// replicated write to that stream), and reports it found.
func TestCluster_DurableFindDeadLetterConfirmsOnTheStreamsPrimary(t *testing.T) {
	c := clusterClient(t)
	parts := clusterStream(t, c, 1)
	ctx := context.Background()
	dlq := parts.DeadLetterKey(0)
	pub := &DeadLetterPublisher{Client: c, Durability: &Durability{Replicas: 1, Timeout: 5 * time.Second}}
	require.NoError(t, c.XAdd(ctx, deadLetterArgs(dlq, 0, "x", parts.Key(0), "1-1", "g", []byte(`{}`), nil)).Err())
	node, err := nodeFor(ctx, c, dlq)
	require.NoError(t, err)
	addr := node.(*redis.Client).Options().Addr
	before := commandCalls(t, c, "wait")
	found, err := pub.FindDeadLetter(ctx, middleware.DeadLetterQuery{Topic: dlq, SourceTopic: parts.Key(0),
		OriginalID: "1-1", ConsumerGroup: "g"})
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, 1, commandCalls(t, c, "wait")[addr]-before[addr], "confirmed on %s", addr)
	found, err = pub.FindDeadLetter(ctx, middleware.DeadLetterQuery{Topic: dlq, SourceTopic: parts.Key(0),
		OriginalID: "2-2", ConsumerGroup: "g"})
	require.NoError(t, err)
	assert.False(t, found)
}

// A dead-letter write that outlasts CommandTimeout (a WAIT for a replica
// that is gone, its Timeout longer than CommandTimeout) must still give
// its guard up: released on the expired context, the guard stayed for its
// whole TTL (10 minutes), and the entry stayed pending that long after the
// replica came back.
func TestSubscriber_DeadLetterOutlastingCommandTimeoutReleasesItsGuard(t *testing.T) {
	t.Parallel()
	primary, _, killReplica := replicated(t)
	killReplica()
	b := setupAt(t, primary)
	require.Eventually(t, func() bool {
		info, err := b.client.Info(context.Background(), "replication").Result()
		return err == nil && acknowledgingReplicas(info) == 0
	}, testWait, 10*time.Millisecond, "the primary sees the replica gone")
	ids := b.publish("order.placed", 1)
	b.readAs("g", "dead", 1)
	for range 4 {
		require.NoError(t, b.client.XClaim(context.Background(), &redis.XClaimArgs{Stream: b.stream, Group: "g",
			Consumer: "dead", Messages: ids}).Err())
	}
	const idle = 50 * time.Millisecond
	b.idleFor("g", idle)
	cfg := SubscriberConfig{Consumer: "c", ClaimIdle: idle, ClaimInterval: idle, DeadLetterStream: b.dlq,
		MaxDeliveries: 5, CommandTimeout: 300 * time.Millisecond,
		DeadLetterDurability: &Durability{Replicas: 1, Timeout: 2 * time.Second}}
	sub, _ := b.subscribe(cfg)
	guard := "arcmill:dead-lettered:" + b.stream + ":g:" + ids[0]
	require.Eventually(t, func() bool { return b.xlen(b.dlq) == 1 }, testWait, 10*time.Millisecond,
		"the dead letter written, unconfirmed")
	require.Eventually(t, func() bool { return b.client.Exists(context.Background(), guard).Val() == 0 }, testWait,
		10*time.Millisecond, "the guard released once the write failed")
	assert.Equal(t, int64(1), b.pending("g"), "the entry stays pending while its dead letter is unconfirmed")
	require.NoError(t, sub.Close())
}
