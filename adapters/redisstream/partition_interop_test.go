package redisstream

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// arcXAddTo writes an entry as Arc's RedisStreamTransport does (XADD
// <stream> MAXLEN ~ 10000 * type … data …), on any client.
func arcXAddTo(t *testing.T, c redis.UniversalClient, stream, typ, data string) {
	t.Helper()
	require.NoError(t, c.Do(context.Background(), "XADD", stream, "MAXLEN", "~", ArcMaxLen, "*",
		FieldType, typ, FieldData, data).Err())
}

// An Arc service reads and writes one partition with a RedisStreamTransport
// whose stream is the partition's key (arc:events:{3}): what it writes
// there, choosing the partition by the documented hash, the partitioned
// subscriber reads with its bytes; what the partitioned publisher writes is
// Arc's layout on the partition's key, which that transport reads.
func TestPartition_ArcInteropOnCluster(t *testing.T) {
	c := clusterClient(t)
	parts := clusterStream(t, c, 6)
	ctx := context.Background()

	// The Arc side writes: partition of meta.partitionKey, then aggregate
	// id, then resourceId, then id, as EventRoutingKey.
	arcEvents := map[string]string{ // key → Arc's JSON.stringify of the event
		"cust-1": `{"type":"order.placed","payload":{"n":1},"meta":{"id":"a-1","timestamp":"2026-01-01T10:00:00.000Z","partitionKey":"cust-1"}}`,
		"ord-7":  `{"type":"order.placed","payload":{"s":"\ud800"},"meta":{"id":"a-2","timestamp":"2026-01-01T10:00:00.000Z","aggregate":{"type":"order","id":"ord-7"}}}`,
		"doc-3":  `{"type":"order.placed","payload":null,"meta":{"id":"a-3","timestamp":"2026-01-01T10:00:00.000Z","resource":"order","resourceId":"doc-3","userId":null}}`,
		"a-4":    `{"type":"order.placed","payload":{"html":"<b>"},"meta":{"zeta":1,"id":"a-4","timestamp":"2026-01-01T10:00:00.000Z"}}`,
	}
	for key, data := range arcEvents {
		var ev arc.Event
		require.NoError(t, arc.Unmarshal([]byte(data), &ev))
		require.Equal(t, key, EventRoutingKey(ev))
		arcXAddTo(t, c, parts.Key(parts.Of(key)), "order.placed", data)
	}

	sub, err := NewPartitionSubscriber(PartitionSubscriberConfig{Partitions: parts.N,
		Subscriber: SubscriberConfig{Client: c, ConsumerGroup: "go-service", BlockTime: testBlockTime}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	msgs, err := sub.Subscribe(ctx, parts.Stream)
	require.NoError(t, err)
	pub, err := NewPartitionPublisher(PartitionPublisherConfig{Partitions: parts.N, Publisher: PublisherConfig{Client: c}})
	require.NoError(t, err)
	got := map[string]bool{}
	for len(got) < len(arcEvents) {
		select {
		case msg := <-msgs:
			ev, err := arc.FromMessage(msg)
			require.NoError(t, err)
			key := EventRoutingKey(ev)
			assert.Equal(t, key, RoutingKey(msg))
			written := parts.Key(parts.OfMessage(msg))
			assert.Equal(t, written, msg.Metadata.Get(MetadataPartitionStream), "read from the partition it was written to")
			// Written back by the Go side: the same bytes, in the same partition.
			again, err := arc.ToMessage(ev)
			require.NoError(t, err)
			before, err := c.XLen(ctx, written).Result()
			require.NoError(t, err)
			require.NoError(t, pub.Publish(parts.Stream, again))
			last, err := RangeEntries(ctx, c, written, "-", "+", 0)
			require.NoError(t, err)
			require.Len(t, last, int(before)+1)
			assert.Equal(t, []string{FieldType, "order.placed", FieldData, arcEvents[key]}, last[len(last)-1].Fields)
			got[key] = true
			msg.Ack()
		case <-time.After(testWait):
			t.Fatalf("read %d of %d Arc events", len(got), len(arcEvents))
		}
	}
}

// With one partition the partitioned Pub/Sub is Arc's single stream: the
// stream is the topic itself, byte for byte, and its dead letters are
// <topic>:dlq.
func TestPartition_OnePartitionIsArcsStream(t *testing.T) {
	b := setup(t)
	pub, err := NewPartitionPublisher(PartitionPublisherConfig{Partitions: 1, Publisher: PublisherConfig{Client: b.client}})
	require.NoError(t, err)
	ev, err := arc.NewEvent("order.placed", map[string]int{"n": 1}, arc.Meta{PartitionKey: "k"})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(b.stream, msg))
	data, err := arc.Marshal(ev)
	require.NoError(t, err)
	entries, err := RangeEntries(context.Background(), b.client, b.stream, "-", "+", 0)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, []string{FieldType, "order.placed", FieldData, string(data)}, entries[0].Fields)
	assert.Equal(t, b.dlq, Partitions{Stream: b.stream, N: 1}.DeadLetterKey(0))

	sub, err := NewPartitionSubscriber(PartitionSubscriberConfig{Partitions: 1,
		Subscriber: SubscriberConfig{Client: b.client, ConsumerGroup: "g", BlockTime: testBlockTime}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	msgs, err := sub.Subscribe(context.Background(), b.stream)
	require.NoError(t, err)
	select {
	case m := <-msgs:
		assert.Equal(t, ev.Meta.ID, m.UUID)
		m.Ack()
	case <-time.After(testWait):
		t.Fatal("nothing read")
	}
	require.Eventually(t, func() bool { return b.pending("g") == 0 }, testWait, 5*time.Millisecond)
}
