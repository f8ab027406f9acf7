package redisstream

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// keyedEvents are n events per partition of parts, routed by partitionKey.
func keyedEvents(t *testing.T, parts Partitions, n int) []*message.Message {
	t.Helper()
	per := map[int]int{}
	var out []*message.Message
	for k := 0; len(out) < n*parts.N; k++ {
		key := "k-" + strconv.Itoa(k)
		if per[parts.Of(key)] == n {
			continue
		}
		per[parts.Of(key)]++
		ev, err := arc.NewEvent("order.placed", map[string]int{"k": k}, arc.Meta{PartitionKey: key})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		out = append(out, msg)
	}
	return out
}

// On the cluster, each partition's claims dead-letter into the partition's
// own dead-letter stream (the once-only guard is a SET NX of its own, in no
// script), SafeTrim reads and trims each partition, and a dead letter is
// redriven to its partition by the one-script move, both keys in one slot;
// a redrive across slots is refused before anything runs, saying why.
func TestCluster_DeadLettersTrimAndRedrivePerPartition(t *testing.T) {
	c := clusterClient(t)
	parts := clusterStream(t, c, 2)
	ctx := context.Background()
	pub, err := NewPartitionPublisher(PartitionPublisherConfig{Partitions: parts.N, Publisher: PublisherConfig{Client: c}})
	require.NoError(t, err)
	require.NoError(t, pub.Publish(parts.Stream, keyedEvents(t, parts, 2)...))
	// A consumer that reads every entry and dies.
	for _, key := range parts.Keys() {
		require.NoError(t, c.XGroupCreateMkStream(ctx, key, "g", "0").Err())
		require.NoError(t, c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "dead",
			Streams: []string{key, ">"}, Count: 10}).Err())
	}
	sub, err := NewPartitionSubscriber(PartitionSubscriberConfig{Partitions: parts.N, DeadLetters: true,
		Subscriber: SubscriberConfig{Client: c, ConsumerGroup: "g", MaxDeliveries: 1, BlockTime: testBlockTime,
			ClaimIdle: testClaimIdle, ClaimInterval: testClaimInterval}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	msgs, err := sub.Subscribe(ctx, parts.Stream)
	require.NoError(t, err)
	for i := range parts.N {
		require.Eventually(t, func() bool { return c.XLen(ctx, parts.DeadLetterKey(i)).Val() == 2 }, testWait,
			10*time.Millisecond, "partition %d's dead letters", i)
	}
	for i, key := range parts.Keys() {
		require.Eventually(t, func() bool {
			p, err := c.XPending(ctx, key, "g").Result()
			return err == nil && p.Count == 0
		}, testWait, 10*time.Millisecond)
		n, err := SafeTrim(ctx, c, key)
		require.NoError(t, err, "SafeTrim on partition %d", i)
		assert.GreaterOrEqual(t, n, int64(0))
	}

	dlq := parts.DeadLetterKey(1)
	entries, err := RangeEntries(ctx, c, dlq, "-", "+", 0)
	require.NoError(t, err)
	dl, rerr := ReadDeadLetterEntry(entries[0])
	require.NoError(t, rerr)
	assert.Equal(t, parts.Key(1), dl.OriginalStream)
	fields, ok := RedriveFields(dl, rerr)
	require.True(t, ok)

	// Arc's single stream is in another slot than a partition's dead letters.
	moved, err := RedriveEntry(ctx, c, dlq, entries[0].ID, parts.Stream, 0, fields)
	require.ErrorIs(t, err, ErrCrossSlot)
	assert.False(t, moved)
	assert.Contains(t, err.Error(), "one script")
	assert.EqualValues(t, 2, c.XLen(ctx, dlq).Val(), "nothing moved")

	moved, err = RedriveEntry(ctx, c, dlq, entries[0].ID, dl.OriginalStream, 0, fields)
	require.NoError(t, err)
	assert.True(t, moved)
	select {
	case msg := <-msgs:
		assert.Equal(t, dl.Envelope.Event.Meta.ID, msg.UUID, "the redriven event is read again")
		assert.Equal(t, parts.Key(1), msg.Metadata.Get(MetadataPartitionStream))
		msg.Ack()
	case <-time.After(testWait):
		t.Fatal("the redriven event was not read")
	}
	assert.EqualValues(t, 1, c.XLen(ctx, dlq).Val())
}

// commandCalls is how many times each primary has run cmd (INFO
// commandstats), by address.
func commandCalls(t *testing.T, c *redis.ClusterClient, cmd string) map[string]int {
	t.Helper()
	out := map[string]int{}
	var mu = make(chan struct{}, 1)
	err := c.ForEachMaster(context.Background(), func(ctx context.Context, node *redis.Client) error {
		info, err := node.Info(ctx, "commandstats").Result()
		if err != nil {
			return err
		}
		n := 0
		for _, line := range strings.Split(info, "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls="); ok {
				n, _ = strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
			}
		}
		mu <- struct{}{}
		out[node.Options().Addr] = n
		<-mu
		return nil
	})
	require.NoError(t, err)
	return out
}

