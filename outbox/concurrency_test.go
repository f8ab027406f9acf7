package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// Two and four relays (separate Relay values, as separate processes would
// be) drain one table while writers keep committing: every row is
// published exactly once while all is healthy.
func TestConcurrentRelaysPublishOnce(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		for _, relays := range []int{2, 4} {
			t.Run(fmt.Sprintf("%d relays", relays), func(t *testing.T) {
				f := newFixture(t, d, false)
				const writers, perWriter, perTx = 4, 50, 5
				rec := newRecorder()
				var stops []func()
				for i := 0; i < relays; i++ {
					r, err := f.ob.NewRelay(rec, RelayConfig{ConsumerID: fmt.Sprintf("relay-%d", i), BatchSize: 7,
						PollInterval: 5 * time.Millisecond, Workers: 2, DisableNotify: i%2 == 0})
					require.NoError(t, err)
					stops = append(stops, run(t, r))
				}
				var wg sync.WaitGroup
				for w := 0; w < writers; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < perWriter/perTx; i++ {
							var es []Entry
							for j := 0; j < perTx; j++ {
								ev, err := arc.NewEvent("load.test", map[string]int{"i": i}, arc.Meta{})
								assert.NoError(t, err)
								es = append(es, Entry{Topic: "t", Event: ev})
							}
							f.commit(es...)
						}
					}()
				}
				wg.Wait()
				total := writers * perWriter
				// Acknowledgements commit just after the publishes they follow.
				require.Eventually(t, func() bool { return f.count(statusDelivered) == total }, waitTimeout, 5*time.Millisecond)
				// Once the relays have stopped, no duplicate can be on its way.
				for _, stop := range stops {
					stop()
				}
				counts := rec.counts()
				assert.Len(t, counts, total)
				for id, n := range counts {
					if n != 1 {
						t.Errorf("%s published %d times", id, n)
					}
				}
			})
		}
	})
}

// A worker whose lease expired and was taken over cannot acknowledge: the
// late ack is rejected and reported, as Arc's contract demands.
func TestLateAckRejected(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, true)
		ctx := context.Background()
		ev := f.event("order.created", arc.Meta{})
		f.commit(Entry{Topic: "t", Event: ev})

		slow := newRecorder()
		inPublish, resume := make(chan struct{}), make(chan struct{})
		slow.onPublish = func(string, []*message.Message) { close(inPublish); <-resume }
		var reported []RelayError
		a, err := f.ob.NewRelay(slow, RelayConfig{ConsumerID: "a", Lease: 30 * time.Second, Claim: ClaimLease,
			OnError: func(e RelayError) { reported = append(reported, e) }})
		require.NoError(t, err)
		fast := newRecorder()
		b, err := f.ob.NewRelay(fast, RelayConfig{ConsumerID: "b", Lease: 30 * time.Second, Claim: ClaimLease})
		require.NoError(t, err)

		done := relayBatchAsync(ctx, a)
		wait(t, inPublish, "a to publish")
		res, err := b.RelayBatch(ctx)
		require.NoError(t, err)
		assert.Zero(t, res.Attempted, "a's lease still holds")
		f.clock.Advance(31 * time.Second)
		res, err = b.RelayBatch(ctx)
		require.NoError(t, err)
		assert.Equal(t, 1, res.Relayed, "b took the row over after the lease")
		close(resume)
		late := mustBatch(t, done)
		assert.Zero(t, late.Relayed)
		assert.Equal(t, 1, late.AckFailed)
		assert.Equal(t, 1, late.OwnershipMismatches)
		require.Len(t, reported, 1)
		assert.Equal(t, OwnershipMismatch, reported[0].Kind)
		var oe *OwnershipError
		require.ErrorAs(t, reported[0].Err, &oe)
		assert.ErrorIs(t, reported[0].Err, ErrOwnership)
		assert.Equal(t, "a", oe.AttemptedBy)
		assert.Equal(t, ev.Meta.ID, oe.EventID)
		assert.Contains(t, oe.Error(), `attempted by "a", current owner is "none"`)

		// A late failure is rejected the same way and changes nothing.
		ev2 := f.event("order.created", arc.Meta{})
		f.commit(Entry{Topic: "t", Event: ev2})
		slow2 := newRecorder()
		slow2.fail(ev2.Meta.ID, errors.New("down"))
		inPublish2, resume2 := make(chan struct{}), make(chan struct{})
		slow2.onPublish = func(string, []*message.Message) { close(inPublish2); <-resume2 }
		a2, err := f.ob.NewRelay(slow2, RelayConfig{ConsumerID: "a2", Claim: ClaimLease})
		require.NoError(t, err)
		done = relayBatchAsync(ctx, a2)
		wait(t, inPublish2, "a2 to publish")
		f.clock.Advance(31 * time.Second)
		slowB := newRecorder()
		inPublishB, resumeB := make(chan struct{}), make(chan struct{})
		slowB.onPublish = func(string, []*message.Message) { close(inPublishB); <-resumeB }
		b2, err := f.ob.NewRelay(slowB, RelayConfig{ConsumerID: "b2", Claim: ClaimLease})
		require.NoError(t, err)
		doneB := relayBatchAsync(ctx, b2)
		wait(t, inPublishB, "b2 to publish") // b2 holds the row now
		close(resume2)
		late = mustBatch(t, done)
		assert.Equal(t, 1, late.PublishFailed)
		assert.Equal(t, 1, late.OwnershipMismatches, "a2's failure is rejected: b2 owns the row")
		close(resumeB)
		assert.Equal(t, 1, mustBatch(t, doneB).Relayed)
		assert.Equal(t, 0, f.count(statusPending))
	})
}

