package inbox

import (
	"context"
	"errors"
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
	const lease = 300 * time.Millisecond
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
	const lease = 150 * time.Millisecond
	l, _ := newLease(t, lease)
	ctx := context.Background()
	ev := newEvent(t, "mail.send", arc.Meta{})
	_, err := l.Process(ctx, "mailer", ev, func(context.Context) error {
		began := time.Now()
		for time.Since(began) < 4*lease { // running past the lease is the condition under test
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
