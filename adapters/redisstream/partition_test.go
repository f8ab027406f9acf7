package redisstream

import (
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/leaktest"
)

func TestPartitions_KeysAndDeadLetterKeys(t *testing.T) {
	p := Partitions{Stream: "arc:events", N: 4}
	assert.Equal(t, []string{"arc:events:{0}", "arc:events:{1}", "arc:events:{2}", "arc:events:{3}"}, p.Keys())
	assert.Equal(t, "arc:events:{3}:dlq", p.DeadLetterKey(3))
	for i := 0; i < p.N; i++ {
		assert.Equal(t, p.Slot(i), KeySlot(p.DeadLetterKey(i)), "a partition's dead letters share its slot")
	}
	// One partition is Arc's single stream, byte for byte.
	one := Partitions{Stream: "arc:events", N: 1}
	assert.Equal(t, []string{"arc:events"}, one.Keys())
	assert.Equal(t, "arc:events:dlq", one.DeadLetterKey(0))
	assert.Zero(t, one.Of("anything"))
}

func TestPartitions_Validate(t *testing.T) {
	assert.NoError(t, Partitions{Stream: "arc:events", N: 6}.Validate())
	assert.NoError(t, Partitions{Stream: "{arc}:events", N: 1}.Validate(), "one partition may carry its own tag")
	for _, p := range []Partitions{{Stream: "", N: 2}, {Stream: "s", N: 0}, {Stream: "{arc}:events", N: 2},
		{Stream: "a}b", N: 3}} {
		assert.ErrorIs(t, p.Validate(), ErrInvalidConfig, "%+v", p)
	}
}

// The slots are Redis's own (CLUSTER KEYSLOT on Redis 7.0, the values
// partition.go documents), including the hash-tag rules.
func TestKeySlot(t *testing.T) {
	for key, slot := range map[string]int{
		"arc:events:{0}": 13907, "arc:events:{1}": 9842, "arc:events:{2}": 5649, "arc:events:{3}": 1584,
		"arc:events:{4}": 14039, "arc:events:{5}": 9974, "arc:events:{6}": 5781, "arc:events:{7}": 1716,
		"foo": 12182, "{user1000}.following": 3443, "foo{}{bar}": 8363, "foo{{bar}}zap": 4015,
		"arc:events": 1390, "arc:events:dlq": 527, "{arc}:events:dlq": 7845,
	} {
		assert.Equal(t, slot, KeySlot(key), key)
	}
	assert.NotEqual(t, KeySlot("arc:events"), KeySlot("arc:events:dlq"), "Arc's two streams are in different slots")
}

func TestRoutingKey_Precedence(t *testing.T) {
	msg := message.NewMessage("evt-1", nil)
	assert.Equal(t, "evt-1", RoutingKey(msg), "the event id last")
	msg.Metadata.Set(arc.MetadataResourceID, "res-1")
	assert.Equal(t, "res-1", RoutingKey(msg))
	msg.Metadata.Set(arc.MetadataAggregateID, "agg-1")
	assert.Equal(t, "agg-1", RoutingKey(msg))
	msg.Metadata.Set(arc.MetadataPartitionKey, "pk-1")
	assert.Equal(t, "pk-1", RoutingKey(msg), "meta.partitionKey first")

	// The message's key and the event's are one.
	ev, err := arc.NewEvent("order.created", nil, arc.Meta{ResourceID: "r", Aggregate: &arc.Aggregate{Type: "order", ID: "o-9"}})
	require.NoError(t, err)
	m, err := arc.ToMessage(ev)
	require.NoError(t, err)
	assert.Equal(t, "o-9", EventRoutingKey(ev))
	assert.Equal(t, EventRoutingKey(ev), RoutingKey(m))
}

func TestAssignPartitions(t *testing.T) {
	assert.Equal(t, []int{0, 2, 4}, AssignPartitions(0, 2, 6))
	assert.Equal(t, []int{1, 3, 5}, AssignPartitions(1, 2, 6))
	assert.Equal(t, []int{2}, AssignPartitions(2, 3, 4))
	assert.Empty(t, AssignPartitions(3, 4, 3))
}