// With KeepPartitionOrder, rows of one key go out in order across four
// workers, through failures and retries, and in commit order when an
// earlier transaction commits after a later one.
func TestPartitionOrder(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, false)
		ctx := context.Background()
		const keys, perKey = 8, 12
		want := map[string][]string{}
		for i := 0; i < perKey; i++ {
			var es []Entry
			for k := 0; k < keys; k++ {
				key := fmt.Sprintf("order-%d", k)
				ev := f.event("order.step", arc.Meta{PartitionKey: key})
				want[key] = append(want[key], ev.Meta.ID)
				es = append(es, Entry{Topic: "t", Event: ev})
			}
			f.commit(es...)
		}
		rec := newRecorder()
		// Every key's third row fails twice before it goes through.
		var failures sync.Map
		for _, ids := range want {
			failures.Store(ids[2], new(atomic.Int32))
		}
		var inFlight sync.Map
		rec.onPublish = func(_ string, msgs []*message.Message) {
			batchKeys := map[string]bool{}
			for _, m := range msgs {
				batchKeys[m.Metadata.Get(arc.MetadataPartitionKey)] = true
			}
			for key := range batchKeys {
				if _, busy := inFlight.LoadOrStore(key, true); busy {
					t.Errorf("rows of %s in flight in two batches at once", key)
				}
			}
			time.Sleep(time.Millisecond) // simulated broker latency: widens the window for an overlap
			for key := range batchKeys {
				inFlight.Delete(key)
			}
			for _, m := range msgs {
				if c, ok := failures.Load(m.UUID); ok && c.(*atomic.Int32).Add(1) <= 2 {
					rec.fail(m.UUID, errors.New("flaky"))
				} else {
					rec.fail(m.UUID, nil)
				}
			}
		}
		runRelays(t, f, rec, 4, RelayConfig{KeepPartitionOrder: true, BatchSize: 5,
			FailurePolicy: func(context.Context, Failure) Decision { return Decision{} }}, func() bool {
			return len(rec.ids()) >= keys*perKey
		})
		got := map[string][]string{}
		for _, p := range rec.got {
			key := p.msg.Metadata.Get(arc.MetadataPartitionKey)
			got[key] = append(got[key], p.msg.UUID)
		}
		assert.Equal(t, want, got)

		// Late commit: tx1 writes first but commits after tx2.
		tx1, err := f.db.BeginTx(ctx, nil)
		require.NoError(t, err)
		first := f.event("order.step", arc.Meta{PartitionKey: "late"})
		require.NoError(t, f.ob.Write(ctx, tx1, Entry{Topic: "t", Event: first}))
		second := f.event("order.step", arc.Meta{PartitionKey: "late"})
		if d == SQLite {
			// SQLite has one writer at a time: tx2 cannot commit while tx1
			// is open, so a late commit cannot happen there.
			require.NoError(t, tx1.Commit())
			f.commit(Entry{Topic: "t", Event: second})
		} else {
			f.commit(Entry{Topic: "t", Event: second})
		}
		late := newRecorder()
		inPublish, resume := make(chan struct{}), make(chan struct{})
		var once sync.Once
		late.onPublish = func(string, []*message.Message) { once.Do(func() { close(inPublish); <-resume }) }
		a, err := f.ob.NewRelay(late, RelayConfig{ConsumerID: "a", KeepPartitionOrder: true, BatchSize: 1})
		require.NoError(t, err)
		done := relayBatchAsync(ctx, a)
		wait(t, inPublish, "a to publish") // a holds the key's first visible row
		if d != SQLite {
			require.NoError(t, tx1.Commit())
		}
		other, err := f.ob.NewRelay(late, RelayConfig{ConsumerID: "b", KeepPartitionOrder: true})
		require.NoError(t, err)
		res, err := other.RelayBatch(ctx)
		require.NoError(t, err)
		assert.Zero(t, res.Attempted, "the key is in flight: its other row waits")
		close(resume)
		mustBatch(t, done)
		res, err = other.RelayBatch(ctx)
		require.NoError(t, err)
		assert.Equal(t, 1, res.Relayed)
		if d == SQLite {
			assert.Equal(t, []string{first.Meta.ID, second.Meta.ID}, late.ids())
		} else {
			assert.Equal(t, []string{second.Meta.ID, first.Meta.ID}, late.ids(), "commit order; nothing skipped")
		}
	})
}

