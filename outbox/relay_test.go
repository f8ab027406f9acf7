package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

func TestWriteRelayRollback(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, false)
		ctx := context.Background()
		full, err := arc.NewEvent("order.created", map[string]any{"orderId": "o-1", "total": 99.5}, arc.Meta{
			SchemaVersion: 2, CorrelationID: "req-1", CausationID: "cmd-1", PartitionKey: "o-1", Source: "shop",
			IdempotencyKey: "k-1", Resource: "order", ResourceID: "o-1", UserID: "u-7", OrganizationID: "org-1",
			Aggregate: &arc.Aggregate{Type: "Order", ID: "o-1"},
			Extra:     map[string]json.RawMessage{"tenantTier": json.RawMessage(`"gold"`)},
		})
		require.NoError(t, err)
		second := f.event("order.paid", arc.Meta{})
		other := f.event("invoice.sent", arc.Meta{})
		f.commit(Entry{Topic: "orders", Event: full}, Entry{Topic: "orders", Event: second},
			Entry{Topic: "invoices", Event: other})

		// A rolled-back transaction leaves nothing, not even its business row.
		tx, err := f.db.BeginTx(ctx, nil)
		require.NoError(t, err)
		lost := f.event("order.created", arc.Meta{})
		require.NoError(t, f.ob.Write(ctx, tx, Entry{Topic: "orders", Event: lost}))
		require.NoError(t, tx.Rollback())

		rec := newRecorder()
		relay, err := f.ob.NewRelay(rec, RelayConfig{})
		require.NoError(t, err)
		res, err := relay.RelayBatch(ctx)
		require.NoError(t, err)
		assert.Equal(t, 3, res.Relayed)
		assert.Equal(t, 3, res.Attempted)
		assert.True(t, res.UsedPublishMany, "the two orders rows went out in one call")
		assert.Equal(t, []string{full.Meta.ID, second.Meta.ID, other.Meta.ID}, rec.ids(), "write order")
		assert.Equal(t, 2, rec.calls, "one Publish call per run of one topic")

		// Every meta field survives: the relayed message is the event.
		got, err := arc.FromMessage(rec.got[0].msg)
		require.NoError(t, err)
		assert.True(t, full.Equal(got), "relayed %+v", got.Meta)
		assert.Equal(t, "orders", rec.got[0].topic)
		_, leaked := rec.got[0].msg.Metadata[MetadataDedupeKey]
		assert.False(t, leaked, "write options are not relayed")

		res, err = relay.RelayBatch(ctx)
		require.NoError(t, err)
		assert.Zero(t, res.Attempted, "delivered rows are not relayed again")
		st, err := f.ob.Status(ctx)
		require.NoError(t, err)
		assert.Equal(t, Status{Delivered: 3}, st)
	})
}

