package inbox

import (
	"context"
	stdsql "database/sql"
	"errors"
	"github.com/arcmill/arcmill/internal/fakeclock"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// A redelivered event's effect is applied once: the second and third
// deliveries find the record, skip the handler and return no error (so
// they are acked).
func TestRedeliveredAppliedOnce(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d outbox.Dialect) {
		var dups atomic.Int32
		f := newFixture(t, d, func(c *Config) {
			c.OnDuplicate = func(context.Context, string, arc.Event) { dups.Add(1) }
		})
		ctx := context.Background()
		ev := newEvent(t, "order.created", arc.Meta{})
		var runs int
		h := f.ib.Handle("billing", func(ctx context.Context, tx *stdsql.Tx, ev arc.Event) error {
			runs++
			return f.effect(ctx, tx, "billing", ev)
		})
		for i := 0; i < 3; i++ {
			require.NoError(t, h(ctx, ev), "delivery %d", i+1)
		}
		assert.Equal(t, 1, runs, "the handler ran once")
		assert.Equal(t, 1, f.applied(ev.Meta.ID), "the effect is applied once")
		assert.EqualValues(t, 2, dups.Load(), "two duplicates reported")
		seen, err := f.ib.Seen(ctx, "billing", ev)
		require.NoError(t, err)
		assert.True(t, seen)
		n, err := f.ib.Count(ctx, "billing")
		require.NoError(t, err)
		assert.EqualValues(t, 1, n)
	})
}

// A failed attempt leaves nothing: not the record, not the handler's
// writes, not its emitted events; the next attempt applies the event.
func TestFailedAttemptLeavesNothing(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d outbox.Dialect) {
		f := newFixture(t, d, nil)
		ctx := context.Background()
		ev := newEvent(t, "order.created", arc.Meta{})
		boom := errors.New("boom")
		fail := true
		h := f.ib.Handle("billing", func(ctx context.Context, tx *stdsql.Tx, ev arc.Event) error {
			if err := f.effect(ctx, tx, "billing", ev); err != nil {
				return err
			}
			if _, err := Emit(ctx, "invoice.created", map[string]int{"n": 1}, arc.Meta{}); err != nil {
				return err
			}
			if fail {
				return boom
			}
			return nil
		})
		require.ErrorIs(t, h(ctx, ev), boom)
		assert.Zero(t, f.applied(""), "the failed attempt's write rolled back")
		st, err := f.ob.Status(ctx)
		require.NoError(t, err)
		assert.Zero(t, st.Pending, "the failed attempt's emitted event rolled back")
		seen, err := f.ib.Seen(ctx, "billing", ev)
		require.NoError(t, err)
		assert.False(t, seen, "no record of a failed attempt")

		fail = false
		require.NoError(t, h(ctx, ev))
		assert.Equal(t, 1, f.applied(ev.Meta.ID))
		st, err = f.ob.Status(ctx)
		require.NoError(t, err)
		assert.EqualValues(t, 1, st.Pending)
	})
}

// A panicking handler's transaction is ended, and nothing is recorded.
func TestPanicRollsBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, outbox.SQLite, nil)
	ctx := context.Background()
	ev := newEvent(t, "order.created", arc.Meta{})
	h := f.ib.Handle("billing", func(ctx context.Context, tx *stdsql.Tx, ev arc.Event) error {
		require.NoError(t, f.effect(ctx, tx, "billing", ev))
		panic("handler bug")
	})
	assert.Panics(t, func() { _ = h(ctx, ev) })
	assert.Zero(t, f.applied(""))
	seen, err := f.ib.Seen(ctx, "billing", ev)
	require.NoError(t, err)
	assert.False(t, seen)
}

// Consumers are independent: each handler of one event applies it once.
func TestConsumersIndependent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, outbox.SQLite, nil)
	ctx := context.Background()
	ev := newEvent(t, "order.created", arc.Meta{})
	for _, c := range []string{"billing", "shipping", "billing", "shipping"} {
		out, err := f.ib.Process(ctx, c, ev, func(ctx context.Context) error {
			tx, err := Tx(ctx)
			if err != nil {
				return err
			}
			return f.effect(ctx, tx, c, ev)
		})
		require.NoError(t, err)
		t.Log(c, out)
	}
	assert.Equal(t, 2, f.applied(ev.Meta.ID), "one effect per consumer")
}

