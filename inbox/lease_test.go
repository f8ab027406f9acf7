package inbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
)

// newLease returns a Lease with a test's own key prefix on the shared Redis.
func newLease(t *testing.T, lease time.Duration) (*Lease, *redis.Client) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	prefix := "arcmill:test:inbox:lease:" + uuid.NewString() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rdb.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		_ = rdb.Close()
	})
	l, err := NewLease(LeaseConfig{Client: rdb, Prefix: prefix, Lease: lease})
	require.NoError(t, err)
	return l, rdb
}

// After success, a redelivery is skipped; after a failure, the retry runs
// at once (the lease was released).
func TestLeaseDoneAndRelease(t *testing.T) {
	t.Parallel()
	l, _ := newLease(t, time.Minute)
	ctx := context.Background()
	ev := newEvent(t, "mail.send", arc.Meta{})
	boom := errors.New("smtp down")
	calls := 0
	fn := func(context.Context) error {
		calls++
		if calls == 1 {
			return boom
		}
		return nil
	}
	_, err := l.Process(ctx, "mailer", ev, fn)
	require.ErrorIs(t, err, boom)
	out, err := l.Process(ctx, "mailer", ev, fn)
	require.NoError(t, err)
	assert.Equal(t, Applied, out, "the failed attempt released its lease")
	out, err = l.Process(ctx, "mailer", ev, fn)
	require.NoError(t, err)
	assert.Equal(t, Duplicate, out)
	assert.Equal(t, 2, calls)
	out, err = l.Process(ctx, "other", ev, fn)
	require.NoError(t, err)
	assert.Equal(t, Applied, out, "consumers are independent")
}

