package redisstream

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// Read batches that take far longer than ClaimIdle, with slow handlers,
// several consumers and two processes in one group: every entry is handled
// exactly once. (Arc's presets with a 350 ms handler handled 96 of 110
// events twice before acks settled ahead of claims and the heartbeat
// covered every held entry.)
func TestConsumer_SlowBatchesOutlastingClaimIdleAreHandledOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// ClaimIdle is long enough that a heartbeat (every ClaimIdle/3)
	// stalled on a loaded machine does not let the other process claim a
	// held entry; a read batch (up to 100 entries of 20 ms, through one
	// handler per process) still outlasts it twice over.
	const events, claimIdle = 200, time.Second
	b.publish("order.placed", events)
	cfg := SubscriberConfig{Consumers: 2, BatchSize: 100, ClaimIdle: claimIdle, ClaimInterval: testClaimInterval}
	var handled counter
	handle := func(msgs <-chan *message.Message) {
		for m := range msgs {
			handled.add(m.Metadata.Get(MetadataEntryID))
			time.Sleep(20 * time.Millisecond) // the handler's work: the batch outlasts ClaimIdle
			m.Ack()
		}
	}
	sub1, msgs1 := b.subscribe(cfg)
	sub2, msgs2 := b.subscribe(cfg)
	go handle(msgs1)
	go handle(msgs2)
	require.Eventually(t, func() bool { return handled.len() == events && b.pending("g") == 0 },
		2*testWait, 10*time.Millisecond)
	// Claim rounds go on after the last ack: none may take anything back.
	for i := 0; i < 4; i++ {
		sub1.signals.Claimed.WaitOrTimeout()
		sub2.signals.Claimed.WaitOrTimeout()
	}
	require.NoError(t, sub1.Close())
	require.NoError(t, sub2.Close())
	assert.Empty(t, handled.twice(), "entries handled twice")
}

// Environment of the consumer process that TestConsumer_KillRedelivers
// kills: "<redis addr>|<stream>".
const killChildEnv = "ARCMILL_TEST_KILL_CHILD"

// killHandlerWork is each handled entry's work in the kill test.
const killHandlerWork = time.Millisecond

// handleRecording is the kill test's handler: it records each entry it
// handles (its effect) in Redis, works, then acks.
func handleRecording(ctx context.Context, client *redis.Client, stream string, msgs <-chan *message.Message) {
	for m := range msgs {
		if err := client.RPush(ctx, stream+":handled", m.Metadata.Get(MetadataEntryID)).Err(); err != nil {
			m.Nack()
			continue
		}
		time.Sleep(killHandlerWork)
		m.Ack()
	}
}

// TestConsumer_KillChild is the consumer process the kill test runs and
// SIGKILLs; it does nothing in a normal run.
func TestConsumer_KillChild(t *testing.T) {
	spec := os.Getenv(killChildEnv)
	if spec == "" {
		t.Skip("the child of TestConsumer_KillRedeliversAtMostOneFlush; not run on its own")
	}
	addr, stream, _ := strings.Cut(spec, "|")
	client := redis.NewClient(&redis.Options{Addr: addr})
	sub, err := NewSubscriber(SubscriberConfig{Client: client, ConsumerGroup: "g", Consumer: "victim"})
	require.NoError(t, err)
	msgs, err := sub.Subscribe(context.Background(), stream)
	require.NoError(t, err)
	handleRecording(context.Background(), client, stream, msgs) // until killed
}

