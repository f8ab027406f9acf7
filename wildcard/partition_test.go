package wildcard

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// eagerSubscriber delivers every message at once, without waiting for acks,
// as a batching subscriber does: the case where Workers matter.
type eagerSubscriber struct {
	msgs []*message.Message
}

func (s *eagerSubscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	out := make(chan *message.Message, len(s.msgs))
	for _, m := range s.msgs {
		out <- m
	}
	go func() { <-ctx.Done(); close(out) }()
	return out, nil
}

func (s *eagerSubscriber) Close() error { return nil }

// Same partition key: in order, one at a time. Different keys: in parallel,
// never more than Workers at once.
func TestWorkersKeepPartitionOrder(t *testing.T) {
	t.Parallel()
	const keys, perKey, workers = 6, 20, 3
	sub := &eagerSubscriber{}
	for i := 0; i < perKey; i++ {
		for k := 0; k < keys; k++ {
			ev, err := arc.NewEvent("order.updated", map[string]int{"seq": i}, arc.Meta{PartitionKey: fmt.Sprint("order-", k)})
			require.NoError(t, err)
			msg, err := arc.ToMessage(ev)
			require.NoError(t, err)
			sub.msgs = append(sub.msgs, msg)
		}
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	wr, err := NewRouter(router, Config{Workers: workers})
	require.NoError(t, err)

	var (
		mu       sync.Mutex
		order    = map[string][]int{}
		inFlight atomic.Int32
		peak     atomic.Int32
		total    atomic.Int32
	)
	_, err = wr.Subscribe(sub, "t", "order.*", Typed(func(_ context.Context, ev arc.Event, p struct{ Seq int }) error {
		n := inFlight.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(time.Millisecond)
		mu.Lock()
		order[ev.Meta.PartitionKey] = append(order[ev.Meta.PartitionKey], p.Seq)
		mu.Unlock()
		inFlight.Add(-1)
		total.Add(1)
		return nil
	}))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = wr.Run(ctx) }()
	require.Eventually(t, func() bool { return total.Load() == keys*perKey }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, router.Close())

	for k, seqs := range order {
		for i, s := range seqs {
			require.Equal(t, i, s, "partition %s out of order: %v", k, seqs)
		}
	}
	assert.LessOrEqual(t, peak.Load(), int32(workers))
	assert.Greater(t, peak.Load(), int32(1), "different keys ran in parallel")
}

// keyOrderedSubscriber is an eagerSubscriber that says it orders by key
// itself, as arcmill's Redis Streams Subscriber does.
type keyOrderedSubscriber struct{ eagerSubscriber }

func (*keyOrderedSubscriber) OrdersByPartitionKey() bool { return true }

// A KeyOrderedSubscriber is read directly: no lanes, so Workers does not
// bound it (the subscriber does); with a PartitionKey of the caller's the
// router cannot trust the subscriber's order and uses its lanes.
func TestKeyOrderedSubscriberIsReadDirectly(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		cfg        Config
		concurrent bool
	}{
		"default key":  {Config{Workers: 1}, true},
		"own key func": {Config{Workers: 1, PartitionKey: DefaultPartitionKey}, false},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sub := &keyOrderedSubscriber{}
			for _, k := range []string{"a", "b"} {
				sub.msgs = append(sub.msgs, mustMessage(t, mustEvent(t, "order.updated", nil, arc.Meta{PartitionKey: k})))
			}
			router, wr := mustRouters(t, tc.cfg)
			both := make(chan struct{})
			var concurrent atomic.Bool
			var inFlight, done atomic.Int32
			_, err := wr.Subscribe(sub, "t", "order.*", func(context.Context, arc.Event) error {
				defer inFlight.Add(-1)
				if inFlight.Add(1) == 2 {
					close(both)
				}
				// Expected together, the other may start late on a loaded
				// machine: wait for it. Expected one at a time, the other
				// cannot start meanwhile: a short window shows a wrong one.
				window := 200 * time.Millisecond
				if tc.concurrent {
					window = waitTimeout
				}
				select {
				case <-both:
					concurrent.Store(true)
				case <-time.After(window):
				}
				done.Add(1)
				return nil
			})
			require.NoError(t, err)
			go func() { _ = wr.Run(context.Background()) }()
			require.Eventually(t, func() bool { return done.Load() == 2 }, waitTimeout, pollInterval)
			require.NoError(t, router.Close())
			assert.Equal(t, tc.concurrent, concurrent.Load())
		})
	}
}