func TestDedupe(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, false)
		ctx := context.Background()
		parent := f.event("order.created", arc.Meta{IdempotencyKey: "req-42"})
		child, err := arc.NewChild(parent, "stock.reserved", map[string]int{"qty": 1}, arc.Meta{})
		require.NoError(t, err)
		require.Equal(t, "req-42", child.Meta.IdempotencyKey, "Arc copies the key to the child")

		f.commit(Entry{Topic: "t", Event: parent}, Entry{Topic: "t", Event: child})
		// The same request again (a client retry): both writes are no-ops,
		// in another transaction and in the same statement.
		again := parent
		again.Meta.ID = "another-id"
		f.commit(Entry{Topic: "t", Event: again}, Entry{Topic: "t", Event: again})
		childAgain, err := arc.NewChild(parent, "stock.reserved", map[string]int{"qty": 1}, arc.Meta{})
		require.NoError(t, err)
		f.commit(Entry{Topic: "t", Event: childAgain})
		// An explicit key wins over the idempotency key.
		plain := f.event("x.y", arc.Meta{})
		f.commit(Entry{Topic: "t", Event: plain, DedupeKey: "mine"}, Entry{Topic: "t", Event: f.event("x.y", arc.Meta{}), DedupeKey: "mine"})
		// No key: no deduplication, even of the same event twice.
		free := f.event("x.z", arc.Meta{})
		f.commit(Entry{Topic: "t", Event: free}, Entry{Topic: "t", Event: free})

		rec := newRecorder()
		relay, err := f.ob.NewRelay(rec, RelayConfig{})
		require.NoError(t, err)
		_, err = relay.RelayBatch(ctx)
		require.NoError(t, err)
		assert.Equal(t, []string{parent.Meta.ID, child.Meta.ID, plain.Meta.ID, free.Meta.ID, free.Meta.ID}, rec.ids(),
			"the child is kept; repeats of the parent, the child and the explicit key are dropped")

		// The key holds while delivered, and is free again once purged.
		f.commit(Entry{Topic: "t", Event: again})
		assert.Equal(t, 0, f.count(statusPending))
		n, err := f.ob.PurgeDelivered(ctx, -time.Hour) // everything delivered before an hour from now
		require.NoError(t, err)
		assert.EqualValues(t, 5, n)
		f.commit(Entry{Topic: "t", Event: again})
		assert.Equal(t, 1, f.count(statusPending))
	})
}

func TestWriteRefusesInvalidEntries(t *testing.T) {
	t.Parallel()
	f := newFixture(t, SQLite, false)
	ctx := context.Background()
	cases := map[string]Entry{
		"no topic":  {Event: f.event("a.b", arc.Meta{})},
		"no type":   {Topic: "t", Event: arc.Event{Meta: arc.Meta{ID: "x"}}},
		"no id":     {Topic: "t", Event: arc.Event{Type: "a.b"}},
		"no uuid":   {Topic: "t", Message: message.NewMessage("", nil)},
		"bad topic": {Topic: "a b", Event: f.event("a.b", arc.Meta{})},
		"long key":  {Topic: "t", Event: f.event("a.b", arc.Meta{}), DedupeKey: string(make([]byte, 256))},
		"bad visible": {Topic: "t", Message: func() *message.Message {
			m := message.NewMessage("id", nil)
			m.Metadata.Set(MetadataVisibleAt, "tomorrow")
			return m
		}()},
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) {
			tx, err := f.db.BeginTx(ctx, nil)
			require.NoError(t, err)
			defer tx.Rollback()
			err = f.ob.Write(ctx, tx, e)
			require.Error(t, err)
			if name != "bad topic" {
				assert.ErrorIs(t, err, ErrInvalidEntry)
			}
		})
	}
}

func TestVisibleAtAndPublisherOptions(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, true)
		ctx := context.Background()
		later := f.event("reminder.due", arc.Meta{})
		f.commit(Entry{Topic: "t", Event: later, VisibleAt: f.clock.Now().Add(time.Minute)})

		// The Watermill publisher path: options in metadata.
		tx, err := f.db.BeginTx(ctx, nil)
		require.NoError(t, err)
		pub, err := f.ob.Publisher(tx)
		require.NoError(t, err)
		m1 := message.NewMessage("m-1", []byte(`{"a":1}`))
		m1.Metadata.Set(MetadataDedupeKey, "dk")
		m2 := message.NewMessage("m-2", []byte(`{"a":2}`))
		m2.Metadata.Set(MetadataDedupeKey, "dk")
		require.NoError(t, pub.Publish("plain", m1, m2))
		require.NoError(t, tx.Commit())
		assert.Equal(t, "dk", m1.Metadata.Get(MetadataDedupeKey), "the caller's message is not altered")

		rec := newRecorder()
		relay, err := f.ob.NewRelay(rec, RelayConfig{})
		require.NoError(t, err)
		_, err = relay.RelayBatch(ctx)
		require.NoError(t, err)
		assert.Equal(t, []string{"m-1"}, rec.ids(), "not yet visible; dk written once")
		assert.Equal(t, `{"a":1}`, string(rec.got[0].msg.Payload))
		st, err := f.ob.Status(ctx)
		require.NoError(t, err)
		assert.EqualValues(t, 1, st.Delayed)

		f.clock.Advance(time.Minute)
		_, err = relay.RelayBatch(ctx)
		require.NoError(t, err)
		assert.Equal(t, []string{"m-1", later.Meta.ID}, rec.ids())
	})
}

