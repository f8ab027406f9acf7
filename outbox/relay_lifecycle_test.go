package outbox

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// A relay runs once: Running closes when Run has started, a second Run
// meanwhile is refused, Close stops Run and may be called again, and Run
// after Close returns ErrRelayClosed.
func TestRelayRunsOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, SQLite, false)
	relay, err := f.ob.NewRelay(newRecorder(), RelayConfig{})
	require.NoError(t, err)
	select {
	case <-relay.Running():
		t.Fatal("Running is closed before Run")
	default:
	}
	stop := run(t, relay)
	err = relay.Run(context.Background())
	require.Error(t, err, "a second Run while the first runs")
	assert.NotErrorIs(t, err, ErrRelayClosed)
	_, err = relay.RelayBatch(context.Background())
	assert.Error(t, err, "RelayBatch while Run runs")
	assert.NoError(t, relay.Close())
	assert.NoError(t, relay.Close(), "Close twice")
	stop() // Run returned ErrRelayClosed
	assert.ErrorIs(t, relay.Run(context.Background()), ErrRelayClosed)
	_, err = relay.RelayBatch(context.Background())
	assert.ErrorIs(t, err, ErrRelayClosed)
}

// A relay closed before it ran never runs.
func TestRelayClosedBeforeRunNeverRuns(t *testing.T) {
	t.Parallel()
	f := newFixture(t, SQLite, false)
	relay, err := f.ob.NewRelay(newRecorder(), RelayConfig{})
	require.NoError(t, err)
	assert.NoError(t, relay.Close())
	assert.ErrorIs(t, relay.Run(context.Background()), ErrRelayClosed)
	select {
	case <-relay.Running():
		t.Fatal("Running is closed, yet Run never started")
	default:
	}
}

// Run, Running and Close hold up under concurrent use on every database:
// 10 goroutines each start and stop 20 relays on one outbox with rows to
// relay,
// stopping them by cancelling Run's context, by two concurrent Closes, or
// by a Close that races Run's start, and no goroutine outlives them. Not
// parallel: it counts the process's goroutines.
func TestRelayStartStopStress(t *testing.T) {
	for _, d := range []Dialect{PostgreSQL, MySQL, SQLite} {
		t.Run(d.String(), func(t *testing.T) { stressRelayLifecycle(t, d) })
	}
}

func stressRelayLifecycle(t *testing.T, d Dialect) {
	const goroutines, cycles = 10, 20
	before := runtime.NumGoroutine()
	// Registered first, so it runs last: after the fixture's database is
	// closed, with its connections.
	t.Cleanup(func() { requireGoroutinesBack(t, before) })
	f := newFixture(t, d, false)
	var entries []Entry
	for i := 0; i < 50; i++ {
		entries = append(entries, Entry{Topic: "t", Event: f.event("load.test", arc.Meta{})})
	}
	f.commit(entries...)
	rec := newRecorder()

	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < cycles; i++ {
				// One cycle in four LISTENs on PostgreSQL (each opens a
				// connection, which SCRAM makes slow under -race), so each
				// way of stopping meets a listener too.
				if !assert.NoError(t, stopRelayOnce(f, rec, fmt.Sprintf("stress-%d-%d", g, i), i%3, i%4 == 0)) {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// stopRelayOnce runs one relay and stops it the given way: 0 cancels
// Run's context once running, 1 closes it twice at once once running, 2
// closes it while Run may be starting. With listen, the relay LISTENs
// where the database can. It runs outside the test
// goroutine, so it reports instead of failing.
func stopRelayOnce(f *fixture, rec *recorder, id string, how int, listen bool) error {
	relay, err := f.ob.NewRelay(rec, RelayConfig{ConsumerID: id, Workers: 2, BatchSize: 5, DisableNotify: !listen})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- relay.Run(ctx) }()
	running := func() error {
		select {
		case <-relay.Running():
			return nil
		case <-time.After(waitTimeout):
			return fmt.Errorf("%s: Running not closed", id)
		}
	}
	switch how {
	case 0:
		if err := running(); err != nil {
			return err
		}
		cancel()
	case 1:
		if err := running(); err != nil {
			return err
		}
		other := make(chan error, 1)
		go func() { other <- relay.Close() }()
		if err := relay.Close(); err != nil {
			return err
		}
		if err := <-other; err != nil {
			return err
		}
	case 2:
		if err := relay.Close(); err != nil {
			return err
		}
	}
	select {
	case err := <-runErr:
		// Run says why it stopped: the cancel, or Close.
		if want := map[int]error{0: context.Canceled, 1: ErrRelayClosed, 2: ErrRelayClosed}[how]; err != want {
			return fmt.Errorf("%s: Run returned %v, want %v", id, err, want)
		}
	case <-time.After(waitTimeout):
		return fmt.Errorf("%s: Run did not return", id)
	}
	if err := relay.Close(); err != nil {
		return fmt.Errorf("%s: Close after Run returned: %w", id, err)
	}
	if err := relay.Run(ctx); err != ErrRelayClosed {
		return fmt.Errorf("%s: Run after Close returned %v", id, err)
	}
	return nil
}

// requireGoroutinesBack waits until no more goroutines run than before,
// and fails with every goroutine's stack if that does not happen in time.
func requireGoroutinesBack(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond) // polling the condition; the deadline bounds it
	}
}
