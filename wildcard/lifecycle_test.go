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
	"github.com/arcmill/arcmill/internal/leaktest"
)

// Tests of the router's lifecycle: Run, Running, Handle and unsubscribe
// at run time, Close.

const (
	// waitTimeout bounds every wait for something that should happen, with
	// seconds to spare on a loaded machine: a wait ends at the event.
	waitTimeout = 30 * time.Second
	// pollInterval is how often a condition is checked.
	pollInterval = 5 * time.Millisecond
	// closeTimeout is the message.Router's CloseTimeout in these tests:
	// long, since a Close that times out fails them, and a loaded machine
	// can take seconds to stop handlers that did nothing wrong.
	closeTimeout = 10 * time.Second
	// maxRacingSubscriptions bounds the subscriptions one iteration makes
	// while Run starts: a slow, loaded machine would otherwise make
	// thousands.
	maxRacingSubscriptions = 20
)

func mustEvent(t testing.TB, typ string, payload any, meta arc.Meta) arc.Event {
	t.Helper()
	ev, err := arc.NewEvent(typ, payload, meta)
	require.NoError(t, err)
	return ev
}

func mustMessage(t testing.TB, ev arc.Event) *message.Message {
	t.Helper()
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	return msg
}

func mustRouters(t testing.TB, cfg Config) (*message.Router, *Router) {
	t.Helper()
	mr, err := message.NewRouter(message.RouterConfig{CloseTimeout: closeTimeout}, watermill.NopLogger{})
	require.NoError(t, err)
	wr, err := NewRouter(mr, cfg)
	require.NoError(t, err)
	return mr, wr
}

func waitClosed(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("%s: not within %v", what, waitTimeout)
	}
}

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
	t.Parallel()
	ev := mustEvent(t, "order.created", nil, arc.Meta{})
	for i := 0; i < 200; i++ {
		_, wr := mustRouters(t, Config{})
		ps := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
		var ran atomic.Int64
		unsub, err := wr.Subscribe(ps, "t", "*", func(context.Context, arc.Event) error { ran.Add(1); return nil })
		require.NoError(t, err)
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
					msg, err := arc.ToMessage(ev)
					if err != nil {
						panic(err) // not require: this is not the test's goroutine
					}
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
		// Unsubscribe while dispatches run: once the first has finished.
		for acked.Load()+nacked.Load() == 0 {
			runtime.Gosched()
		}
		unsub()
		stop.Store(true)
		cancel() // ends the dispatches paused for want of a handler
		wg.Wait()
		require.Zero(t, wr.Stats().Unmatched, "iteration %d", i)
		require.Equal(t, ran.Load(), acked.Load(), "iteration %d: every ack was a handled event", i)
		require.NoError(t, ps.Close())
	}
}

