package redisstream

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// publishKeyed appends, for each round, one event per key (partitionKey
// set), so the keys interleave on the stream.
func (b *bundle) publishKeyed(keys []string, rounds int) {
	b.t.Helper()
	pub, err := NewPublisher(PublisherConfig{Client: b.client})
	require.NoError(b.t, err)
	for i := 0; i < rounds; i++ {
		for _, k := range keys {
			ev, err := arc.NewEvent("order.updated", map[string]int{"seq": i}, arc.Meta{PartitionKey: k})
			require.NoError(b.t, err)
			msg, err := arc.ToMessage(ev)
			require.NoError(b.t, err)
			require.NoError(b.t, pub.Publish(b.stream, msg))
		}
	}
}

// By default a consumer pipelines across partition keys and keeps each
// key in order: a message of one key is held back until the previous one
// of that key is acked. The first message of key "a" is acked only once a
// message of key "b" has arrived, which one at a time could never do.
func TestSubscriber_PipelinesAcrossKeysInOrderWithinOne(t *testing.T) {
	t.Parallel()
	b := setup(t)
	keys := []string{"a", "b", "c"}
	const rounds = 20
	b.publishKeyed(keys, rounds)
	_, msgs := b.subscribe(SubscriberConfig{})

	seen := map[string][]int{}
	var held []func()
	inFlight := map[string]bool{}
	deadline := time.After(testWait)
	for total := 0; total < len(keys)*rounds; {
		select {
		case m := <-msgs:
			ev, err := arc.FromMessage(m)
			require.NoError(t, err)
			k := ev.Meta.PartitionKey
			require.False(t, inFlight[k], "a second message of key %q while one is unacked", k)
			var p struct{ Seq int }
			require.NoError(t, json.Unmarshal(ev.Payload, &p))
			seen[k] = append(seen[k], p.Seq)
			total++
			if k == "a" && p.Seq == 0 && len(held) == 0 {
				inFlight[k] = true
				held = append(held, func() { inFlight["a"] = false; m.Ack() })
				continue // hold it until another key comes
			}
			if len(held) > 0 { // another key came while "a" was held: pipelined
				for _, release := range held {
					release()
				}
				held = nil
			}
			m.Ack()
		case <-deadline:
			t.Fatalf("not every message came: %v (one at a time would stall here)", seen)
		}
	}
	for _, k := range keys {
		want := make([]int, rounds)
		for i := range want {
			want[i] = i
		}
		assert.Equal(t, want, seen[k], "key %q in stream order", k)
	}
}

// A nacked message decoded from Arc's layout is delivered again as it was
// read, whatever its handler changed in the delivered one.
func TestSubscriber_RedeliveryAfterNackIsTheEntryAsRead(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publishKeyed([]string{"k"}, 1)
	_, msgs := b.subscribe(SubscriberConfig{})
	first := <-msgs
	want := first.Metadata.Get(arc.MetadataPartitionKey)
	first.Metadata.Set(arc.MetadataPartitionKey, "changed by the handler")
	first.Metadata.Set("handler_key", "x")
	first.Payload = []byte(`"changed"`)
	first.Nack()
	again := receive(t, msgs)
	defer again.Ack()
	assert.Equal(t, first.UUID, again.UUID)
	assert.Equal(t, want, again.Metadata.Get(arc.MetadataPartitionKey))
	assert.Empty(t, again.Metadata.Get("handler_key"))
	assert.JSONEq(t, `{"seq":0}`, string(again.Payload))
	ev, err := arc.FromMessage(again)
	require.NoError(t, err)
	assert.Equal(t, "k", ev.Meta.PartitionKey)
}

func receive(t *testing.T, msgs <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(testWait):
		t.Fatal("no message")
		return nil
	}
}

// keyGate alone: a second acquire of one key waits for the release; other
// keys pass; a cancelled wait gives up.
func TestKeyGate(t *testing.T) {
	t.Parallel()
	g := newKeyGate()
	ctx := context.Background()
	require.True(t, g.acquire(ctx, "a"))
	require.True(t, g.acquire(ctx, "b"))
	var wg sync.WaitGroup
	got := make(chan bool, 1)
	wg.Add(1)
	go func() { defer wg.Done(); got <- g.acquire(ctx, "a") }()
	select {
	case <-got:
		t.Fatal("acquired a held key")
	case <-time.After(50 * time.Millisecond): // a window for a wrong acquire to show
	}
	g.release("a")
	require.True(t, <-got)
	wg.Wait()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	assert.False(t, g.acquire(cancelled, "a"), "held again by the goroutine above")
	g.release("a")
	g.release("b")
	assert.Empty(t, g.busy, fmt.Sprint("nothing left: ", g.busy))
}
