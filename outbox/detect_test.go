package outbox

import (
	"context"
	stdsql "database/sql"
	"database/sql/driver"
	"errors"
	"testing"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// A zero Config finds the dialect from the real database's driver, and
// the outbox it gives migrates, writes and relays: a SQLite or MySQL
// user who leaves Dialect unset gets a working outbox, not PostgreSQL's
// statements.
func TestNew_DetectsTheDialect(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		db := openDB(t, d)
		got, err := DialectOf(db)
		require.NoError(t, err)
		assert.Equal(t, d, got)

		f := newFixtureOn(t, DetectDialect, db, uniqueTable(), false)
		assert.Equal(t, d, f.ob.Dialect())
		ev := f.event("order.created", arc.Meta{})
		f.commit(Entry{Topic: "arc:events", Event: ev})
		pub := newRecorder()
		relay, err := f.ob.NewRelay(pub, RelayConfig{})
		require.NoError(t, err)
		res, err := relay.RelayBatch(context.Background())
		require.NoError(t, err)
		assert.Equal(t, 1, res.Relayed)
		assert.Equal(t, []string{ev.Meta.ID}, pub.ids())
	})
}

// A database opened from a connector (sql.OpenDB), which has no driver
// name, is detected by its driver's type too.
func TestDialectOf_Connector(t *testing.T) {
	t.Parallel()
	pgCfg, err := pgx.ParseConfig(testenv.PostgresDSN(t))
	require.NoError(t, err)
	pg := stdlib.OpenDB(*pgCfg)
	t.Cleanup(func() { assert.NoError(t, pg.Close()) })
	got, err := DialectOf(pg)
	require.NoError(t, err)
	assert.Equal(t, PostgreSQL, got)

	myCfg, err := mysql.ParseDSN(testenv.MySQLDSN(t))
	require.NoError(t, err)
	conn, err := mysql.NewConnector(myCfg)
	require.NoError(t, err)
	my := stdsql.OpenDB(conn)
	t.Cleanup(func() { assert.NoError(t, my.Close()) })
	got, err = DialectOf(my)
	require.NoError(t, err)
	assert.Equal(t, MySQL, got)
}

// wrappedDriver stands for a driver the outbox does not know, such as
// one wrapped for tracing.
type wrappedDriver struct{}

func (wrappedDriver) Open(string) (driver.Conn, error) { return nil, errors.New("not a database") }

// A driver of unknown type is an error that asks for Config.Dialect,
// never a guess.
func TestNew_UnknownDriverAsksForTheDialect(t *testing.T) {
	t.Parallel()
	db := stdsql.OpenDB(wrappedConnector{})
	t.Cleanup(func() { assert.NoError(t, db.Close()) })
	_, err := New(db, Config{})
	require.ErrorIs(t, err, ErrInvalidConfig)
	assert.ErrorContains(t, err, "outbox.wrappedDriver")
	assert.ErrorContains(t, err, "set Config.Dialect")

	ob, err := New(db, Config{Dialect: MySQL})
	require.NoError(t, err, "an explicit Dialect needs no detection")
	assert.Equal(t, MySQL, ob.Dialect())
	_, err = Schema(Config{})
	assert.ErrorIs(t, err, ErrInvalidConfig, "Schema has no database to detect from")
}

type wrappedConnector struct{}

func (wrappedConnector) Connect(context.Context) (driver.Conn, error) {
	return nil, errors.New("not a database")
}
func (wrappedConnector) Driver() driver.Driver { return wrappedDriver{} }

// ParseDialect reads every name Dialect.String gives, and the usual
// aliases, in any case; it refuses others with ErrInvalidConfig.
func TestParseDialect(t *testing.T) {
	t.Parallel()
	for _, d := range []Dialect{PostgreSQL, MySQL, SQLite} {
		got, err := ParseDialect(d.String())
		require.NoError(t, err)
		assert.Equal(t, d, got)
	}
	for name, want := range map[string]Dialect{"PostgreSQL": PostgreSQL, "pg": PostgreSQL, "MariaDB": MySQL, "sqlite3": SQLite} {
		got, err := ParseDialect(name)
		require.NoError(t, err)
		assert.Equal(t, want, got, name)
	}
	for _, name := range []string{"", "detect", "oracle", "postgres;"} {
		_, err := ParseDialect(name)
		assert.ErrorIs(t, err, ErrInvalidConfig, name)
	}
}

// The forwarder path detects the dialect too where it has a database:
// PostgreSQL gets watermill-sql's PostgreSQL adapters, and SQLite the
// error that watermill-sql has no SQLite dialect (not PostgreSQL's).
func TestForwarderDetectsTheDialect(t *testing.T) {
	t.Parallel()
	schema, _, err := DetectDialect.schema(openDB(t, PostgreSQL))
	require.NoError(t, err)
	assert.IsType(t, wsql.DefaultPostgreSQLSchema{}, schema)
	_, _, err = DetectDialect.schema(openDB(t, SQLite))
	require.ErrorIs(t, err, ErrInvalidConfig)
	assert.ErrorContains(t, err, "no SQLite dialect")
	_, err = TxPublisher(&stdsql.Tx{}, DetectDialect, "")
	assert.ErrorContains(t, err, "give the dialect", "a transaction does not tell its driver")
}