// Unsubscribe racing Run: no data race (the race detector watches).
func TestUnsubscribeRacingRun(t *testing.T) {
	t.Parallel()
	for i := 0; i < 100; i++ {
		ps := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
		mr, wr := mustRouters(t, Config{})
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
	t.Parallel()
	for i := 0; i < 100; i++ {
		ps := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
		mr, wr := mustRouters(t, Config{})
		_, err := wr.Subscribe(ps, "t0", "*", func(context.Context, arc.Event) error { return nil })
		require.NoError(t, err)
		go func() { _ = wr.Run(context.Background()) }()
		var srcs []*source
		for j := 1; j <= maxRacingSubscriptions && !mr.IsRunning(); j++ {
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
			case <-time.After(waitTimeout):
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
	t.Parallel()
	ps := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { require.NoError(t, ps.Close()) })
	mr, wr := mustRouters(t, Config{})
	_, err := wr.Subscribe(ps, "keep", "*", func(context.Context, arc.Event) error { return nil })
	require.NoError(t, err)
	go func() { _ = wr.Run(context.Background()) }()
	waitClosed(t, wr.Running(), "Running")

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
	require.Eventually(t, func() bool { return goodRuns.Load() == 1 }, waitTimeout, pollInterval)
	assert.Zero(t, badRuns.Load(), "the handler whose Handle failed never runs")

	start := time.Now()
	require.NoError(t, mr.Close())
	assert.Less(t, time.Since(start), closeTimeout/2, "no handler left unstarted to time Close out")
}

// Workers 1 (Watermill's rule, for those who ask) means one at a time, in
// order, even from a subscriber that delivers ahead of acknowledgements.
func TestWorkersOneIsOneAtATime(t *testing.T) {
	t.Parallel()
	sub := &eagerSubscriber{}
	for i := 0; i < 50; i++ {
		ev := mustEvent(t, "order.updated", map[string]int{"seq": i}, arc.Meta{PartitionKey: "k"})
		sub.msgs = append(sub.msgs, mustMessage(t, ev))
	}
	router, wr := mustRouters(t, Config{Workers: 1})
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
	require.Eventually(t, func() bool { return total.Load() == 50 }, waitTimeout, pollInterval)
	require.NoError(t, router.Close())
	assert.Equal(t, int32(1), peak.Load())
	for i, s := range seqs {
		require.Equal(t, i, s)
	}
}

// requireNoWildcardGoroutines waits, up to waitTimeout, for every
// goroutine of the package's own code to end.
func requireNoWildcardGoroutines(t *testing.T) {
	t.Helper()
	leaktest.RequireNone(t, "github.com/arcmill/arcmill/wildcard", waitTimeout)
}

// No goroutine is left after Close, with one lane or several, after
// unsubscribing and subscribing again; nothing acked was unprocessed.
func TestNoGoroutineLeftAfterClose(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprint("workers=", workers), func(t *testing.T) {
			sub := &eagerSubscriber{}
			for i := 0; i < 200; i++ {
				ev := mustEvent(t, "order.updated", nil, arc.Meta{PartitionKey: fmt.Sprint(i % 7)})
				sub.msgs = append(sub.msgs, mustMessage(t, ev))
			}
			router, wr := mustRouters(t, Config{Workers: workers})
			var mu sync.Mutex
			processed := map[string]bool{}
			handler := func(_ context.Context, ev arc.Event) error {
				mu.Lock()
				processed[ev.Meta.ID] = true
				mu.Unlock()
				return nil
			}
			count := func() int { mu.Lock(); defer mu.Unlock(); return len(processed) }
			unsub, err := wr.Subscribe(sub, "t", "order.*", handler)
			require.NoError(t, err)
			done := make(chan struct{})
			go func() { _ = wr.Run(context.Background()); close(done) }()
			require.Eventually(t, func() bool { return count() > 50 }, waitTimeout, time.Millisecond)
			unsub()
			_, err = wr.Subscribe(sub, "t", "order.*", handler)
			require.NoError(t, err)
			require.Eventually(t, func() bool { return count() == 200 }, waitTimeout, time.Millisecond)
			require.NoError(t, router.Close())
			waitClosed(t, done, "Run returning")
			for _, m := range sub.msgs {
				select {
				case <-m.Acked():
					mu.Lock()
					assert.True(t, processed[m.UUID], "acked but not processed")
					mu.Unlock()
				default:
				}
			}
			requireNoWildcardGoroutines(t)
		})
	}
}

// Run, Handle and Close called at the same time, over and over (10
// goroutines × 20 cycles, as River's startstoptest): no panic, no race,
// Close is idempotent, Running closes whenever Run started, Handle after
// Close fails with ErrRouterClosed, and no goroutine is left.
func TestConcurrentRunHandleCloseLeavesNothing(t *testing.T) {
	const goroutines, cycles = 10, 20
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := 0; c < cycles; c++ {
				if !stressCycle(t) {
					return
				}
			}
		}()
	}
	wg.Wait()
	requireNoWildcardGoroutines(t)
}

