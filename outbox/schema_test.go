package outbox

import (
	"context"
	stdsql "database/sql"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// The script Schema prints, run as one multi-statement call the way
// golang-migrate runs a migration file, gives a table that Migrate
// accepts (and leaves as it is) and that a relay works on; running the
// script again changes nothing.
func TestSchema_GivesATableMigrateAndTheRelayAccept(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		db := openDB(t, d)
		if d == MySQL {
			// A migration tool runs the file in one call; MySQL needs
			// the driver's multiStatements for that.
			db = openMultiStatementMySQL(t)
		}
		table := uniqueTable()
		ddl, err := Schema(Config{Dialect: d, Table: table})
		require.NoError(t, err)
		assert.Contains(t, ddl, "CREATE TABLE IF NOT EXISTS "+table+" (")
		ctx := context.Background()
		t.Cleanup(func() { dropOutbox(t, db, d, table) })
		_, err = db.ExecContext(ctx, ddl)
		require.NoError(t, err, "the printed schema runs")
		_, err = db.ExecContext(ctx, ddl)
		require.NoError(t, err, "the printed schema runs again")
		before := columns(t, db, d, table)

		f := newFixtureOn(t, d, db, table, false) // runs Migrate twice
		assert.Equal(t, before, columns(t, db, d, table), "Migrate changes nothing on the printed schema")
		ev := f.event("order.created", arc.Meta{PartitionKey: "o-1", IdempotencyKey: "k-1"})
		f.commit(Entry{Topic: "arc:events", Event: ev})
		f.commit(Entry{Topic: "arc:events", Event: ev}) // deduplicated by the printed unique index
		pub := newRecorder()
		relay, err := f.ob.NewRelay(pub, RelayConfig{})
		require.NoError(t, err)
		res, err := relay.RelayBatch(ctx)
		require.NoError(t, err)
		assert.Equal(t, 1, res.Relayed)
		assert.Equal(t, []string{ev.Meta.ID}, pub.ids())
	})
}

// Schema and Migrate take their statements from one place.
func TestSchema_IsWhatMigrateRuns(t *testing.T) {
	t.Parallel()
	for _, d := range []Dialect{PostgreSQL, MySQL, SQLite} {
		ddl, err := Schema(Config{Dialect: d})
		require.NoError(t, err)
		ob, err := New(&stdsql.DB{}, Config{Dialect: d})
		require.NoError(t, err)
		assert.Equal(t, strings.Join(ob.q.migration(), ";\n\n")+";\n", ddl, d)
		stmts, err := SchemaStatements(Config{Dialect: d})
		require.NoError(t, err)
		assert.Equal(t, ob.q.migration(), stmts, d)
		assert.Contains(t, ddl, "CREATE TABLE IF NOT EXISTS "+DefaultTable+" (", d)
	}
	_, err := Schema(Config{Dialect: PostgreSQL, Table: "Outbox; DROP"})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, err = Schema(Config{Dialect: Dialect(9)})
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

// openMultiStatementMySQL opens the test MySQL with multiStatements=true.
func openMultiStatementMySQL(t *testing.T) *stdsql.DB {
	dsn := testenv.MySQLDSN(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	db, err := stdsql.Open("mysql", dsn+sep+"multiStatements=true")
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) })
	return db
}

// dropOutbox drops what Migrate or Schema created.
func dropOutbox(t *testing.T, db *stdsql.DB, d Dialect, table string) {
	drops := []string{"DROP TABLE IF EXISTS " + table, "DROP TABLE IF EXISTS " + table + "_lock"}
	if d == PostgreSQL {
		drops = append(drops, "DROP FUNCTION IF EXISTS "+table+"_notify()")
	}
	for _, s := range drops {
		_, err := db.ExecContext(context.Background(), s)
		assert.NoError(t, err, s)
	}
}

// columns describes table's columns (name, type, nullability, default),
// in order, from the database's catalog.
func columns(t *testing.T, db *stdsql.DB, d Dialect, table string) []string {
	t.Helper()
	q := `SELECT column_name, data_type, is_nullable, COALESCE(column_default, '') FROM information_schema.columns
		WHERE table_name = ? AND table_schema = ` + map[Dialect]string{PostgreSQL: "current_schema()", MySQL: "DATABASE()"}[d] +
		` ORDER BY ordinal_position`
	if d == PostgreSQL {
		q = PostgreSQL.engine().bind(q)
	}
	if d == SQLite {
		q = `SELECT name, type, "notnull", COALESCE(dflt_value, '') FROM pragma_table_info(?) ORDER BY cid`
	}
	rows, err := db.Query(q, table)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a, b, c, e string
		require.NoError(t, rows.Scan(&a, &b, &c, &e))
		out = append(out, a+" "+b+" "+c+" "+e)
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, out)
	return out
}

// PostgreSQL tables leave room on each page for the rows' delivered
// versions (fillFactor); Migrate gives an older table the setting, and
// leaves a fillfactor someone chose alone.
func TestMigrate_SetsThePostgreSQLFillFactor(t *testing.T) {
	t.Parallel()
	f := newFixture(t, PostgreSQL, false)
	ctx := context.Background()
	table := f.ob.Table()
	reloptions := func() []string {
		var opts []string
		rs, err := f.db.QueryContext(ctx, "SELECT unnest(reloptions) FROM pg_class WHERE oid = $1::regclass", table)
		require.NoError(t, err)
		for rs.Next() {
			var o string
			require.NoError(t, rs.Scan(&o))
			opts = append(opts, o)
		}
		require.NoError(t, closeRows(rs))
		return opts
	}
	assert.Contains(t, reloptions(), "fillfactor="+fillFactor, "a new table")

	_, err := f.db.ExecContext(ctx, "ALTER TABLE "+table+" RESET (fillfactor)") // a table of an older arcmill
	require.NoError(t, err)
	require.NoError(t, f.ob.Migrate(ctx))
	assert.Contains(t, reloptions(), "fillfactor="+fillFactor, "an older table")

	_, err = f.db.ExecContext(ctx, "ALTER TABLE "+table+" SET (fillfactor = 70)")
	require.NoError(t, err)
	require.NoError(t, f.ob.Migrate(ctx))
	assert.Contains(t, reloptions(), "fillfactor=70", "a chosen fillfactor")
}