// A consumer process SIGKILLed mid-stream re-delivers, after its restart,
// no more than MaxInFlight entries plus the acks of one flush: acks go out
// within AckFlushInterval, not when a batch of 100 has piled up.
func TestConsumer_KillRedeliversAtMostOneFlush(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const events, killAfter = 2000, 350 // mid-batch: batches are DefaultBatchSize
	pub, err := NewPublisher(PublisherConfig{Client: b.client})
	require.NoError(t, err)
	var batch []*message.Message
	for i := 0; i < events; i++ {
		ev, err := arc.NewEvent("order.placed", map[string]int{"i": i}, arc.Meta{})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		batch = append(batch, msg)
	}
	require.NoError(t, pub.Publish(b.stream, batch...))
	t.Cleanup(func() { b.client.Del(ctx, b.stream+":handled") })

	child := exec.Command(os.Args[0], "-test.run=^TestConsumer_KillChild$", "-test.count=1")
	child.Env = append(os.Environ(), killChildEnv+"="+testenv.RedisAddr(t)+"|"+b.stream)
	require.NoError(t, child.Start())
	require.Eventually(t, func() bool { return b.client.LLen(ctx, b.stream+":handled").Val() >= killAfter },
		3*testWait, time.Millisecond)
	require.NoError(t, child.Process.Kill()) // SIGKILL
	_ = child.Wait()

	// The restart, under the same name: its own pending entries first.
	sub, msgs := b.subscribe(SubscriberConfig{Consumer: "victim"})
	go handleRecording(ctx, b.client, b.stream, msgs)
	require.Eventually(t, func() bool {
		handled, err := b.client.LRange(ctx, b.stream+":handled", 0, -1).Result()
		require.NoError(t, err)
		unique := map[string]bool{}
		for _, id := range handled {
			unique[id] = true
		}
		return len(unique) == events && b.pending("g") == 0
	}, 3*testWait, 10*time.Millisecond)
	require.NoError(t, sub.Close())

	handled, err := b.client.LRange(ctx, b.stream+":handled", 0, -1).Result()
	require.NoError(t, err)
	dups := len(handled) - events
	bound := DefaultMaxInFlight + int(DefaultAckFlushInterval/killHandlerWork) + killFlushSlack
	t.Logf("SIGKILL after %d handled: %d entries handled twice (bound %d: MaxInFlight %d + one flush interval %s of %s handlers + %d in an XACK's round trip)",
		killAfter, dups, bound, DefaultMaxInFlight, DefaultAckFlushInterval, killHandlerWork, killFlushSlack)
	fmt.Fprintf(os.Stderr, "kill-test duplicates: %d\n", dups)
	assert.LessOrEqual(t, dups, bound)
}

// killFlushSlack allows for the acks that gather while one XACK is on its
// way (a loaded machine running -race slows that round trip).
const killFlushSlack = 8

// An entry that holds no readable event is one message on every delivery,
// in this process or another: its UUID comes from the stream and the entry
// id, so what keys on it (the middleware's dead-letter guard) sees a
// redelivery as the same message, and two such entries as two. The fault
// scenario caught a second dead letter for one foreign entry, read again
// after a crash, while the UUID was random per read.
func TestConsumer_UnreadableEntryKeepsItsUUIDAcrossDeliveries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.xadd("type", "t", "data", "not json")
	second := b.xadd("nothing", "here")
	read := func(msgs <-chan *message.Message) *message.Message {
		select {
		case m := <-msgs:
			return m
		case <-time.After(testWait):
			t.Fatal("no delivery")
			return nil
		}
	}
	cfg := SubscriberConfig{MaxInFlight: 1, Consumer: "c1", CloseTimeout: None}
	sub, msgs := b.subscribe(cfg)
	m := read(msgs)
	require.NotEmpty(t, m.Metadata.Get(arc.MetadataMalformed))
	require.Equal(t, first, m.Metadata.Get(MetadataEntryID))
	uuid1 := m.UUID
	_ = sub.Close() // the entry stays pending to c1, unsettled

	_, msgs = b.subscribe(cfg) // a new process under the same name reads its own pending entry again
	again := read(msgs)
	require.Equal(t, first, again.Metadata.Get(MetadataEntryID), "c1's pending entry comes again first")
	assert.Equal(t, uuid1, again.UUID, "the same UUID on a delivery by another subscriber")
	again.Ack()
	other := read(msgs)
	require.Equal(t, second, other.Metadata.Get(MetadataEntryID))
	assert.NotEqual(t, uuid1, other.UUID, "another entry, another UUID")
	other.Ack()
}