// Concurrent deliveries: one runs the handler, the others are told it is
// in progress (to be retried), or find it done; none runs it again.
func TestLeaseConcurrent(t *testing.T) {
	t.Parallel()
	l, _ := newLease(t, time.Minute)
	ctx := context.Background()
	ev := newEvent(t, "mail.send", arc.Meta{})
	var runs, inProgress atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := l.Process(ctx, "mailer", ev, func(context.Context) error { runs.Add(1); return nil })
			if errors.Is(err, ErrInProgress) {
				inProgress.Add(1)
			} else {
				assert.NoError(t, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	assert.EqualValues(t, 1, runs.Load())
	t.Logf("%d deliveries told to retry", inProgress.Load())
}

// The documented limit: a delivery that took the lease and died before
// "done" blocks redeliveries until the lease lapses; then the handler
// runs again.
func TestLeaseLapsesAfterCrash(t *testing.T) {
	t.Parallel()
	// Long enough for the first Process to find the record still there on
	// a loaded machine; the test waits it out once.
	const lease = time.Second
	l, rdb := newLease(t, lease)
	ctx := context.Background()
	ev := newEvent(t, "mail.send", arc.Meta{})
	key := l.cfg.Prefix + "mailer:" + Key(ev)
	// What a crashed delivery leaves: its processing record.
	require.NoError(t, rdb.Set(ctx, key, leaseProcessing+"dead", lease).Err())
	ran := false
	_, err := l.Process(ctx, "mailer", ev, func(context.Context) error { ran = true; return nil })
	require.ErrorIs(t, err, ErrInProgress)
	assert.False(t, ran)
	deadline := time.Now().Add(waitTimeout)
	for rdb.Exists(ctx, key).Val() == 1 {
		require.True(t, time.Now().Before(deadline), "the lease lapses")
		time.Sleep(10 * time.Millisecond)
	}
	out, err := l.Process(ctx, "mailer", ev, func(context.Context) error { ran = true; return nil })
	require.NoError(t, err)
	assert.Equal(t, Applied, out)
	assert.True(t, ran, "after the lease, the handler runs again: at most once per lease window")
}

// A handler slower than the lease keeps it: the lease is renewed while it
// runs, so a concurrent delivery is still told it is in progress.
func TestLeaseRenewedWhileRunning(t *testing.T) {
	t.Parallel()
	// Renewed every lease/3: a lease this long survives a renewal stalled
	// by hundreds of ms on a loaded machine.
	const lease = 900 * time.Millisecond
	l, _ := newLease(t, lease)
	ctx := context.Background()
	ev := newEvent(t, "mail.send", arc.Meta{})
	_, err := l.Process(ctx, "mailer", ev, func(context.Context) error {
		began := time.Now()
		for time.Since(began) < 2*lease { // running past the lease is the condition under test
			time.Sleep(10 * time.Millisecond)
		}
		_, err := l.Process(ctx, "mailer", ev, func(context.Context) error {
			t.Error("a second delivery ran while the first was alive")
			return nil
		})
		assert.ErrorIs(t, err, ErrInProgress)
		return nil
	})
	require.NoError(t, err)
}

// A handler that panics under a Lease releases its record as the panic
// goes up (to a Recoverer): the panic is not swallowed, the renewal stops,
// and the next delivery runs the handler at once, long before the lease
// could have lapsed. A renewal left running would keep the event "in
// progress" for as long as the process lives.
func TestLeasePanicReleasesTheLease(t *testing.T) {
	t.Parallel()
	l, rdb := newLease(t, time.Hour)
	ctx := context.Background()
	ev := newEvent(t, "mail.send", arc.Meta{})
	recovered := func() (r any) {
		defer func() { r = recover() }() // as middleware.Recoverer does
		_, _ = l.Process(ctx, "mailer", ev, func(context.Context) error { panic("boom") })
		return nil
	}()
	require.Equal(t, "boom", recovered, "the panic goes on up")
	assert.Zero(t, rdb.Exists(ctx, l.cfg.Prefix+"mailer:"+Key(ev)).Val(), "the record is released")
	ran := false
	out, err := l.Process(ctx, "mailer", ev, func(context.Context) error { ran = true; return nil })
	require.NoError(t, err)
	assert.Equal(t, Applied, out)
	assert.True(t, ran, "the next delivery runs the handler at once")
}

// ErrInProgress is a wait, not the event's failure: it matches
// middleware.ErrTransient, so Retry waits for the holder without spending
// the event's retries (a redelivery of an event another consumer is still
// handling would otherwise be exhausted and dead-lettered while it is being
// applied), and once the holder is done the waiting delivery is skipped.
func TestLeaseInProgressCostsNoAttempts(t *testing.T) {
	t.Parallel()
	l, _ := newLease(t, time.Minute)
	ev := newEvent(t, "order.created", arc.Meta{})
	release, started := make(chan struct{}), make(chan struct{})
	let := sync.OnceFunc(func() { close(release) })
	t.Cleanup(let) // the holder ends even if the test fails early
	holder := make(chan error, 1)
	go func() {
		_, err := l.Process(context.Background(), "mailer", ev, func(context.Context) error {
			close(started)
			<-release
			return nil
		})
		holder <- err
	}()
	<-started

	retry, err := middleware.NewRetry(middleware.RetryConfig{MaxRetries: 2, Backoff: time.Millisecond,
		MaxBackoff: time.Millisecond, OutageBackoff: time.Millisecond, OutageMaxBackoff: 5 * time.Millisecond,
		OnOutage: func(i middleware.RetryInfo) {
			if i.Outage == 5 { // the waiting delivery has met the holder a few times: let it finish
				let()
			}
		}})
	require.NoError(t, err)
	m, err := arc.ToMessage(ev)
	require.NoError(t, err)
	var calls atomic.Int32
	_, err = retry.Middleware(l.Middleware("mailer")(func(*message.Message) ([]*message.Message, error) {
		calls.Add(1)
		return nil, nil
	}))(m)
	require.NoError(t, err, "waited for the holder, then skipped as a duplicate")
	require.NoError(t, <-holder)
	assert.Zero(t, calls.Load(), "the holder applied it; the waiting delivery did not run it again")
	assert.Zero(t, retry.Retried(), "no retry spent on ErrInProgress")
	assert.GreaterOrEqual(t, retry.OutageWaits(), uint64(5))

	err = fmt.Errorf("wrapped: %w", ErrInProgress)
	assert.ErrorIs(t, err, middleware.ErrTransient)
	assert.True(t, middleware.IsTransportError(err))
	assert.NotErrorIs(t, middleware.Transient(errors.New("other")), ErrInProgress)
}

func TestLeaseConfig(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for name, cfg := range map[string]LeaseConfig{
		"client":    {},
		"lease":     {Client: rdb, Lease: time.Millisecond},
		"retention": {Client: rdb, Lease: time.Hour, Retention: time.Minute},
	} {
		_, err := NewLease(cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, name)
	}
	l, err := NewLease(LeaseConfig{Client: rdb})
	require.NoError(t, err)
	_, err = l.Process(context.Background(), "c", newEvent(t, "x", arc.Meta{}), func(context.Context) error { return nil })
	require.Error(t, err, "Redis down: an error, the delivery is retried")
	assert.NotErrorIs(t, err, ErrInProgress)
}

// The wildcard and middleware forms: a redelivery is skipped; the
// middleware passes returned messages on to the router.
func TestLeaseForms(t *testing.T) {
	t.Parallel()
	l, _ := newLease(t, time.Minute)
	ctx := context.Background()
	ev := newEvent(t, "mail.send", arc.Meta{})
	runs := 0
	h := l.Handle("mailer", func(context.Context, arc.Event) error { runs++; return nil })
	require.NoError(t, h(ctx, ev))
	require.NoError(t, h(ctx, ev))
	assert.Equal(t, 1, runs)

	mw := l.Middleware("notifier")(func(msg *message.Message) ([]*message.Message, error) {
		runs++
		return []*message.Message{message.NewMessage("out", nil)}, nil
	})
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	out, err := mw(msg)
	require.NoError(t, err)
	assert.Len(t, out, 1, "returned messages go to the router")
	out, err = mw(msg)
	require.NoError(t, err)
	assert.Empty(t, out, "a duplicate returns nothing")
	assert.Equal(t, 2, runs)
}