// Partition order holds across type filters: a relay for type b does not
// deliver row 2 of a key while row 1 (type a) of the key is pending.
func TestPartitionOrderHoldsAcrossTypeFilters(t *testing.T) {
	t.Parallel()
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

// runRelays runs n relays until done() holds, and stops them.
func runRelays(t *testing.T, f *fixture, pub message.Publisher, n int, cfg RelayConfig, done func() bool) {
	t.Helper()
	var stops []func()
	for i := 0; i < n; i++ {
		c := cfg
		c.ConsumerID = fmt.Sprintf("relay-%d", i)
		c.PollInterval = 2 * time.Millisecond
		r, err := f.ob.NewRelay(pub, c)
		require.NoError(t, err)
		stops = append(stops, run(t, r))
	}
	assert.Eventually(t, done, waitTimeout, 5*time.Millisecond)
	for _, stop := range stops {
		stop()
	}
}

// In lock mode on PostgreSQL, a pass that stalls past Lease loses its
// session: its rows are free for another relay at once, and its late
// acknowledgement (the commit) is rejected.
func TestLockModeStalledPassRejected(t *testing.T) {
	t.Parallel()
	f := newFixture(t, PostgreSQL, false)
	ctx := context.Background()
	ev := f.event("order.created", arc.Meta{})
	f.commit(Entry{Topic: "t", Event: ev})
	slow := newRecorder()
	inPublish, resume := make(chan struct{}), make(chan struct{})
	var entered time.Time                                                                                  // when a's transaction went idle, holding the row's lock
	slow.onPublish = func(string, []*message.Message) { entered = time.Now(); close(inPublish); <-resume } // stalls until b has the row
	var reported []RelayError
	a, err := f.ob.NewRelay(slow, RelayConfig{Claim: ClaimLock, Lease: time.Second,
		OnError: func(e RelayError) { reported = append(reported, e) }})
	require.NoError(t, err)
	done := relayBatchAsync(ctx, a)

	fast := newRecorder()
	b, err := f.ob.NewRelay(fast, RelayConfig{Claim: ClaimLock})
	require.NoError(t, err)
	wait(t, inPublish, "a to publish")
	res, err := b.RelayBatch(ctx)
	require.NoError(t, err)
	// The lock is a's until the server ends its session, Lease after it
	// went idle: b's pass proves the lock only if it ended before that.
	if time.Since(entered) < time.Second {
		assert.Zero(t, res.Attempted, "a holds the row's lock")
	} else {
		t.Logf("b's first pass ended %s after a went idle, past the Lease: the lock is not checked", time.Since(entered))
	}
	relayed := res.Relayed
	require.Eventually(t, func() bool {
		if relayed == 0 {
			if res, err := b.RelayBatch(ctx); err == nil {
				relayed = res.Relayed
			}
		}
		return relayed == 1
	}, waitTimeout, 50*time.Millisecond, "the stalled session is ended after Lease and b takes the row")
	close(resume)
	late := mustBatch(t, done)
	assert.Zero(t, late.Relayed)
	assert.Equal(t, 1, late.AckFailed, "a's commit is rejected")
	require.NotEmpty(t, reported)
	assert.Equal(t, AcknowledgeFailed, reported[len(reported)-1].Kind)
	assert.Equal(t, 1, f.count(statusDelivered))
	assert.Equal(t, []string{ev.Meta.ID}, fast.ids())
}