// A row whose publish fails backs off alone, is dead-lettered at the
// limit with its error, can be redriven, and is purged on request.
func TestBackoffDeadLetterRedrivePurge(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, true)
		ctx := context.Background()
		poison := f.event("order.created", arc.Meta{})
		f.commit(Entry{Topic: "t", Event: poison})
		rec := newRecorder()
		rec.fail(poison.Meta.ID, errors.New("too large"))
		var kinds []RelayErrorKind
		var mu sync.Mutex
		relay, err := f.ob.NewRelay(rec, RelayConfig{
			FailurePolicy: ExponentialBackoff(3, Backoff{Base: time.Second, Jitter: NoJitter}),
			OnError:       func(e RelayError) { mu.Lock(); kinds = append(kinds, e.Kind); mu.Unlock() },
		})
		require.NoError(t, err)

		pass := func() RelayResult {
			res, err := relay.RelayBatch(ctx)
			require.NoError(t, err)
			return res
		}
		res := pass()
		assert.Equal(t, 1, res.PublishFailed)
		// Others are not blocked by the failing row while it waits.
		fine := f.event("order.created", arc.Meta{})
		f.commit(Entry{Topic: "t", Event: fine})
		res = pass()
		assert.Equal(t, 1, res.Relayed)
		assert.Equal(t, 1, res.Attempted, "the failing row waits for its retry time")
		f.clock.Advance(999 * time.Millisecond)
		assert.Zero(t, pass().Attempted, "1 s after the first failure")
		f.clock.Advance(time.Millisecond)
		assert.Equal(t, 1, pass().PublishFailed)
		f.clock.Advance(2 * time.Second) // 2 s after the second
		res = pass()
		assert.Equal(t, 1, res.PublishFailed)
		assert.Equal(t, 1, res.DeadLettered, "dead after 3 attempts")
		f.clock.Advance(time.Hour)
		assert.Zero(t, pass().Attempted, "dead letters are never claimed")
		mu.Lock()
		assert.Equal(t, []RelayErrorKind{PublishFailed, PublishFailed, PublishFailed}, kinds)
		mu.Unlock()

		dead, err := f.ob.DeadLetters(ctx, Filter{}, 0)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		assert.Equal(t, poison.Meta.ID, dead[0].EventID)
		assert.Equal(t, 3, dead[0].Attempts, "attempts are stored in the table")
		assert.Contains(t, dead[0].Error, "too large")
		assert.Equal(t, "order.created", dead[0].Type)
		assert.Equal(t, poison.Meta.ID, dead[0].Message.UUID)
		assert.True(t, dead[0].LastFailedAt.Sub(dead[0].FirstFailedAt) == 3*time.Second)

		// Redrive by id after the fix: relayed once more.
		rec.fail(poison.Meta.ID, nil)
		n, err := f.ob.Redrive(ctx, RedriveOptions{Filter: Filter{EventIDs: []string{poison.Meta.ID}}})
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		n, err = f.ob.Redrive(ctx, RedriveOptions{})
		require.NoError(t, err)
		assert.Zero(t, n, "a re-run redrives nothing twice")
		assert.Equal(t, 1, pass().Relayed)
		assert.Equal(t, []string{fine.Meta.ID, poison.Meta.ID}, rec.ids())

		// Redrive by type, oldest first, capped; purge the rest.
		var ids []string
		for i := 0; i < 5; i++ {
			ev := f.event("a.dead", arc.Meta{})
			if i == 4 {
				ev = f.event("b.dead", arc.Meta{})
			}
			ids = append(ids, ev.Meta.ID)
			rec.fail(ev.Meta.ID, errors.New("down"))
			f.commit(Entry{Topic: "t", Event: ev})
		}
		relay2, err := f.ob.NewRelay(rec, RelayConfig{FailurePolicy: func(context.Context, Failure) Decision {
			return Decision{DeadLetter: true}
		}})
		require.NoError(t, err)
		res, err = relay2.RelayBatch(ctx)
		require.NoError(t, err)
		assert.Equal(t, 3, res.DeadLettered, "three failures in a row: the rest wait, uncharged")
		res, err = relay2.RelayBatch(ctx)
		require.NoError(t, err)
		assert.Equal(t, 2, res.DeadLettered)
		for _, id := range ids {
			rec.fail(id, nil)
		}
		start := time.Now()
		n, err = f.ob.Redrive(ctx, RedriveOptions{Filter: Filter{Types: []string{"a.dead"}}, Limit: 3, Rate: 20})
		require.NoError(t, err)
		assert.Equal(t, 3, n)
		assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond, "3 rows at 20/s")
		assert.Equal(t, 3, pass().Relayed)
		assert.Equal(t, ids[:3], rec.ids()[2:], "oldest first")
		purged, err := f.ob.PurgeDeadLetters(ctx, Filter{Types: []string{"b.dead"}})
		require.NoError(t, err)
		assert.EqualValues(t, 1, purged)
		st, err := f.ob.Status(ctx)
		require.NoError(t, err)
		assert.EqualValues(t, 1, st.Dead)
		assert.EqualValues(t, 5, st.Delivered)
		f.clock.Advance(time.Hour)
		purged, err = f.ob.PurgeDelivered(ctx, time.Hour-time.Millisecond)
		require.NoError(t, err)
		assert.EqualValues(t, 5, purged)
	})
}