// partitionKeys are routing keys of every kind: ASCII, non-ASCII, empty,
// long.
var partitionKeys = []string{"", "a", "order-1", "o-9", "ключ", "顧客-42", "🙂", strings.Repeat("x", 300),
	"11111111-2222-3333-4444-555555555555", "arc:events"}

// Known FNV-1a 32 values, so the hash never changes unnoticed: every
// partition of every stream written would move.
func TestPartitionOf_StableFNV1a(t *testing.T) {
	assert.Equal(t, int(uint32(0x811c9dc5)%6), PartitionOf("", 6))
	assert.Equal(t, int(uint32(0xe40c292c)%7), PartitionOf("a", 7))
	assert.Equal(t, int(uint32(0xbf9cf968)%1000), PartitionOf("foobar", 1000))
	assert.Zero(t, PartitionOf("anything", 1))
	for _, k := range partitionKeys {
		p := PartitionOf(k, 6)
		assert.True(t, p >= 0 && p < 6)
	}
}

// The JavaScript of PartitionOf's doc gives the same partitions in Node,
// so an Arc service writes the partition arcmill reads.
func TestPartitionOf_SameInNode(t *testing.T) {
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node is needed to check the documented JavaScript (make test's machine has it)")
	keys, err := json.Marshal(partitionKeys)
	require.NoError(t, err)
	script := `function partitionOf(key, n) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(key, 'utf8')) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h % n;
}
const out = [];
for (const k of ` + string(keys) + `) for (const n of [2, 3, 6, 7, 1000]) out.push(partitionOf(k, n));
console.log(out.join(','));`
	got, err := exec.Command(node, "-e", script).Output()
	require.NoError(t, err)
	var want []string
	for _, k := range partitionKeys {
		for _, n := range []int{2, 3, 6, 7, 1000} {
			want = append(want, strconv.Itoa(PartitionOf(k, n)))
		}
	}
	assert.Equal(t, strings.Join(want, ","), strings.TrimSpace(string(got)))
}

func TestPartitionConfigs_Validate(t *testing.T) {
	pub := PartitionPublisherConfig{}
	assert.ErrorIs(t, pub.Validate(), ErrInvalidConfig)
	sub := PartitionSubscriberConfig{Partitions: 3, Assign: []int{0, 3}}
	err := sub.Validate()
	assert.ErrorContains(t, err, "Assign holds 3")
	assert.ErrorContains(t, err, "Client is required")
	sub = PartitionSubscriberConfig{Partitions: 3, Subscriber: SubscriberConfig{DeadLetterStream: "x"}}
	assert.ErrorContains(t, sub.Validate(), "set DeadLetters")
}

// Close with messages unsettled gives the handlers CloseTimeout, reports
// them (ErrCloseTimeout), leaves their entries pending for the group, and
// leaves no goroutine behind; a later Subscribe is refused. On the single
// Redis: partitions are keys, and need no cluster.
func TestPartitionSubscriber_CloseLeavesUnsettledPendingAndNoGoroutine(t *testing.T) {
	b := setup(t)
	parts := Partitions{Stream: b.stream, N: 3}
	t.Cleanup(func() { b.client.Del(context.Background(), parts.Keys()...) })
	pub, err := NewPartitionPublisher(PartitionPublisherConfig{Partitions: parts.N, Publisher: PublisherConfig{Client: b.client}})
	require.NoError(t, err)
	msgs := keyedEvents(t, parts, 2) // two per partition, of distinct keys
	require.NoError(t, pub.Publish(parts.Stream, msgs...))
	sub, err := NewPartitionSubscriber(PartitionSubscriberConfig{Partitions: parts.N, Subscriber: SubscriberConfig{
		Client: b.client, ConsumerGroup: "g", BlockTime: testBlockTime, CloseTimeout: 50 * time.Millisecond}})
	require.NoError(t, err)
	got, err := sub.Subscribe(context.Background(), parts.Stream)
	require.NoError(t, err)
	var held []*message.Message
	for len(held) < len(msgs) {
		select {
		case m := <-got:
			held = append(held, m) // never acked
		case <-time.After(testWait):
			t.Fatalf("got %d of %d", len(held), len(msgs))
		}
	}
	err = sub.Close()
	require.ErrorIs(t, err, ErrCloseTimeout)
	for _, k := range parts.Keys() {
		p, perr := b.client.XPending(context.Background(), k, "g").Result()
		require.NoError(t, perr)
		assert.EqualValues(t, 2, p.Count, "%s: unsettled entries stay pending", k)
	}
	_, ok := <-got
	assert.False(t, ok, "the merged channel is closed")
	_, err = sub.Subscribe(context.Background(), parts.Stream)
	assert.ErrorIs(t, err, ErrClosed)
	leaktest.RequireNone(t, "github.com/arcmill/arcmill/adapters/redisstream", testWait)
}

// A Publish call whose messages are refused writes nothing, in no
// partition: every message is checked before any partition is written.
func TestPartitionPublisher_RefusedMessageWritesNothing(t *testing.T) {
	b := setup(t)
	parts := Partitions{Stream: b.stream, N: 3}
	t.Cleanup(func() { b.client.Del(context.Background(), parts.Keys()...) })
	pub, err := NewPartitionPublisher(PartitionPublisherConfig{Partitions: parts.N,
		Publisher: PublisherConfig{Client: b.client, MaxPayloadBytes: 200}})
	require.NoError(t, err)
	msgs := keyedEvents(t, parts, 2)
	big, err := arc.NewEvent("order.placed", map[string]string{"blob": strings.Repeat("x", 500)}, arc.Meta{})
	require.NoError(t, err)
	bigMsg, err := arc.ToMessage(big)
	require.NoError(t, err)
	err = pub.Publish(parts.Stream, append(msgs, bigMsg)...)
	require.ErrorIs(t, err, ErrPayloadTooLarge)
	for _, k := range parts.Keys() {
		assert.Zero(t, b.client.Exists(context.Background(), k).Val(), "%s written", k)
	}
	// Each partition's messages in the order published.
	require.NoError(t, pub.Publish(parts.Stream, msgs...))
	for i, k := range parts.Keys() {
		entries, err := RangeEntries(context.Background(), b.client, k, "-", "+", 0)
		require.NoError(t, err)
		var want []string
		for _, m := range msgs {
			if parts.OfMessage(m) == i {
				want = append(want, m.UUID)
			}
		}
		var ids []string
		for _, e := range entries {
			var ev arc.Event
			require.NoError(t, arc.Unmarshal([]byte(e.Map()[FieldData].(string)), &ev))
			ids = append(ids, ev.Meta.ID)
		}
		assert.Equal(t, want, ids, k)
	}
}

// Drained holds only once the group has handled every entry of every
// partition: not before a partition is read, not while an entry is
// pending.
func TestDrained(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	parts := Partitions{Stream: b.stream, N: 3}
	t.Cleanup(func() { b.client.Del(ctx, parts.Keys()...) })
	ok, err := Drained(ctx, b.client, parts, "g")
	require.NoError(t, err)
	assert.True(t, ok, "nothing written: drained")
	pub, err := NewPartitionPublisher(PartitionPublisherConfig{Partitions: parts.N, Publisher: PublisherConfig{Client: b.client}})
	require.NoError(t, err)
	msgs := keyedEvents(t, parts, 2)
	require.NoError(t, pub.Publish(parts.Stream, msgs...))
	ok, err = Drained(ctx, b.client, parts, "g")
	require.NoError(t, err)
	assert.False(t, ok, "no group has read them")

	sub, err := NewPartitionSubscriber(PartitionSubscriberConfig{Partitions: parts.N,
		Subscriber: SubscriberConfig{Client: b.client, ConsumerGroup: "g", BlockTime: testBlockTime}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	got, err := sub.Subscribe(ctx, parts.Stream)
	require.NoError(t, err)
	var held []*message.Message
	for len(held) < len(msgs) {
		select {
		case m := <-got:
			held = append(held, m)
		case <-time.After(testWait):
			t.Fatalf("got %d of %d", len(held), len(msgs))
		}
	}
	ok, err = Drained(ctx, b.client, parts, "g")
	require.NoError(t, err)
	assert.False(t, ok, "read but pending")
	for _, m := range held {
		m.Ack()
	}
	require.Eventually(t, func() bool {
		ok, err := Drained(ctx, b.client, parts, "g")
		return err == nil && ok
	}, testWait, 10*time.Millisecond)
}
