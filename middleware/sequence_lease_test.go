package middleware

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
)

// TestSequenceDrainLeaseRenewedAcrossQuickEvents: a drain of many quick
// events lasts many Leases; its lease must be renewed for the whole drain
// (not only while one handler call runs), so that a second instance never
// drains the same sequence at once: each event runs once, in order.
func TestSequenceDrainLeaseRenewedAcrossQuickEvents(t *testing.T) {
	client, prefix := seqRedis(t, "seqlease")
	ctx := context.Background()
	st := newSequenceStore(client, prefix, "g", "h")
	ok, err := st.park(ctx, "K", "head", []byte(`{}`), time.Now())
	require.NoError(t, err)
	require.True(t, ok)
	// The drain (n events of 20 ms) lasts three Leases: a lease renewed
	// only while a handler runs (never, its ticker is Lease/3) is lost
	// after one. The Lease is long enough that a renewal stalled on a
	// loaded machine does not lose it either.
	const n, lease = 150, time.Second
	for i := 0; i < n; i++ {
		m := message.NewMessage(fmt.Sprintf("e%03d", i), []byte(fmt.Sprint(i)))
		m.Metadata.Set(MetadataOriginalID, fmt.Sprintf("1-%d", i))
		m.Metadata.Set("partitionKey", "K")
		e, _ := encodeParked(m)
		v, err := st.gate(ctx, "K", m.UUID, parkedID(m), e, parkedPosition(m))
		require.NoError(t, err)
		require.Equal(t, gateParked, v)
	}
	var running, maxRunning atomic.Int32
	var mu sync.Mutex
	var order []string
	h := func(m *message.Message) ([]*message.Message, error) {
		r := running.Add(1)
		for {
			old := maxRunning.Load()
			if r <= old || maxRunning.CompareAndSwap(old, r) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		order = append(order, m.UUID)
		mu.Unlock()
		running.Add(-1)
		return nil, nil
	}
	mk := func() *Sequencer {
		s, err := NewSequencer(SequenceConfig{Client: client, Handler: "h", Group: "g", Prefix: prefix,
			Lease: lease, PollInterval: 50 * time.Millisecond})
		require.NoError(t, err)
		s.Middleware(h)
		return s
	}
	a := mk()
	defer a.Close()
	n0, err := st.release(ctx, "K")
	require.NoError(t, err)
	require.EqualValues(t, n, n0)
	// The second instance starts once the first is draining.
	require.Eventually(t, func() bool { return a.Stats().Drained > 0 }, 30*time.Second, 5*time.Millisecond)
	b := mk()
	defer b.Close()
	require.Eventually(t, func() bool {
		ex, _ := client.Exists(ctx, st.keys("K")[0]).Result()
		return ex == 0
	}, 30*time.Second, 50*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	inversions := 0
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] {
			inversions++
		}
	}
	t.Logf("handled %d for %d parked, max concurrent %d, completions out of order %d", len(order), n, maxRunning.Load(), inversions)
	require.EqualValues(t, 1, maxRunning.Load(), "two instances drained one key at once")
	require.Len(t, order, n, "events ran more than once")
	require.Zero(t, inversions, "events ran out of order")
}
