package inbox

import (
	"context"
	stdsql "database/sql"
	"slices"
	"testing"
	"time"

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

// BenchmarkInboxCost is BenchmarkHandlerTx's comparison interleaved: each
// iteration runs the plain transaction (one row), the two-row one and the
// inbox one (one row plus the record) back to back, so that a machine
// shared with other work slows all three alike, and reports each one's
// median (plain-ns, 2rows-ns, inbox-ns) and inbox-ns over 2rows-ns (the
// target: at most 1). "+emit" adds an emitted event written to the outbox
// in all three.
func BenchmarkInboxCost(b *testing.B) {
	for _, d := range []outbox.Dialect{outbox.PostgreSQL, outbox.MySQL, outbox.SQLite} {
		for _, emit := range []bool{false, true} {
			name := d.String()
			if emit {
				name += "+emit"
			}
			b.Run(name, func(b *testing.B) {
				f := newFixture(b, d, nil)
				ctx := context.Background()
				insert := f.bind("INSERT INTO " + f.ledger + " (consumer, event_id) VALUES (?, ?)")
				work := func(ctx context.Context, tx *stdsql.Tx, ev arc.Event, rows int) error {
					for r := 0; r < rows; r++ {
						if _, err := tx.ExecContext(ctx, insert, "bench", ev.Meta.ID); err != nil {
							return err
						}
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
				plain := func(ev arc.Event, rows int) {
					tx, err := f.db.BeginTx(ctx, nil)
					require.NoError(b, err)
					require.NoError(b, work(ctx, tx, ev, rows))
					require.NoError(b, tx.Commit())
				}
				withInbox := func(ev arc.Event) {
					out, err := f.ib.Process(ctx, "bench", ev, func(ctx context.Context) error {
						tx, err := Tx(ctx)
						if err != nil {
							return err
						}
						return work(ctx, tx, ev, 1)
					})
					require.NoError(b, err)
					require.Equal(b, Applied, out)
				}
				evs := events(b, 3*b.N)
				times := [3][]time.Duration{}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					t0 := time.Now()
					plain(evs[3*i], 1)
					t1 := time.Now()
					plain(evs[3*i+1], 2)
					t2 := time.Now()
					withInbox(evs[3*i+2])
					t3 := time.Now()
					times[0] = append(times[0], t1.Sub(t0))
					times[1] = append(times[1], t2.Sub(t1))
					times[2] = append(times[2], t3.Sub(t2))
				}
				b.StopTimer()
				med := func(ds []time.Duration) float64 {
					slices.Sort(ds)
					return float64(ds[len(ds)/2].Nanoseconds())
				}
				p, two, ib := med(times[0]), med(times[1]), med(times[2])
				b.ReportMetric(p, "plain-ns")
				b.ReportMetric(two, "2rows-ns")
				b.ReportMetric(ib, "inbox-ns")
				b.ReportMetric(ib/two, "inbox/2rows")
			})
		}
	}
}