// Durable publishing confirms each partition's writes on its own primary:
// the WAIT goes with the XADDs to the primary of the partition, never to
// another node, whose replicas say nothing of them; and a durable gate that
// has seen a confirmation fall short asks that same primary (INFO) before
// writing again.
func TestCluster_DurableWaitOnEachPartitionsPrimary(t *testing.T) {
	c := clusterClient(t)
	parts := clusterStream(t, c, 2)
	ctx := context.Background()
	nodes, err := PartitionNodes(ctx, c, parts)
	require.NoError(t, err)
	pub, err := NewPartitionPublisher(PartitionPublisherConfig{Partitions: parts.N, Publisher: PublisherConfig{
		Client: c, Durability: &Durability{Replicas: 1, Timeout: 5 * time.Second}}})
	require.NoError(t, err)
	before := commandCalls(t, c, "wait")
	const rounds = 20
	for range rounds {
		require.NoError(t, pub.Publish(parts.Stream, keyedEvents(t, parts, 2)...))
	}
	after := commandCalls(t, c, "wait")
	holds := map[string]int{}
	for _, n := range nodes {
		holds[n]++
	}
	for addr := range after {
		got := after[addr] - before[addr]
		if holds[addr] > 0 {
			assert.GreaterOrEqual(t, got, rounds*holds[addr], "WAITs on %s, primary of %d partition(s)", addr, holds[addr])
		} else {
			assert.Zero(t, got, "WAITs on %s, which holds no partition", addr)
		}
	}

	// The gate asks the partition's primary.
	key := parts.Key(0)
	part := pub.partition(parts.Stream, key)
	node, err := nodeFor(ctx, c, key)
	require.NoError(t, err)
	part.gateOf(node).fellShort(ErrNotDurable) // the gate of the partition's primary
	infoBefore := commandCalls(t, c, "info")
	var first *message.Message
	for _, m := range keyedEvents(t, parts, 1) {
		if parts.OfMessage(m) == 0 {
			first = m
		}
	}
	// Refused at once while the shortfall is fresh, then admitted once the
	// gate has asked the primary, which has its replica.
	require.Eventually(t, func() bool { return pub.Publish(parts.Stream, first) == nil }, testWait, 10*time.Millisecond)
	infoAfter := commandCalls(t, c, "info")
	// INFO commandstats itself counts once per call on every node: one more
	// on the partition's primary is the gate's.
	assert.GreaterOrEqual(t, infoAfter[nodes[0]]-infoBefore[nodes[0]], 2, "the gate asked %s", nodes[0])
}