// The default key recognises a producer's retry of one request (same
// idempotency key, new meta.id) and keeps a child apart from its parent;
// KeyByID tells redeliveries only.
func TestKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	parent := newEvent(t, "order.created", arc.Meta{IdempotencyKey: "req-1"})
	retry := parent
	retry.Meta.ID = "another-id"
	child, err := arc.NewChild(parent, "order.created", map[string]int{"n": 1}, arc.Meta{})
	require.NoError(t, err)
	require.Equal(t, parent.Meta.IdempotencyKey, child.Meta.IdempotencyKey, "children inherit the key")

	for name, tc := range map[string]struct {
		key  func(arc.Event) string
		want []Outcome
	}{
		"Key":     {nil, []Outcome{Applied, Duplicate, Applied}},
		"KeyByID": {KeyByID, []Outcome{Applied, Applied, Applied}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, outbox.SQLite, func(c *Config) { c.Key = tc.key })
			for i, ev := range []arc.Event{parent, retry, child} {
				out, err := f.ib.Process(ctx, "c", ev, func(context.Context) error { return nil })
				require.NoError(t, err)
				assert.Equal(t, tc.want[i], out, "event %d", i)
			}
		})
	}
	long := parent
	long.Meta.IdempotencyKey = ""
	long.Meta.ID = string(make([]byte, 1000))
	assert.Len(t, Key(long), 67, "a long id is hashed")
	assert.Empty(t, Key(arc.Event{}))
}

// An event with no key, or an empty consumer, is refused before any
// transaction; the event's case is unrecoverable (dead-lettered, never
// retried).
func TestInvalidKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t, outbox.SQLite, nil)
	ctx := context.Background()
	noop := func(context.Context) error { return nil }
	_, err := f.ib.Process(ctx, "c", arc.Event{Type: "x"}, noop)
	require.ErrorIs(t, err, ErrInvalidKey)
	require.ErrorIs(t, err, arc.ErrUnrecoverable)
	_, err = f.ib.Process(ctx, "", newEvent(t, "x", arc.Meta{}), noop)
	require.ErrorIs(t, err, ErrInvalidKey)
}

// Concurrent deliveries of one event, racing from separate connections,
// produce one effect, and every loser returns without an error (so it is
// acked). The winner holds its transaction open until every delivery has
// started, so that the losers meet its uncommitted record.
func TestConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d outbox.Dialect) {
		f := newFixture(t, d, nil)
		ctx := context.Background()
		const rounds, workers = 10, 6
		for r := 0; r < rounds; r++ {
			ev := newEvent(t, "order.created", arc.Meta{})
			var entered atomic.Int32
			h := f.ib.Handle("billing", func(ctx context.Context, tx *stdsql.Tx, ev arc.Event) error {
				if err := f.effect(ctx, tx, "billing", ev); err != nil {
					return err
				}
				deadline := time.Now().Add(waitTimeout)
				for entered.Load() < workers && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond) // polling the condition: every delivery has started
				}
				return nil
			})
			start := make(chan struct{})
			errs := make([]error, workers)
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					entered.Add(1)
					errs[w] = h(ctx, ev)
				}()
			}
			close(start)
			wg.Wait()
			for w, err := range errs {
				assert.NoError(t, err, "round %d, delivery %d", r, w)
			}
			assert.Equal(t, 1, f.applied(ev.Meta.ID), "round %d: one effect", r)
		}
	})
}

// Purging frees old records only; a redelivery after its record was
// purged is applied again (the documented limit), unless RefuseOlderThan
// refuses it.
func TestPurgeAndRedeliveryAfterPurge(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d outbox.Dialect) {
		clock := fakeclock.New(time.Now())
		f := newFixture(t, d, func(c *Config) { c.Now = clock.Now })
		ctx := context.Background()
		h := f.ib.Handle("billing", func(ctx context.Context, tx *stdsql.Tx, ev arc.Event) error {
			return f.effect(ctx, tx, "billing", ev)
		})
		old := newEvent(t, "order.created", arc.Meta{})
		require.NoError(t, h(ctx, old))
		clock.Advance(DefaultRetention)
		young := newEvent(t, "order.created", arc.Meta{})
		require.NoError(t, h(ctx, young))
		clock.Advance(time.Hour)

		n, err := f.ib.PurgeProcessed(ctx, DefaultRetention)
		require.NoError(t, err)
		assert.EqualValues(t, 1, n, "only the record older than the window")
		require.NoError(t, h(ctx, young))
		assert.Equal(t, 1, f.applied(young.Meta.ID), "a kept record still stops a repeat")
		require.NoError(t, h(ctx, old))
		assert.Equal(t, 2, f.applied(old.Meta.ID), "a redelivery after purge is applied again")

		_, err = f.ib.PurgeProcessed(ctx, 0)
		require.ErrorIs(t, err, ErrInvalidConfig)

		// RefuseOlderThan: the same late redelivery is refused instead.
		guarded, err := New(f.db, Config{Table: f.cfg.Table, Dialect: d, Now: clock.Now, RefuseOlderThan: DefaultRetention})
		require.NoError(t, err)
		clock.Advance(2 * time.Minute)
		_, err = f.ib.PurgeProcessed(ctx, time.Minute)
		require.NoError(t, err)
		_, err = guarded.Process(ctx, "billing", old, func(context.Context) error {
			t.Error("a stale event must not be handled")
			return nil
		})
		require.ErrorIs(t, err, ErrStale)
		require.ErrorIs(t, err, arc.ErrUnrecoverable)
		fresh := newEvent(t, "order.created", arc.Meta{Timestamp: clock.Now().Add(-time.Hour)})
		out, err := guarded.Process(ctx, "billing", fresh, func(context.Context) error { return nil })
		require.NoError(t, err, "an event younger than the window is processed")
		assert.Equal(t, Applied, out)
	})
}