// One failing row in a batch does not fail its neighbours.
func TestPoisonRowIsolated(t *testing.T) {
	t.Parallel()
	f := newFixture(t, PostgreSQL, false)
	var evs []Entry
	for i := 0; i < 5; i++ {
		evs = append(evs, Entry{Topic: "t", Event: f.event("a.b", arc.Meta{})})
	}
	f.commit(evs...)
	rec := newRecorder()
	rec.fail(evs[2].Event.Meta.ID, errors.New("poison"))
	relay, err := f.ob.NewRelay(rec, RelayConfig{})
	require.NoError(t, err)
	res, err := relay.RelayBatch(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 4, res.Relayed)
	assert.Equal(t, 1, res.PublishFailed)
}

func TestMalformedRowDeadLettered(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, false)
		ctx := context.Background()
		_, err := f.db.ExecContext(ctx, f.ob.q.bind("INSERT INTO "+f.ob.cfg.Table+
			" (event_id, topic, metadata, visible_at, created_at) VALUES (?, ?, ?, 0, 0)"), "bad-1", "t", `{"a":1}`)
		require.NoError(t, err)
		f.commit(Entry{Topic: "t", Event: f.event("ok.ok", arc.Meta{})})
		rec := newRecorder()
		relay, err := f.ob.NewRelay(rec, RelayConfig{})
		require.NoError(t, err)
		res, err := relay.RelayBatch(ctx)
		require.NoError(t, err)
		assert.Equal(t, 1, res.Malformed)
		assert.Equal(t, 1, res.DeadLettered)
		assert.Equal(t, 1, res.Relayed, "the row after it is not held back, unlike Arc")
		dead, err := f.ob.DeadLetters(ctx, Filter{}, 10)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		assert.Nil(t, dead[0].Message)
		assert.Contains(t, dead[0].Error, "metadata")
	})
}
