package redisstream

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// Entries left pending by a dead consumer: one claimed and delivered, one
// at the delivery limit dead-lettered with Redis's real count, one deleted
// while pending dead-lettered as a placeholder instead of vanishing (as it
// does in Arc).
func TestClaim_TakesOverDeadConsumersEntries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	ids := append(append(b.publish("order.poison", 1), b.publish("order.ok", 1)...), b.publish("order.deleted", 1)...)
	b.readAs("g", "dead", 3)
	for i := 0; i < 4; i++ { // the first was delivered 5 times
		require.NoError(t, b.client.XClaim(ctx, &redis.XClaimArgs{Stream: b.stream, Group: "g", Consumer: "dead",
			Messages: ids[:1]}).Err())
	}
	require.NoError(t, b.client.XDel(ctx, b.stream, ids[2]).Err())
	const idle = 50 * time.Millisecond
	b.idleFor("g", idle)

	sub, msgs := b.subscribe(SubscriberConfig{Consumer: "alive", ClaimIdle: idle, ClaimInterval: idle,
		DeadLetterStream: b.dlq, MaxDeliveries: 5})
	select {
	case m := <-msgs:
		m.Ack()
		ev, err := arc.FromMessage(m)
		require.NoError(t, err)
		assert.Equal(t, "order.ok", ev.Type)
		assert.Equal(t, ids[1], m.Metadata.Get(MetadataEntryID))
	case <-time.After(testWait):
		t.Fatal("the healthy entry was not claimed")
	}
	sub.signals.DeadLettered.WaitOrTimeout()
	sub.signals.DeadLettered.WaitOrTimeout()
	sub.signals.Flushed.WaitUntil(testWait, func(int) bool { return b.pending("g") == 0 })
	require.NoError(t, sub.Close())

	byOriginal := map[string]DeadLetterEntry{}
	entries, err := b.client.XRange(ctx, b.dlq, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 2)
	for _, e := range entries {
		entry, err := ReadDeadLetter(e)
		require.NoError(t, err)
		byOriginal[entry.OriginalID] = entry
	}
	poison := byOriginal[ids[0]]
	assert.Equal(t, "order.poison", poison.Type)
	assert.Equal(t, "order.poison", poison.Envelope.Event.Type, "the event kept")
	assert.Equal(t, 5, poison.Envelope.Attempts, "Redis's delivery count")
	assert.Equal(t, b.stream, poison.OriginalStream)
	assert.Equal(t, "g", poison.Group)
	deleted := byOriginal[ids[2]]
	assert.Equal(t, "<unknown>", deleted.Type)
	assert.True(t, strings.Contains(deleted.Envelope.Error.Message, "deleted or trimmed"))
	assert.Equal(t, ids[2], deleted.Envelope.Event.Meta.ID, "Arc's placeholder names the entry")
}

// A claim never takes an entry a consumer of this process holds, however
// idle Redis thinks it is; released, the entry is claimed.
func TestClaim_SkipsEntriesThisProcessHolds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.publish("order.placed", 1)
	b.readAs("g", "reader", 1)
	const idle = 50 * time.Millisecond
	b.idleFor("g", idle)
	sub := b.subscriber(SubscriberConfig{ClaimIdle: idle, ClaimInterval: idle})
	holder := newConsumer(sub, b.stream, "reader", nil, context.Background())
	claimer := newConsumer(sub, b.stream, "claimer", nil, context.Background())
	sub.hold(holder, ids...)

	res, err := claimer.claims.claimOnce(context.Background())
	require.NoError(t, err)
	assert.Empty(t, res.Claimed, "a held entry is never claimed")
	assert.Equal(t, 1, res.Skipped)

	sub.release(holder, ids...)
	res, err = claimer.claims.claimOnce(context.Background())
	require.NoError(t, err)
	require.Len(t, res.Claimed, 1)
	assert.Equal(t, ids[0], res.Claimed[0].ID)
	assert.True(t, sub.holds(b.stream, ids[0]), "claimed entries are held by the claimer")
}

// A handler slower than ClaimIdle keeps its entry: the heartbeat keeps it
// fresh, so neither this process nor another claims it or dead-letters it
// (with MaxDeliveries 1, a claim would dead-letter it at once).
func TestClaim_SlowHandlerKeepsItsEntry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish("order.placed", 1)
	// Not shorter: a heartbeat (every idle/3) stalled for two thirds of
	// it on a loaded machine would let the other process claim the entry.
	const idle = 900 * time.Millisecond
	cfg := SubscriberConfig{ClaimIdle: idle, ClaimInterval: idle / 3, DeadLetterStream: b.dlq, MaxDeliveries: 1}
	sub, msgs := b.subscribe(cfg)
	m := <-msgs
	other, otherMsgs := b.subscribe(cfg) // another process of the same group
	// Work for longer than ClaimIdle, as a heartbeat measures it: six beats
	// of ClaimIdle/3, with the other process claiming all the while.
	// Each beat checks the entry was not taken: taken, beats refresh
	// nothing, and the loop would wait forever instead of failing.
	for beats := 0; beats < 6; {
		beats += min(1, sub.signals.Heartbeat.WaitOrTimeout())
		require.Zero(t, b.xlen(b.dlq), "dead-lettered while its handler worked")
		require.Zero(t, len(otherMsgs), "the other process got the entry")
	}
	other.signals.Claimed.WaitOrTimeout()
	m.Ack()
	sub.signals.Flushed.WaitOrTimeout()
	require.NoError(t, sub.Close())
	require.NoError(t, other.Close())
	assert.Empty(t, otherMsgs, "the other process never got the entry")
	assert.Zero(t, b.xlen(b.dlq), "nothing dead-lettered while its handler worked")
	assert.Zero(t, b.pending("g"))
}

// Several consumers and processes reach the same exhausted entry: it is
// dead-lettered once.
func TestClaim_OneDeadLetterAcrossConsumers(t *testing.T) {
	t.Parallel()
	for round := 0; round < 3; round++ {
		b := setup(t)
		ids := b.publish("order.placed", 1)
		b.readAs("g", "dead", 1)
		for i := 0; i < 4; i++ {
			require.NoError(t, b.client.XClaim(context.Background(), &redis.XClaimArgs{Stream: b.stream, Group: "g",
				Consumer: "dead", Messages: ids}).Err())
		}
		const idle = 50 * time.Millisecond
		b.idleFor("g", idle)
		cfg := SubscriberConfig{Consumer: "c", Consumers: 8, ClaimIdle: idle, ClaimInterval: idle,
			DeadLetterStream: b.dlq, MaxDeliveries: 5}
		sub1, _ := b.subscribe(cfg)
		sub2, _ := b.subscribe(cfg)
		require.Eventually(t, func() bool { return b.xlen(b.dlq) >= 1 }, testWait, 5*time.Millisecond)
		// Every consumer of both has run a claim round since.
		for i := 0; i < 16; i++ {
			sub1.signals.Claimed.WaitOrTimeout()
			sub2.signals.Claimed.WaitOrTimeout()
		}
		require.NoError(t, sub1.Close())
		require.NoError(t, sub2.Close())
		require.Equal(t, int64(1), b.xlen(b.dlq), "round %d: dead letters for one entry", round)
	}
}
