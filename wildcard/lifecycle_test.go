package wildcard

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// Regression tests for the review of the router's lifecycle.

func publishTo(t *testing.T, ps message.Publisher, topic, typ string) {
	t.Helper()
	ev, err := arc.NewEvent(typ, map[string]int{"a": 1}, arc.Meta{})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	require.NoError(t, ps.Publish(topic, msg))
}

// The last handler unsubscribing while events are dispatched: every event
// is either handled or nacked, never acked as unmatched.
func TestUnsubscribingTheLastHandlerNeverAcksUnprocessed(t *testing.T) {
	ev, _ := arc.NewEvent("order.created", nil, arc.Meta{})
	for i := 0; i < 200; i++ {
		mr, _ := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		wr, _ := NewRouter(mr, Config{})
		ps := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
		var ran atomic.Int64
		unsub, _ := wr.Subscribe(ps, "t", "*", func(context.Context, arc.Event) error { ran.Add(1); return nil })
		src := wr.sources[sourceKey{ps, "t"}]
		ctx, cancel := context.WithCancel(context.Background())
		var acked, nacked atomic.Int64
		var stop atomic.Bool
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					msg, _ := arc.ToMessage(ev)
					msg.SetContext(ctx)
					if err := src.dispatch(msg); err != nil {
						require.ErrorIs(t, err, ErrNoHandlers)
						nacked.Add(1)
					} else {
						acked.Add(1)
					}
				}
			}()
		}
		time.Sleep(20 * time.Microsecond)
		unsub()
		stop.Store(true)
		cancel() // ends the dispatches paused for want of a handler
		wg.Wait()
		require.Zero(t, wr.Stats().Unmatched, "iteration %d", i)
		require.Equal(t, ran.Load(), acked.Load(), "iteration %d: every ack was a handled event", i)
		_ = ps.Close()
	}
}

// Unsubscribe racing Run: no data race (the race detector watches).
func TestUnsubscribeRacingRun(t *testing.T) {
	for i := 0; i < 100; i++ {
		ps := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
		mr, _ := message.NewRouter(message.RouterConfig{CloseTimeout: time.Second}, watermill.NopLogger{})
		wr, _ := NewRouter(mr, Config{})
		unsub, err := wr.Subscribe(ps, "t", "*", func(context.Context, arc.Event) error { return nil })
		require.NoError(t, err)
		src := wr.sources[sourceKey{ps, "t"}]
		go func() { _ = wr.Run(context.Background()) }()
		<-src.wm.Started()
		unsub()
		<-mr.Running()
		require.NoError(t, mr.Close())
		require.NoError(t, ps.Close())
	}
}

// Subscriptions made while Run starts up are all started.
func TestSubscribeRacingRunIsStarted(t *testing.T) {
	for i := 0; i < 100; i++ {
		ps := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
		mr, _ := message.NewRouter(message.RouterConfig{CloseTimeout: time.Second}, watermill.NopLogger{})
		wr, _ := NewRouter(mr, Config{})
		_, _ = wr.Subscribe(ps, "t0", "*", func(context.Context, arc.Event) error { return nil })
		go func() { _ = wr.Run(context.Background()) }()
		var srcs []*source
		for j := 1; !mr.IsRunning(); j++ {
			topic := fmt.Sprint("t", j)
			_, err := wr.Subscribe(ps, topic, "*", func(context.Context, arc.Event) error { return nil })
			require.NoError(t, err)
			wr.mu.Lock()
			srcs = append(srcs, wr.sources[sourceKey{ps, topic}])
			wr.mu.Unlock()
		}
		for _, s := range srcs {
			select {
			case <-s.wm.Started():
			case <-time.After(2 * time.Second):
				t.Fatalf("iteration %d: %s never started", i, s.name)
			}
		}
		require.NoError(t, mr.Close())
		require.NoError(t, ps.Close())
	}
}

type failingSubscriber struct {
	message.Subscriber
	fail atomic.Bool
}

func (f *failingSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if f.fail.Load() {
		return nil, errors.New("broker refused the subscription")
	}
	return f.Subscriber.Subscribe(ctx, topic)
}

