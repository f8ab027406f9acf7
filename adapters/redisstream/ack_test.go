package redisstream

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/internal/testsignal"
)

// outage is a go-redis Limiter that fails or holds new connections on
// demand: Redis itself stays up, the client just cannot reach it.
type outage struct {
	down atomic.Bool
	hold chan struct{} // when set, connecting waits for it to close
}

var errOutage = errors.New("test: Redis unreachable")

func (o *outage) Allow() error {
	if o.hold != nil {
		<-o.hold
	}
	if o.down.Load() {
		return errOutage
	}
	return nil
}

func (o *outage) ReportResult(error) {}

// ackerBundle is an acker on the bundle's stream, with n entries read by
// consumer "me" and pending, and a client that an outage can cut.
func (b *bundle) acker(n int, cfg ackerConfig, cut *outage) (*acker, []string, *testsignal.Signal[int]) {
	b.t.Helper()
	ids := b.publish("order.placed", n)
	b.readAs("g", "me", n)
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(b.t), Limiter: cut})
	b.t.Cleanup(func() { _ = client.Close() })
	var flushed testsignal.Signal[int]
	flushed.Init(b.t)
	cfg.Client, cfg.Stream, cfg.Group, cfg.Logger, cfg.Flushed = client, b.stream, "g", watermill.NopLogger{}, &flushed
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultCommandTimeout
	}
	a := newAcker(cfg)
	a.start()
	b.t.Cleanup(a.close)
	return a, ids, &flushed
}

// A full batch goes out at once; a partial one when the interval passes.
func TestAcker_SendsFullBatchesAtOnceAndTheRestWithinTheInterval(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, ids, flushed := b.acker(5, ackerConfig{MaxBatch: 3, Interval: 20 * time.Millisecond}, &outage{})
	for _, id := range ids[:3] {
		a.ack(id)
	}
	assert.Equal(t, 3, flushed.WaitOrTimeout(), "a full batch in one XACK")
	a.ack(ids[3])
	a.ack(ids[4])
	assert.Equal(t, 2, flushed.WaitOrTimeout(), "the rest after the interval, in one XACK")
	assert.Zero(t, b.pending("g"))
}

// flush sends what is queued now, whatever the interval.
func TestAcker_FlushSendsAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, ids, _ := b.acker(2, ackerConfig{MaxBatch: 100, Interval: time.Hour}, &outage{})
	a.ack(ids[0])
	a.ack(ids[1])
	require.NoError(t, a.flush(context.Background()))
	assert.Zero(t, b.pending("g"))
}

// A failed XACK keeps its batch and sends it again once Redis answers:
// no ack is dropped, and flush reports the failure meanwhile.
func TestAcker_KeepsAFailedBatchAndRetriesIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cut := &outage{}
	a, ids, flushed := b.acker(3, ackerConfig{MaxBatch: 100, Interval: time.Millisecond}, cut)
	cut.down.Store(true)
	for _, id := range ids {
		a.ack(id)
	}
	require.ErrorIs(t, a.flush(context.Background()), errOutage)
	assert.Equal(t, int64(3), b.pending("g"), "nothing acked during the outage")
	cut.down.Store(false)
	assert.Equal(t, 3, flushed.WaitOrTimeout(), "the kept batch, sent again in one XACK")
	assert.Zero(t, b.pending("g"))
}

// ack never waits for an XACK in progress: the batch is swapped out and
// written with the lock released.
func TestAcker_AckNeverWaitsForAnXACK(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cut := &outage{}
	a, ids, flushed := b.acker(2, ackerConfig{MaxBatch: 1, Interval: time.Hour}, cut)
	// Hold the next command on its way to Redis.
	cut.hold = make(chan struct{})
	a.ack(ids[0]) // a full batch: the XACK starts, and waits
	acked := make(chan struct{})
	go func() { a.ack(ids[1]); close(acked) }()
	select {
	case <-acked:
	case <-time.After(testWait):
		t.Fatal("ack waited for the XACK in progress")
	}
	close(cut.hold)
	total := flushed.WaitOrTimeout()
	if total < 2 {
		total += flushed.WaitOrTimeout()
	}
	assert.Equal(t, 2, total)
}
