package outbox

import (
	"context"
	stdsql "database/sql"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// fastOutage retries a failing database or transport quickly, so that
// the tests see several failed passes and the recovery soon.
var fastOutage = Backoff{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond}

// runErr starts relay.Run and returns the channel its result arrives on.
func runErr(ctx context.Context, relay *Relay) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- relay.Run(ctx) }()
	return ch
}

// Run on a table Migrate never created returns at once, wrapping
// ErrMissingTable and naming the table, instead of running quietly.
func TestRun_FailsFastOnAMissingTable(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		ob, err := New(openDB(t, d), Config{Dialect: d, Table: uniqueTable()})
		require.NoError(t, err)
		relay, err := ob.NewRelay(newRecorder(), RelayConfig{})
		require.NoError(t, err)
		err = wait(t, runErr(context.Background(), relay), "Run to fail")
		require.ErrorIs(t, err, ErrMissingTable)
		assert.ErrorContains(t, err, ob.Table())
		wait(t, relay.Running(), "Running to be closed: nobody waits for ever on a Run that returned")
		assert.False(t, relay.Status().Running)
		assert.ErrorIs(t, relay.Run(context.Background()), ErrRelayClosed, "a relay runs once")
	})
}

// Run with credentials the database refuses returns at once, wrapping
// ErrAccessDenied and the server's own error.
func TestRun_FailsFastOnBadCredentials(t *testing.T) {
	t.Parallel()
	nobody := "arcmill_nobody_" + uuid.NewString()[:8]
	pg, err := url.Parse(testenv.PostgresDSN(t))
	require.NoError(t, err)
	pg.User = url.UserPassword(nobody, "wrong")
	my, err := mysql.ParseDSN(testenv.MySQLDSN(t))
	require.NoError(t, err)
	my.User, my.Passwd = nobody, "wrong"
	for _, c := range []struct {
		d           Dialect
		driver, dsn string
		server      string // what the server's own error says
	}{
		{PostgreSQL, "pgx", pg.String(), "28"},                     // SQLSTATE class 28: invalid authorization
		{MySQL, "mysql", my.FormatDSN(), "(28000): Access denied"}, // 1045, or MariaDB's 1698
	} {
		t.Run(c.d.String(), func(t *testing.T) {
			t.Parallel()
			db, err := stdsql.Open(c.driver, c.dsn)
			require.NoError(t, err)
			t.Cleanup(func() { assert.NoError(t, db.Close()) })
			ob, err := New(db, Config{Table: uniqueTable()})
			require.NoError(t, err)
			relay, err := ob.NewRelay(newRecorder(), RelayConfig{})
			require.NoError(t, err)
			err = wait(t, runErr(context.Background(), relay), "Run to fail")
			require.ErrorIs(t, err, ErrAccessDenied)
			assert.ErrorContains(t, err, c.server)
			assert.NotErrorIs(t, err, ErrMissingTable)
		})
	}
}

// A database that cannot be reached at start is an outage, not a
// mistake: Run starts, reports it as failing (not permanent), retries,
// and returns the cause of its context's end.
func TestRun_UnreachableDatabaseIsReportedNotFatal(t *testing.T) {
	t.Parallel()
	pg, err := url.Parse(testenv.PostgresDSN(t))
	require.NoError(t, err)
	pg.Host = "127.0.0.1:1" // nothing listens there
	my, err := mysql.ParseDSN(testenv.MySQLDSN(t))
	require.NoError(t, err)
	my.Addr = "127.0.0.1:1"
	for d, c := range map[Dialect]struct{ driver, dsn string }{
		PostgreSQL: {"pgx", pg.String()}, MySQL: {"mysql", my.FormatDSN()},
	} {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			db, err := stdsql.Open(c.driver, c.dsn)
			require.NoError(t, err)
			t.Cleanup(func() { assert.NoError(t, db.Close()) })
			ob, err := New(db, Config{Table: uniqueTable()})
			require.NoError(t, err)
			relay, err := ob.NewRelay(newRecorder(), RelayConfig{OutageBackoff: fastOutage})
			require.NoError(t, err)
			ctx, cancel := context.WithCancelCause(context.Background())
			done := runErr(ctx, relay)
			wait(t, relay.Running(), "the relay to run")
			require.Eventually(t, func() bool { return relay.Status().FailedPasses >= 3 }, waitTimeout, time.Millisecond)
			st := relay.Status()
			assert.Equal(t, RelayFailing, st.State)
			assert.False(t, st.Permanent)
			assert.True(t, st.Running)
			var re RelayError
			require.ErrorAs(t, st.LastError, &re)
			assert.Equal(t, ClaimFailed, re.Kind)
			shutdown := errors.New("shutting down")
			cancel(shutdown)
			assert.Equal(t, shutdown, wait(t, done, "Run to return"), "Run returns context.Cause")
		})
	}
}