// A subscription that fails at run time is reported by Handle, its handler
// never runs, and neither later subscriptions nor Close suffer.
func TestFailedRunTimeSubscription(t *testing.T) {
	ps := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer ps.Close()
	mr, _ := message.NewRouter(message.RouterConfig{CloseTimeout: 2 * time.Second}, watermill.NopLogger{})
	wr, _ := NewRouter(mr, Config{})
	_, err := wr.Subscribe(ps, "keep", "*", func(context.Context, arc.Event) error { return nil })
	require.NoError(t, err)
	go func() { _ = wr.Run(context.Background()) }()
	<-mr.Running()

	fs := &failingSubscriber{Subscriber: ps}
	fs.fail.Store(true)
	var badRuns atomic.Int32
	_, err = wr.Subscribe(fs, "bad", "*", func(context.Context, arc.Event) error { badRuns.Add(1); return nil })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "broker refused the subscription")

	fs.fail.Store(false)
	var goodRuns atomic.Int32
	_, err = wr.Subscribe(fs, "bad", "*", func(context.Context, arc.Event) error { goodRuns.Add(1); return nil })
	require.NoError(t, err, "the same source works once the failure clears")
	wr.mu.Lock()
	src := wr.sources[sourceKey{fs, "bad"}]
	wr.mu.Unlock()
	<-src.wm.Started()
	publishTo(t, ps, "bad", "x")
	require.Eventually(t, func() bool { return goodRuns.Load() == 1 }, 2*time.Second, 5*time.Millisecond)
	assert.Zero(t, badRuns.Load(), "the handler whose Handle failed never runs")

	start := time.Now()
	require.NoError(t, mr.Close())
	assert.Less(t, time.Since(start), time.Second, "no handler left unstarted to time Close out")
}

// Workers 1 (the default) means one at a time, in order, even from a
// subscriber that delivers ahead of acknowledgements.
func TestWorkersOneIsOneAtATime(t *testing.T) {
	sub := &eagerSubscriber{}
	for i := 0; i < 50; i++ {
		ev, _ := arc.NewEvent("order.updated", map[string]int{"seq": i}, arc.Meta{PartitionKey: "k"})
		msg, _ := arc.ToMessage(ev)
		sub.msgs = append(sub.msgs, msg)
	}
	router, _ := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	wr, _ := NewRouter(router, Config{})
	var inFlight, peak, total atomic.Int32
	var mu sync.Mutex
	var seqs []int
	_, err := wr.Subscribe(sub, "t", "order.*", Typed(func(_ context.Context, ev arc.Event, p struct{ Seq int }) error {
		n := inFlight.Add(1)
		for old := peak.Load(); n > old && !peak.CompareAndSwap(old, n); old = peak.Load() {
		}
		time.Sleep(100 * time.Microsecond)
		mu.Lock()
		seqs = append(seqs, p.Seq)
		mu.Unlock()
		inFlight.Add(-1)
		total.Add(1)
		return nil
	}))
	require.NoError(t, err)
	go func() { _ = wr.Run(context.Background()) }()
	require.Eventually(t, func() bool { return total.Load() == 50 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, router.Close())
	assert.Equal(t, int32(1), peak.Load())
	for i, s := range seqs {
		require.Equal(t, i, s)
	}
}

// No goroutine is left after Close, with one lane or several, after
// unsubscribing and subscribing again; nothing acked was unprocessed.
func TestNoGoroutineLeftAfterClose(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprint("workers=", workers), func(t *testing.T) {
			before := runtime.NumGoroutine()
			sub := &eagerSubscriber{}
			for i := 0; i < 200; i++ {
				ev, _ := arc.NewEvent("order.updated", nil, arc.Meta{PartitionKey: fmt.Sprint(i % 7)})
				msg, _ := arc.ToMessage(ev)
				sub.msgs = append(sub.msgs, msg)
			}
			router, _ := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
			wr, _ := NewRouter(router, Config{Workers: workers})
			var mu sync.Mutex
			processed := map[string]bool{}
			handler := func(_ context.Context, ev arc.Event) error {
				mu.Lock()
				processed[ev.Meta.ID] = true
				mu.Unlock()
				return nil
			}
			unsub, err := wr.Subscribe(sub, "t", "order.*", handler)
			require.NoError(t, err)
			done := make(chan struct{})
			go func() { _ = wr.Run(context.Background()); close(done) }()
			require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(processed) > 50 }, 5*time.Second, time.Millisecond)
			unsub()
			_, err = wr.Subscribe(sub, "t", "order.*", handler)
			require.NoError(t, err)
			require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(processed) == 200 }, 5*time.Second, time.Millisecond)
			require.NoError(t, router.Close())
			<-done
			for _, m := range sub.msgs {
				select {
				case <-m.Acked():
					mu.Lock()
					assert.True(t, processed[m.UUID], "acked but not processed")
					mu.Unlock()
				default:
				}
			}
			// Polled here: Eventually runs its condition on goroutines of its own.
			deadline := time.Now().Add(2 * time.Second)
			for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			assert.LessOrEqual(t, runtime.NumGoroutine(), before, "goroutines left after Close")
		})
	}
}
