package natsjs

import (
	"strconv"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// item is a received message numbered n, for the queue alone (no server).
func item(n int) *received {
	id := strconv.Itoa(n)
	return &received{raw: &nats.Msg{Subject: id}, msg: message.NewMessage(id, nil), delivered: 1}
}

// The queue hands messages out in arrival order, signals ready when it
// holds some, snapshots without removing, and on stop returns what waited
// and refuses the rest (whose callers nack them).
func TestWaiting_OrderSnapshotStop(t *testing.T) {
	t.Parallel()
	w := newWaiting()
	assert.Nil(t, w.pop())
	select {
	case <-w.ready:
		t.Fatal("ready while empty")
	default:
	}
	for i := range 3 {
		require.True(t, w.push(item(i)))
	}
	select {
	case <-w.ready:
	default:
		t.Fatal("not ready after a push")
	}
	assert.Equal(t, "0", w.pop().msg.UUID)
	snap := w.snapshot()
	require.Len(t, snap, 2)
	assert.Equal(t, "1", snap[0].msg.UUID)
	snap[0] = nil // a copy: the queue keeps its own
	assert.Len(t, w.snapshot(), 2)

	left := w.stop()
	require.Len(t, left, 2)
	assert.Equal(t, []string{"1", "2"}, []string{left[0].msg.UUID, left[1].msg.UUID})
	assert.False(t, w.push(item(3)), "refused after stop")
	assert.Nil(t, w.pop())
	assert.Empty(t, w.stop(), "a second stop nacks nothing twice")
}

// Pushes from nats.go's goroutine while the consumption pops: nothing is
// lost or duplicated, and the order of each pusher is kept.
func TestWaiting_ConcurrentPushPop(t *testing.T) {
	t.Parallel()
	const n = 10000
	w := newWaiting()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			w.push(item(i))
		}
	}()
	next := 0
	for next < n {
		<-w.ready
		for r := w.pop(); r != nil; r = w.pop() {
			require.Equal(t, strconv.Itoa(next), r.msg.UUID)
			next++
		}
	}
	wg.Wait()
	assert.Nil(t, w.pop())
}
