package outbox

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// A row held back behind a failing earlier row of its key
// (KeepPartitionOrder) is released without counting as an unsettled
// claim: however long the earlier row keeps failing, MaxUnsettledClaims
// never dead-letters the held row, and it goes out right after.
func TestHeldRowIsNotAnUnsettledClaim(t *testing.T) {
	t.Parallel()
	f := newFixture(t, SQLite, true)
	ctx := context.Background()
	e1 := f.event("a", arc.Meta{})
	e2 := f.event("a", arc.Meta{})
	f.commit(Entry{Topic: "t", Event: e1, PartitionKey: "k"}, Entry{Topic: "t", Event: e2, PartitionKey: "k"})
	rec := newRecorder()
	rec.fail(e1.Meta.ID, errors.New("down"))
	// Retry forever with a 1 s backoff (e.g. ExponentialBackoff(0, ...)).
	relay, err := f.ob.NewRelay(rec, RelayConfig{KeepPartitionOrder: true,
		FailurePolicy: ExponentialBackoff(0, Backoff{Base: time.Second, Max: time.Second, Jitter: NoJitter})})
	require.NoError(t, err)
	for i := 0; i < 12; i++ {
		_, err = relay.RelayBatch(ctx)
		require.NoError(t, err)
		f.clock.Advance(time.Second)
	}
	dead, err := f.ob.DeadLetters(ctx, Filter{}, 10)
	require.NoError(t, err)
	assert.Empty(t, dead, "e2 was never published; it must wait for e1, not be dead-lettered")

	// Once e1 recovers, both go out in order.
	rec.fail(e1.Meta.ID, nil)
	for i := 0; i < 3; i++ {
		_, err = relay.RelayBatch(ctx)
		require.NoError(t, err)
		f.clock.Advance(time.Second)
	}
	assert.Equal(t, []string{e1.Meta.ID, e2.Meta.ID}, rec.ids())
}

// RelayResult.Attempted counts only the rows handed to the publisher,
// not those held back behind a failed row of their key.
func TestAttemptedCountsOnlyRowsHandedToThePublisher(t *testing.T) {
	t.Parallel()
	f := newFixture(t, SQLite, true)
	ctx := context.Background()
	e1 := f.event("a", arc.Meta{})
	e2 := f.event("a", arc.Meta{})
	f.commit(Entry{Topic: "t1", Event: e1, PartitionKey: "k"}, Entry{Topic: "t2", Event: e2, PartitionKey: "k"})
	rec := newRecorder()
	rec.fail(e1.Meta.ID, errors.New("down"))
	relay, err := f.ob.NewRelay(rec, RelayConfig{KeepPartitionOrder: true})
	require.NoError(t, err)
	res, err := relay.RelayBatch(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Attempted, "only e1 was handed to the publisher; e2 was held")
}

// In lock mode, a pass stops publishing three quarters into its lease
// and leaves the rest, uncharged, to the next pass: a healthy but slow
// publisher whose calls add up to more than Lease still gets every row
// out once, and the PostgreSQL session is never ended under it
// (idle_in_transaction_session_timeout). Not parallel: the publisher's
// latency is measured against the wall clock.
func TestLockedPassStopsPublishingAtLeaseDeadline(t *testing.T) {
	f := newFixture(t, PostgreSQL, false)
	ctx := context.Background()
	// The calls add up to more than the lease (3.5 s against 3 s): a pass
	// publishing them all loses its session. A call started just before
	// the deadline (2.25 s) ends by 2.5 s, and the acknowledgement has half
	// a second before the session's end on a loaded machine (with a lease
	// of 1 s and calls of 250 ms, it could have none).
	const rows, lease, call = 14, 3 * time.Second, 250 * time.Millisecond
	var ids []string
	for i := 0; i < rows; i++ {
		ev := f.event("a", arc.Meta{})
		ids = append(ids, ev.Meta.ID)
		f.commit(Entry{Topic: fmt.Sprintf("topic%d", i), Event: ev})
	}
	rec := newRecorder()
	// Simulated broker latency: each call takes a twelfth of the lease.
	rec.onPublish = func(string, []*message.Message) { time.Sleep(call) }
	relay, err := f.ob.NewRelay(rec, RelayConfig{Claim: ClaimLock, Lease: lease, PublishTimeout: 500 * time.Millisecond})
	require.NoError(t, err)
	// Nine calls fit in a pass; a slow machine's passes may fit fewer.
	for i := 0; i < rows && f.count(statusDelivered) < rows; i++ {
		res, err := relay.RelayBatch(ctx)
		require.NoError(t, err)
		require.Zero(t, res.AckFailed, "pass %d: %+v", i, res)
	}
	c := rec.counts()
	for _, id := range ids {
		assert.Equal(t, 1, c[id], "published once")
	}
	assert.Equal(t, rows, f.count(statusDelivered))
}
