package outbox

import (
	"context"
	stdsql "database/sql"
	"strconv"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)

// Dialect is a database flavour.
type Dialect int

const (
	// DetectDialect, the zero Dialect, has New find the dialect from the
	// *sql.DB's driver (DialectOf). Where it cannot, New fails and asks
	// for Config.Dialect: a silent guess would fail later with the
	// database's own puzzling error (a SQLite outbox taken for PostgreSQL
	// reports "no such function: pg_advisory_xact_lock").
	DetectDialect Dialect = iota
	// PostgreSQL needs version 13 or newer (watermill-sql's schema uses xid8).
	PostgreSQL
	// MySQL covers MySQL 8 and MariaDB 10.6+ (both have SKIP LOCKED).
	MySQL
	// SQLite is the embedded database, through modernc.org/sqlite (no cgo)
	// or any database/sql driver for SQLite 3.35+. Only arcmill's outbox
	// supports it; watermill-sql, and so the forwarder path, does not.
	SQLite
)

// String names the dialect: "postgres", "mysql", "sqlite", or "detect"
// for DetectDialect.
func (d Dialect) String() string {
	if e := d.engine(); e != nil {
		return e.name()
	}
	if d == DetectDialect {
		return "detect"
	}
	return "dialect(" + strconv.Itoa(int(d)) + ")"
}

// engine is everything that differs between the databases of the
// Dialects: SQL syntax, the migration, how a claim runs, and what the
// database offers (row locks, LISTEN/NOTIFY). Each implementation lives
// in its own file (dialect_postgres.go, dialect_mysql.go,
// dialect_sqlite.go), as watermill-sql's schema adapters and River's
// drivers do; the rest of the package asks the engine instead of
// branching on the Dialect.
type engine interface {
	// name is the Dialect's String.
	name() string

	// bind rewrites a statement written with ? placeholders into the
	// database's own. Statements never hold a literal ?.
	bind(query string) string
	// migration returns the statements that create table and its
	// companions idempotently, in order.
	migration(table string) []string
	// migrate runs the migration's statements, made safe against
	// concurrent migrations where the database needs it.
	migrate(ctx context.Context, db *stdsql.DB, table string, stmts []string) error
	// onDuplicate ends the multi-row INSERT so that a repeated dedupe key
	// is a no-op, never an error.
	onDuplicate() string
	// purge deletes up to n rows (the last ? argument) that match cond,
	// oldest first.
	purge(table, cond string) string

	// txOptions are the options of the package's own transactions: each
	// read must see the latest commits, as PostgreSQL's default does.
	txOptions() *stdsql.TxOptions
	// claim leases the rows c selects to c.owner, in any order.
	claim(ctx context.Context, o *Outbox, c claimRequest) ([]*row, error)
	// rowLocks reports whether the database has SELECT … FOR UPDATE SKIP
	// LOCKED, which lock mode (ClaimLock) and unkeyed lease claims use.
	rowLocks() bool
	// idArrays reports whether a list of ids can be one array parameter
	// (id = ANY(?)), which PostgreSQL binds and plans once for any length.
	idArrays() bool
	// startLockedPass prepares the transaction of a lock-mode pass whose
	// rows must be freed once it has stalled longer than lease.
	startLockedPass(ctx context.Context, tx *stdsql.Tx, lease time.Duration) error
	// notifies reports whether the database wakes relays when rows commit
	// (LISTEN/NOTIFY, notify.go).
	notifies() bool
	// forwarderSchema returns watermill-sql's adapters for the forwarder
	// path, or an error wrapping ErrInvalidConfig where it has none.
	forwarderSchema() (wsql.SchemaAdapter, wsql.OffsetsAdapter, error)
	// arcColumnsQuery counts the stored Arc JSON's columns (arc_json,
	// arc_json_crc) of the table named by its one argument, from the
	// catalog: it never fails for a missing column, so it may run inside
	// a caller's transaction (a failed statement would abort a
	// PostgreSQL transaction).
	arcColumnsQuery() string
}

// engines holds each Dialect's engine, indexed by the Dialect.
var engines = [...]engine{PostgreSQL: postgresEngine{}, MySQL: mysqlEngine{}, SQLite: sqliteEngine{}}

// engine returns the dialect's engine, nil for DetectDialect and an
// unknown dialect.
func (d Dialect) engine() engine {
	if d <= DetectDialect || int(d) >= len(engines) {
		return nil
	}
	return engines[d]
}

// execAll runs stmts in order on db.
func execAll(ctx context.Context, db queryer, stmts []string) error {
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	return nil
}