// On a pgx pool, the handler gets a pgx.Tx, and the emitted events go
// into the outbox through WritePgx in the same transaction.
func TestPgx(t *testing.T) {
	t.Parallel()
	f := newFixture(t, outbox.PostgreSQL, nil)
	ib := f.pgxInbox()
	require.NoError(t, ib.Migrate(context.Background()))
	ctx := context.Background()
	ev := newEvent(t, "order.created", arc.Meta{})
	var runs int
	h := ib.HandlePgx("billing", func(ctx context.Context, tx pgx.Tx, ev arc.Event) error {
		runs++
		if _, err := tx.Exec(ctx, "INSERT INTO "+f.ledger+" (consumer, event_id) VALUES ($1, $2)", "billing", ev.Meta.ID); err != nil {
			return err
		}
		_, err := Emit(ctx, "invoice.created", map[string]int{"n": 1}, arc.Meta{})
		return err
	})
	for i := 0; i < 3; i++ {
		require.NoError(t, h(ctx, ev))
	}
	assert.Equal(t, 1, runs)
	assert.Equal(t, 1, f.applied(ev.Meta.ID))
	st, err := f.ob.Status(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, st.Pending, "one emitted event")

	require.ErrorIs(t, ib.Handle("x", nil)(ctx, ev), ErrInvalidConfig, "a pgx inbox has no *sql.Tx")
	require.ErrorIs(t, f.ib.HandlePgx("x", nil)(ctx, ev), ErrInvalidConfig)

	// Concurrent duplicates on the pool.
	ev2 := newEvent(t, "order.created", arc.Meta{})
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, h(ctx, ev2))
		}()
	}
	wg.Wait()
	assert.Equal(t, 1, f.applied(ev2.Meta.ID))
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	f := newFixture(t, outbox.SQLite, nil)
	for name, cfg := range map[string]Config{
		"table":        {Table: "Bad-Name"},
		"long table":   {Table: strings.Repeat("t", 54)},
		"dialect":      {Dialect: outbox.Dialect(9)},
		"no topic":     {Outbox: f.ob},
		"topic alone":  {EmitTopic: "x"},
		"mismatch":     {Outbox: f.ob, EmitTopic: "x", Dialect: outbox.MySQL},
		"negative age": {RefuseOlderThan: -1},
	} {
		assert.ErrorIs(t, cfg.Validate(), ErrInvalidConfig, name)
		_, err := New(f.db, cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, name)
	}
	assert.NoError(t, Config{Outbox: f.ob, EmitTopic: "x"}.Validate(), "the dialect comes from the outbox")
	ib, err := New(f.db, Config{})
	require.NoError(t, err)
	assert.Equal(t, outbox.SQLite, ib.Dialect(), "without an outbox, the dialect comes from the driver")
	_, err = New(nil, Config{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, err = NewPgx(nil, Config{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

// Emit and Tx outside an inbox handler say so.
func TestNoTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, err := Emit(ctx, "x", nil, arc.Meta{})
	assert.ErrorIs(t, err, ErrNoTransaction)
	_, err = Tx(ctx)
	assert.ErrorIs(t, err, ErrNoTransaction)
	_, err = PgxTx(ctx)
	assert.ErrorIs(t, err, ErrNoTransaction)
	assert.ErrorIs(t, EmitEntries(ctx), ErrNoTransaction)

	f := newFixture(t, outbox.SQLite, func(c *Config) { c.Outbox, c.EmitTopic = nil, "" })
	var kept context.Context
	_, err = f.ib.Process(ctx, "c", newEvent(t, "x", arc.Meta{}), func(ctx context.Context) error {
		kept = ctx
		_, err := Emit(ctx, "y", nil, arc.Meta{})
		assert.ErrorIs(t, err, ErrNoOutbox)
		return nil
	})
	require.NoError(t, err)
	_, err = Tx(kept)
	assert.ErrorIs(t, err, ErrNoTransaction, "a context kept past the handler has no transaction")
}

// Migrate is safe to run from several processes at once on a fresh table.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d outbox.Dialect) {
		f := newFixture(t, d, nil)
		table := f.ib.Table() + "_m"
		t.Cleanup(func() { _, _ = f.db.Exec("DROP TABLE IF EXISTS " + table) })
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ib, err := New(f.db, Config{Dialect: d, Table: table})
				if assert.NoError(t, err) {
					assert.NoError(t, ib.Migrate(context.Background()))
				}
			}()
		}
		wg.Wait()
	})
}