// stressCycle runs one router's life with its calls racing; it reports
// false once the test has failed.
func stressCycle(t *testing.T) bool {
	ps := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer func() { assert.NoError(t, ps.Close()) }()
	mr, err := message.NewRouter(message.RouterConfig{CloseTimeout: closeTimeout}, watermill.NopLogger{})
	if !assert.NoError(t, err) {
		return false
	}
	wr, err := NewRouter(mr, Config{})
	if !assert.NoError(t, err) {
		return false
	}
	noop := func(context.Context, arc.Event) error { return nil }
	if _, err := wr.Subscribe(ps, "t0", "*", noop); !assert.NoError(t, err) {
		return false
	}
	runDone := make(chan error, 1)
	go func() { runDone <- wr.Run(context.Background()) }()
	var calls sync.WaitGroup
	for i := 1; i <= 3; i++ {
		calls.Add(1)
		go func() {
			defer calls.Done()
			_, err := wr.Subscribe(ps, fmt.Sprint("t", i), "order.*", noop)
			if err != nil {
				assert.ErrorIs(t, err, ErrRouterClosed)
			}
		}()
	}
	for i := 0; i < 2; i++ { // two Closes at once: idempotent
		calls.Add(1)
		go func() {
			defer calls.Done()
			select {
			case <-wr.Running():
			case <-time.After(waitTimeout):
				assert.Fail(t, "Running never closed")
			}
			assert.NoError(t, wr.Close())
		}()
	}
	calls.Wait()
	select {
	case err := <-runDone:
		assert.NoError(t, err)
	case <-time.After(waitTimeout):
		assert.Fail(t, "Run did not return after Close")
		return false
	}
	assert.NoError(t, wr.Close(), "Close after Close")
	select {
	case <-wr.Closed():
	default:
		assert.Fail(t, "Closed not closed after Run returned")
	}
	_, err = wr.Subscribe(ps, "late", "*", noop)
	assert.ErrorIs(t, err, ErrRouterClosed)
	return !t.Failed()
}

// Running closes only once every subscription made before Run reads its
// subscriber: a GoChannel, which keeps nothing for absent readers,
// delivers what is published right after.
func TestRunningMeansSubscribed(t *testing.T) {
	t.Parallel()
	ps := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { require.NoError(t, ps.Close()) })
	mr, wr := mustRouters(t, Config{})
	got := make(chan string, 1)
	_, err := wr.Subscribe(ps, "t", "*", func(_ context.Context, ev arc.Event) error { got <- ev.Type; return nil })
	require.NoError(t, err)
	select {
	case <-wr.Running():
		t.Fatal("Running closed before Run")
	default:
	}
	go func() { _ = wr.Run(context.Background()) }()
	waitClosed(t, wr.Running(), "Running")
	publishTo(t, ps, "t", "order.created")
	select {
	case typ := <-got:
		assert.Equal(t, "order.created", typ)
	case <-time.After(waitTimeout):
		t.Fatal("an event published right after Running was lost")
	}
	require.NoError(t, mr.Close())
}

// Closed closes once Run has returned, and on Close of a router that never
// ran.
func TestClosedClosesWhenTheRouterStops(t *testing.T) {
	t.Parallel()
	_, never := mustRouters(t, Config{})
	require.NoError(t, never.Close())
	waitClosed(t, never.Closed(), "Closed of a router that never ran")

	_, wr := mustRouters(t, Config{})
	ps := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { require.NoError(t, ps.Close()) })
	_, err := wr.Subscribe(ps, "t", "*", func(context.Context, arc.Event) error { return nil })
	require.NoError(t, err)
	go func() { assert.NoError(t, wr.Run(context.Background())) }()
	waitClosed(t, wr.Running(), "Running")
	select {
	case <-wr.Closed():
		t.Fatal("Closed before Close")
	default:
	}
	require.NoError(t, wr.Close())
	waitClosed(t, wr.Closed(), "Closed after Close")
}
