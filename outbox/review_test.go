package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// A mixed-case table name made Migrate fail the second time on
// PostgreSQL (unquoted names fold to lower case): such names are refused.
func TestMixedCaseTableRefused(t *testing.T) {
	db := openDB(t, SQLite)
	table := "Arcmill_Ob_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	_, err := New(db, Config{Dialect: PostgreSQL, Table: table})
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

// A held row (KeepPartitionOrder, an earlier row of its key failed) is
// released without an attempt but its claims counter keeps growing, so
// MaxUnsettledClaims dead-letters it without it ever being published,
// while the earlier row of its key is still pending: the later row is
// lost from the flow and the key's order is broken.
func TestHeldRowNotDeadLetteredAsUnsettled(t *testing.T) {
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
	for _, d := range dead {
		t.Logf("dead: %s (%s) err=%s", d.EventID, map[bool]string{true: "e1", false: "e2"}[d.EventID == e1.Meta.ID], d.Error)
	}
	assert.Empty(t, dead, "e2 was never published; it must wait for e1, not be dead-lettered")

	// Once e1 recovers, e2 is gone.
	rec.fail(e1.Meta.ID, nil)
	for i := 0; i < 3; i++ {
		_, err = relay.RelayBatch(ctx)
		require.NoError(t, err)
		f.clock.Advance(time.Second)
	}
	assert.Equal(t, []string{e1.Meta.ID, e2.Meta.ID}, rec.ids())
}

// RelayResult.Attempted counts held rows that were never handed to the
// publisher.
func TestAttemptedExcludesHeldRows(t *testing.T) {
	f := newFixture(t, SQLite, true)
	ctx := context.Background()
	e1 := f.event("a", arc.Meta{})
	e2 := f.event("a", arc.Meta{})
	f.commit(Entry{Topic: "t1", Event: e1, PartitionKey: "k"}, Entry{Topic: "t2", Event: e2, PartitionKey: "k"})
	rec := newRecorder()
	rec.fail(e1.Meta.ID, errors.New("down"))
	handed := 0
	rec.onPublish = func(_ string, msgs []*message.Message) { handed += len(msgs) }
	relay, err := f.ob.NewRelay(rec, RelayConfig{KeepPartitionOrder: true})
	require.NoError(t, err)
	res, err := relay.RelayBatch(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Attempted, "only e1 was handed to the publisher; e2 was held")
}

// Lock mode: a healthy publisher whose calls in one pass add up to more
// than Lease got the PostgreSQL session killed
// (idle_in_transaction_session_timeout), so every pass republished the
// whole batch and never committed. A pass now stops publishing three
// quarters into its lease and leaves the rest, uncharged, to the next.
func TestSlowBatchStopsAtLeaseDeadline(t *testing.T) {
	f := newFixture(t, PostgreSQL, false)
	ctx := context.Background()
	var ids []string
	for i := 0; i < 6; i++ {
		ev := f.event("a", arc.Meta{})
		ids = append(ids, ev.Meta.ID)
		f.commit(Entry{Topic: fmt.Sprintf("topic%d", i), Event: ev})
	}
	rec := newRecorder()
	rec.onPublish = func(string, []*message.Message) { time.Sleep(250 * time.Millisecond) }
	relay, err := f.ob.NewRelay(rec, RelayConfig{Claim: ClaimLock, Lease: time.Second, PublishTimeout: 500 * time.Millisecond})
	require.NoError(t, err)
	for i := 0; i < 3 && f.count(statusDelivered) < 6; i++ {
		res, err := relay.RelayBatch(ctx)
		require.NoError(t, err)
		assert.Zero(t, res.AckFailed, "pass %d: %+v", i, res)
	}
	c := rec.counts()
	for _, id := range ids {
		assert.Equal(t, 1, c[id], "published once")
	}
	assert.Equal(t, 6, f.count(statusDelivered))
}

// KeepPartitionOrder with Types: a relay for type b delivers row 2 of a
// key while row 1 (type a) of the same key is still pending.
func TestPartitionOrderWithTypes(t *testing.T) {
	f := newFixture(t, SQLite, true)
	ctx := context.Background()
	e1 := f.event("a", arc.Meta{})
	e2 := f.event("b", arc.Meta{})
	f.commit(Entry{Topic: "t", Event: e1, PartitionKey: "k"}, Entry{Topic: "t", Event: e2, PartitionKey: "k"})
	rec := newRecorder()
	relayB, err := f.ob.NewRelay(rec, RelayConfig{KeepPartitionOrder: true, Types: []string{"b"}})
	require.NoError(t, err)
	res, err := relayB.RelayBatch(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, res.Relayed, "row 2 of key k must wait for row 1")
	relayA, err := f.ob.NewRelay(rec, RelayConfig{KeepPartitionOrder: true, Types: []string{"a"}})
	require.NoError(t, err)
	_, err = relayA.RelayBatch(ctx)
	require.NoError(t, err)
	_, err = relayB.RelayBatch(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{e1.Meta.ID, e2.Meta.ID}, rec.ids())
}