// A handler's dead letters (middleware.DeadLetter, with its once-only guard
// on the cluster) go, through PartitionDeadLetterPublisher, to the
// dead-letter stream of the partition each event was read from, naming it
// as originalStream; an entry that is not an event keeps its raw fields,
// read from its partition. Each is redriven into its partition by the
// one-script move, in one slot.
func TestPartition_HandlerDeadLettersGoToTheirPartition(t *testing.T) {
	c := clusterClient(t)
	parts := clusterStream(t, c, 3)
	ctx := context.Background()
	fallback := parts.Stream + ":dlq"
	t.Cleanup(func() { c.Del(ctx, fallback) })
	sub, err := NewPartitionSubscriber(PartitionSubscriberConfig{Partitions: parts.N,
		Subscriber: SubscriberConfig{Client: c, ConsumerGroup: "billing", BlockTime: testBlockTime}})
	require.NoError(t, err)
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry: middleware.RetryConfig{MaxRetries: 1, Backoff: middleware.NoBackoff},
		DeadLetter: middleware.DeadLetterConfig{Publisher: &PartitionDeadLetterPublisher{DeadLetterPublisher{Client: c}},
			Topic: fallback, ConsumerGroup: "billing"},
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: testWait}, nil)
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
	require.NoError(t, err)
	var fail atomic.Bool
	fail.Store(true)
	handled := make(chan string, 10)
	_, err = events.Handle(wildcard.HandlerConfig{Name: "charge", Subscriber: sub, Topic: parts.Stream,
		Patterns: []string{"order.*"}, Middleware: stack.Middleware}, func(_ context.Context, ev arc.Event) error {
		if fail.Load() {
			return errors.New("payment service down")
		}
		handled <- ev.Meta.ID
		return nil
	})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = events.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done; _ = sub.Close() })

	msgs := keyedEvents(t, parts, 1) // one event per partition
	pub, err := NewPartitionPublisher(PartitionPublisherConfig{Partitions: parts.N, Publisher: PublisherConfig{Client: c}})
	require.NoError(t, err)
	require.NoError(t, pub.Publish(parts.Stream, msgs...))
	arcXAddTo(t, c, parts.Key(1), "order.placed", "{not json") // an Arc service's broken write, in partition 1

	for i := range parts.N {
		want := int64(1)
		if i == 1 {
			want = 2
		}
		require.Eventually(t, func() bool { return c.XLen(ctx, parts.DeadLetterKey(i)).Val() == want }, testWait,
			10*time.Millisecond, "partition %d's dead letters", i)
	}
	assert.Zero(t, c.Exists(ctx, fallback).Val(), "nothing in the topic's dead-letter stream")

	fail.Store(false)
	redriven := 0
	for i := range parts.N {
		entries, err := RangeEntries(ctx, c, parts.DeadLetterKey(i), "-", "+", 0)
		require.NoError(t, err)
		for _, e := range entries {
			dl, rerr := ReadDeadLetterEntry(e)
			require.NoError(t, rerr)
			assert.Equal(t, parts.Key(i), dl.OriginalStream)
			assert.Equal(t, "billing", dl.Group)
			fields, ok := RedriveFields(dl, rerr)
			require.True(t, ok, "%+v", dl)
			if dl.Envelope.Reason == middleware.ReasonMalformed {
				assert.Equal(t, []string{FieldType, "order.placed", FieldData, "{not json"}, fields, "the raw entry, read from its partition")
				continue // it would only be dead-lettered again
			}
			moved, err := RedriveEntry(ctx, c, parts.DeadLetterKey(i), e.ID, dl.OriginalStream, 0, fields)
			require.NoError(t, err)
			require.True(t, moved)
			redriven++
		}
	}
	require.Equal(t, parts.N, redriven)
	got := map[string]bool{}
	for len(got) < parts.N {
		select {
		case id := <-handled:
			got[id] = true
		case <-time.After(testWait):
			t.Fatalf("handled %d of %d redriven events", len(got), parts.N)
		}
	}
	for _, m := range msgs {
		assert.True(t, got[m.UUID], m.UUID)
	}
}