// A table dropped under a running relay is reported loudly (Status
// failing and permanent, OnError with ErrMissingTable) and retried with
// backoff, not in a tight loop; once Migrate puts it back the relay is
// healthy and relays again without a restart.
func TestRun_TableDroppedWhileRunningIsReportedAndRecovered(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, false)
		rec := newRecorder()
		var mu sync.Mutex
		var missing int
		relay, err := f.ob.NewRelay(rec, RelayConfig{OutageBackoff: fastOutage, OnError: func(e RelayError) {
			if e.Kind == ClaimFailed && errors.Is(e, ErrMissingTable) {
				mu.Lock()
				missing++
				mu.Unlock()
			}
		}})
		require.NoError(t, err)
		stop := run(t, relay)
		first := f.event("order.created", arc.Meta{})
		f.commit(Entry{Topic: "t", Event: first})
		require.Eventually(t, func() bool { return len(rec.ids()) == 1 }, waitTimeout, time.Millisecond)
		require.True(t, relay.Status().Healthy())
		// LastPass is set once the pass that published has settled.
		require.Eventually(t, func() bool { return !relay.Status().LastPass.IsZero() }, waitTimeout, time.Millisecond)

		ctx := context.Background()
		_, err = f.db.ExecContext(ctx, "DROP TABLE "+f.ob.Table())
		require.NoError(t, err)
		require.Eventually(t, func() bool { return relay.Status().FailedPasses >= 3 }, waitTimeout, time.Millisecond)
		st := relay.Status()
		assert.Equal(t, RelayFailing, st.State)
		assert.True(t, st.Permanent, "%v", st.LastError)
		assert.ErrorIs(t, st.LastError, ErrMissingTable)
		assert.True(t, st.Running, "Run keeps going: fixing the table is enough")
		mu.Lock()
		assert.GreaterOrEqual(t, missing, 3)
		mu.Unlock()

		require.NoError(t, f.ob.Migrate(ctx))
		require.Eventually(t, func() bool { return relay.Status().Healthy() }, waitTimeout, time.Millisecond)
		assert.Zero(t, relay.Status().FailedPasses)
		assert.Nil(t, relay.Status().LastError)
		second := f.event("order.created", arc.Meta{})
		f.commit(Entry{Topic: "t", Event: second})
		require.Eventually(t, func() bool { return len(rec.ids()) == 2 }, waitTimeout, time.Millisecond)
		assert.Equal(t, []string{first.Meta.ID, second.Meta.ID}, rec.ids())
		stop()
		assert.False(t, relay.Status().Running)
	})
}

// A relay whose user may read the table but not update it is refused at
// start, not left to fail on every claim: the start-up check asks for
// the right to update too.
func TestRun_FailsFastWithoutTheRightToUpdate(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		if d == SQLite {
			return // no users, no grants
		}
		f := newFixture(t, d, false)
		user := "arcmill_ro_" + uuid.NewString()[:8]
		ctx := context.Background()
		var dsn string
		switch d {
		case PostgreSQL:
			for _, s := range []string{"CREATE ROLE " + user + " LOGIN PASSWORD 'ro'",
				"GRANT SELECT ON " + f.ob.Table() + ", " + f.ob.Table() + "_lock TO " + user} {
				_, err := f.db.ExecContext(ctx, s)
				require.NoError(t, err, s)
			}
			t.Cleanup(func() {
				for _, s := range []string{"DROP OWNED BY " + user, "DROP ROLE " + user} {
					_, err := f.db.ExecContext(context.Background(), s)
					assert.NoError(t, err, s)
				}
			})
			u, err := url.Parse(testenv.PostgresDSN(t))
			require.NoError(t, err)
			u.User = url.UserPassword(user, "ro")
			dsn = u.String()
		case MySQL:
			for _, s := range []string{"CREATE USER '" + user + "'@'%' IDENTIFIED BY 'ro'",
				"GRANT SELECT ON " + f.ob.Table() + " TO '" + user + "'@'%'",
				"GRANT SELECT ON " + f.ob.Table() + "_lock TO '" + user + "'@'%'"} {
				_, err := f.db.ExecContext(ctx, s)
				require.NoError(t, err, s)
			}
			t.Cleanup(func() {
				_, err := f.db.ExecContext(context.Background(), "DROP USER '"+user+"'@'%'")
				assert.NoError(t, err)
			})
			cfg, err := mysql.ParseDSN(testenv.MySQLDSN(t))
			require.NoError(t, err)
			cfg.User, cfg.Passwd = user, "ro"
			dsn = cfg.FormatDSN()
		}
		db, err := stdsql.Open(map[Dialect]string{PostgreSQL: "pgx", MySQL: "mysql"}[d], dsn)
		require.NoError(t, err)
		t.Cleanup(func() { assert.NoError(t, db.Close()) })
		ob, err := New(db, Config{Table: f.ob.Table()})
		require.NoError(t, err)
		_, err = ob.Status(ctx)
		require.NoError(t, err, "the user can read the table")
		relay, err := ob.NewRelay(newRecorder(), RelayConfig{})
		require.NoError(t, err)
		err = wait(t, runErr(ctx, relay), "Run to fail")
		require.ErrorIs(t, err, ErrAccessDenied)
		assert.ErrorContains(t, err, "UPDATE")
	})
}

// RelayBatch, for hosts that relay on a timer, reports through Status as
// Run does, and its error says when the table is missing.
func TestRelayBatch_ReportsThroughStatus(t *testing.T) {
	t.Parallel()
	f := newFixture(t, SQLite, false)
	relay, err := f.ob.NewRelay(newRecorder(), RelayConfig{})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = relay.RelayBatch(ctx)
	require.NoError(t, err)
	assert.True(t, relay.Status().Healthy())
	assert.False(t, relay.Status().LastPass.IsZero())
	assert.False(t, relay.Status().Running, "RelayBatch is not Run")

	_, err = f.db.ExecContext(ctx, "DROP TABLE "+f.ob.Table())
	require.NoError(t, err)
	_, err = relay.RelayBatch(ctx)
	require.ErrorIs(t, err, ErrMissingTable)
	st := relay.Status()
	assert.Equal(t, RelayFailing, st.State)
	assert.True(t, st.Permanent)
	assert.Equal(t, 1, st.FailedPasses)

	require.NoError(t, f.ob.Migrate(ctx))
	_, err = relay.RelayBatch(ctx)
	require.NoError(t, err)
	assert.True(t, relay.Status().Healthy())
}
