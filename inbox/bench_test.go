package inbox

import (
	"context"
	stdsql "database/sql"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// BenchmarkHandlerTx measures what the inbox adds to a handler's
// transaction, on each database, in one run: "plain" is the handler's
// transaction without the inbox (begin, one business insert, commit);
// "plain2rows" the same with a second insert (the target: the inbox costs
// no more than one extra row insert); "inbox" is plain through Process
// (plus the record). The "+emit" pair adds one emitted event written to
// the outbox in both. Each iteration handles a new event.
func BenchmarkHandlerTx(b *testing.B) {
	for _, d := range []outbox.Dialect{outbox.PostgreSQL, outbox.MySQL, outbox.SQLite} {
		b.Run(d.String(), func(b *testing.B) {
			f := newFixture(b, d, nil)
			ctx := context.Background()
			insert := f.bind("INSERT INTO " + f.ledger + " (consumer, event_id) VALUES (?, ?)")
			work := func(ctx context.Context, tx *stdsql.Tx, ev arc.Event, emit bool) error {
				if _, err := tx.ExecContext(ctx, insert, "bench", ev.Meta.ID); err != nil {
					return err
				}
				if !emit {
					return nil
				}
				child, err := arc.NewChild(ev, "invoice.created", map[string]int{"n": 1}, arc.Meta{})
				if err != nil {
					return err
				}
				return f.ob.Write(ctx, tx, outbox.Entry{Topic: f.topic, Event: child})
			}
			for _, emit := range []bool{false, true} {
				suffix := ""
				if emit {
					suffix = "+emit"
				}
				b.Run("plain"+suffix, func(b *testing.B) {
					evs := events(b, b.N)
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						tx, err := f.db.BeginTx(ctx, nil)
						require.NoError(b, err)
						require.NoError(b, work(ctx, tx, evs[i], emit))
						require.NoError(b, tx.Commit())
					}
				})
				if !emit {
					b.Run("plain2rows", func(b *testing.B) {
						evs := events(b, b.N)
						b.ResetTimer()
						for i := 0; i < b.N; i++ {
							tx, err := f.db.BeginTx(ctx, nil)
							require.NoError(b, err)
							require.NoError(b, work(ctx, tx, evs[i], false))
							_, err = tx.ExecContext(ctx, insert, "bench2", evs[i].Meta.ID)
							require.NoError(b, err)
							require.NoError(b, tx.Commit())
						}
					})
				}
				b.Run("inbox"+suffix, func(b *testing.B) {
					evs := events(b, b.N)
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						out, err := f.ib.Process(ctx, "bench", evs[i], func(ctx context.Context) error {
							tx, err := Tx(ctx)
							if err != nil {
								return err
							}
							return work(ctx, tx, evs[i], emit)
						})
						require.NoError(b, err)
						require.Equal(b, Applied, out)
					}
				})
			}
			// A duplicate costs a rolled-back transaction with one insert
			// attempt, and runs no handler.
			b.Run("duplicate", func(b *testing.B) {
				ev := events(b, 1)[0]
				noop := func(context.Context) error { return nil }
				_, err := f.ib.Process(ctx, "bench", ev, noop)
				require.NoError(b, err)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					out, err := f.ib.Process(ctx, "bench", ev, noop)
					require.NoError(b, err)
					require.Equal(b, Duplicate, out)
				}
			})
			if d != outbox.PostgreSQL {
				return
			}
			ib := f.pgxInbox()
			pgxInsert := "INSERT INTO " + f.ledger + " (consumer, event_id) VALUES ($1, $2)"
			b.Run("pgx-plain", func(b *testing.B) {
				evs := events(b, b.N)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					tx, err := f.pool.BeginTx(ctx, pgx.TxOptions{})
					require.NoError(b, err)
					_, err = tx.Exec(ctx, pgxInsert, "bench", evs[i].Meta.ID)
					require.NoError(b, err)
					require.NoError(b, tx.Commit(ctx))
				}
			})
			b.Run("pgx-inbox", func(b *testing.B) {
				evs := events(b, b.N)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					_, err := ib.Process(ctx, "bench", evs[i], func(ctx context.Context) error {
						tx, err := PgxTx(ctx)
						if err != nil {
							return err
						}
						_, err = tx.Exec(ctx, pgxInsert, "bench", evs[i].Meta.ID)
						return err
					})
					require.NoError(b, err)
				}
			})
		})
	}
}

// events returns n new events.
func events(b *testing.B, n int) []arc.Event {
	out := make([]arc.Event, n)
	for i := range out {
		ev, err := arc.NewEvent("order.created", map[string]int{"n": i}, arc.Meta{})
		require.NoError(b, err)
		out[i] = ev
	}
	return out
}
