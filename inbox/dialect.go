package inbox

import (
	"context"

	"github.com/arcmill/arcmill/outbox"
)

// engine is everything that differs between the databases of
// outbox.Dialect, in the outbox's manner: one implementation per file
// (dialect_postgres.go, dialect_mysql.go, dialect_sqlite.go), each holding
// its own SQL, and the rest of the package asks the engine instead of
// branching on the dialect.
type engine interface {
	// migration returns the statements that create table idempotently.
	migration(table string) []string
	// migrate runs them, made safe against concurrent migrations where
	// the database needs it.
	migrate(ctx context.Context, c conn, table string, stmts []string) error
	// record is the INSERT of one record (consumer, dedupe_key, event_id,
	// event_type, processed_at) that affects 1 row when the key is new and
	// 0, without an error and without aborting the transaction, when it is
	// already recorded. A concurrent transaction recording the same key
	// waits for the first to end: the unique key serialises duplicates.
	record(table string) string
	// seen counts the records of (consumer, dedupe_key).
	seen(table string) string
	// count counts one consumer's records.
	count(table string) string
	// purge deletes up to n records (second argument) processed before a
	// time (first argument, Unix milliseconds).
	purge(table string) string
}

var engines = [...]engine{outbox.PostgreSQL: postgresEngine{}, outbox.MySQL: mysqlEngine{}, outbox.SQLite: sqliteEngine{}}

// engineOf returns the dialect's engine, nil for an unknown dialect.
func engineOf(d outbox.Dialect) engine {
	if d < 0 || int(d) >= len(engines) {
		return nil
	}
	return engines[d]
}

// execAll runs stmts in order.
func execAll(ctx context.Context, exec func(ctx context.Context, q string, args ...any) (int64, error), stmts []string) error {
	for _, s := range stmts {
		if _, err := exec(ctx, s); err != nil {
			return err
		}
	}
	return nil
}
