package inbox

import (
	"context"
	stdsql "database/sql"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/outbox"
)

// waitTimeout bounds every wait on a condition in these tests.
const waitTimeout = 30 * time.Second

// sqliteDSN opens SQLite the way the outbox recommends: WAL, a busy
// timeout, and write transactions that take the lock up front.
func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"
}

// driverOf is each dialect's database/sql driver name.
var driverOf = map[outbox.Dialect]string{outbox.PostgreSQL: "pgx", outbox.MySQL: "mysql", outbox.SQLite: "sqlite"}

// dsnOf returns a DSN of the dialect; SQLite gets a file under dir.
func dsnOf(t testing.TB, d outbox.Dialect, dir string) string {
	switch d {
	case outbox.PostgreSQL:
		return testenv.PostgresDSN(t)
	case outbox.MySQL:
		return testenv.MySQLDSN(t)
	}
	return sqliteDSN(filepath.Join(dir, "inbox.db"))
}

// openDB opens a real database of the dialect.
func openDB(t testing.TB, d outbox.Dialect, dsn string) *stdsql.DB {
	t.Helper()
	db, err := stdsql.Open(driverOf[d], dsn)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) })
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32) // a new PostgreSQL connection is slow under -race
	require.NoError(t, db.Ping())
	return db
}

// fixture is an inbox and a consumer outbox on fresh tables, with a
// ledger (no unique key: a second application shows as a second row).
type fixture struct {
	t      testing.TB
	d      outbox.Dialect
	dsn    string
	db     *stdsql.DB
	pool   *pgxpool.Pool // PostgreSQL only
	ob     *outbox.Outbox
	ib     *Inbox
	cfg    Config
	ledger string
	topic  string
}

// newFixture makes one; tweak adjusts the inbox's Config.
func newFixture(t testing.TB, d outbox.Dialect, tweak func(*Config)) *fixture {
	t.Helper()
	dsn := dsnOf(t, d, t.TempDir())
	f := &fixture{t: t, d: d, dsn: dsn, db: openDB(t, d, dsn), topic: "inbox.test.emitted"}
	suffix := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	obTable, ibTable := "arcmill_ibo_"+suffix, "arcmill_ib_"+suffix
	f.ledger = ibTable + "_ledger"
	ctx := context.Background()
	var err error
	f.ob, err = outbox.New(f.db, outbox.Config{Dialect: d, Table: obTable})
	require.NoError(t, err)
	require.NoError(t, f.ob.Migrate(ctx))
	f.cfg = Config{Dialect: d, Table: ibTable, Outbox: f.ob, EmitTopic: f.topic}
	if tweak != nil {
		tweak(&f.cfg)
	}
	f.ib, err = New(f.db, f.cfg)
	require.NoError(t, err)
	require.NoError(t, f.ib.Migrate(ctx))
	require.NoError(t, f.ib.Migrate(ctx), "Migrate is idempotent")
	_, err = f.db.ExecContext(ctx, "CREATE TABLE "+f.ledger+" (consumer VARCHAR(255) NOT NULL, event_id VARCHAR(255) NOT NULL)")
	require.NoError(t, err)
	t.Cleanup(func() {
		drops := []string{f.ledger, ibTable, obTable, obTable + "_lock"}
		for _, tb := range drops {
			_, err := f.db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+tb)
			assert.NoError(t, err, tb)
		}
		if d == outbox.PostgreSQL {
			_, _ = f.db.ExecContext(context.Background(), "DROP FUNCTION IF EXISTS "+obTable+"_notify()")
		}
	})
	return f
}

// pgxInbox returns an inbox on a pgx pool over the fixture's tables
// (PostgreSQL only).
func (f *fixture) pgxInbox() *Inbox {
	f.t.Helper()
	if f.pool == nil {
		pool, err := pgxpool.New(context.Background(), f.dsn)
		require.NoError(f.t, err)
		f.t.Cleanup(pool.Close)
		f.pool = pool
	}
	ib, err := NewPgx(f.pool, f.cfg)
	require.NoError(f.t, err)
	return ib
}

// bind writes ? placeholders in the dialect's style.
func (f *fixture) bind(q string) string {
	if f.d != outbox.PostgreSQL {
		return q
	}
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// effect is a handler's business write: one ledger row.
func (f *fixture) effect(ctx context.Context, tx *stdsql.Tx, consumer string, ev arc.Event) error {
	_, err := tx.ExecContext(ctx, f.bind("INSERT INTO "+f.ledger+" (consumer, event_id) VALUES (?, ?)"), consumer, ev.Meta.ID)
	return err
}

// applied counts the ledger rows of an event id ("" for all).
func (f *fixture) applied(id string) int {
	f.t.Helper()
	var n int
	q, args := "SELECT COUNT(*) FROM "+f.ledger, []any{}
	if id != "" {
		q, args = q+f.bind(" WHERE event_id = ?"), []any{id}
	}
	require.NoError(f.t, f.db.QueryRow(q, args...).Scan(&n))
	return n
}

// dialects runs fn for PostgreSQL, MySQL and SQLite as parallel subtests:
// each fixture has its own tables (and SQLite its own file).
func dialects(t *testing.T, fn func(t *testing.T, d outbox.Dialect)) {
	for _, d := range []outbox.Dialect{outbox.PostgreSQL, outbox.MySQL, outbox.SQLite} {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			fn(t, d)
		})
	}
}

// newEvent returns an event of typ.
func newEvent(t testing.TB, typ string, meta arc.Meta) arc.Event {
	t.Helper()
	ev, err := arc.NewEvent(typ, map[string]string{"order": uuid.NewString()}, meta)
	require.NoError(t, err)
	return ev
}
