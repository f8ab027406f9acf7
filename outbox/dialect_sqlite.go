package outbox

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)

// sqliteEngine is SQLite 3.35+: ? placeholders, UPDATE … RETURNING and
// one writer at a time, so no row locks, no lock row and no NOTIFY.
type sqliteEngine struct{}

func (sqliteEngine) name() string { return "sqlite" }

func (sqliteEngine) bind(s string) string { return s }

func (sqliteEngine) migration(t string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	event_id TEXT NOT NULL,
	topic TEXT NOT NULL,
	event_type TEXT NOT NULL DEFAULT '',
	payload BLOB,
	metadata TEXT NOT NULL,
	dedupe_key TEXT UNIQUE,
	partition_key TEXT,
	status INTEGER NOT NULL DEFAULT 0,
	visible_at INTEGER NOT NULL,
	lease_owner TEXT,
	lease_until INTEGER NOT NULL DEFAULT 0,
	claims INTEGER NOT NULL DEFAULT 0,
	attempts INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	delivered_at INTEGER,
	first_failed_at INTEGER,
	last_failed_at INTEGER,
	last_error TEXT,
	arc_json BLOB,
	arc_json_crc INTEGER
)`,
		`CREATE INDEX IF NOT EXISTS ` + t + `_pending ON ` + t + ` (id) WHERE status = 0`,
		`CREATE INDEX IF NOT EXISTS ` + t + `_partition ON ` + t + ` (partition_key, id) WHERE status = 0`,
		`CREATE INDEX IF NOT EXISTS ` + t + `_settled ON ` + t + ` (status, delivered_at)`,
	}

}

// migrate also adds the stored Arc JSON's columns to a table of arcmill
// before 2026-12: SQLite's ALTER TABLE … ADD COLUMN has no IF NOT EXISTS
// and its SQL no conditional, so the guard is here, not in the script
// (Schema); the CHANGELOG gives the two statements for such a table.
func (e sqliteEngine) migrate(ctx context.Context, db *stdsql.DB, table string, stmts []string) error {
	if err := execAll(ctx, db, stmts); err != nil {
		return err
	}
	var n int
	if err := db.QueryRowContext(ctx, e.arcColumnsQuery(), table).Scan(&n); err != nil {
		return err
	}
	if n == 2 {
		return nil
	}
	return execAll(ctx, db, sqliteAddArcColumns(table))
}

// sqliteAddArcColumns adds the stored Arc JSON's columns to an older
// table.
func sqliteAddArcColumns(t string) []string {
	return []string{"ALTER TABLE " + t + " ADD COLUMN arc_json BLOB", "ALTER TABLE " + t + " ADD COLUMN arc_json_crc INTEGER"}
}

func (sqliteEngine) onDuplicate() string { return " ON CONFLICT (dedupe_key) DO NOTHING" }

func (sqliteEngine) purge(table, cond string) string {
	return "DELETE FROM " + table + " WHERE id IN (SELECT id FROM " + table + " WHERE " + cond + " ORDER BY id LIMIT ?)"
}

func (sqliteEngine) txOptions() *stdsql.TxOptions { return nil }

// claim is one statement outside any transaction: SQLite runs one writer
// at a time, keyed or not.
func (sqliteEngine) claim(ctx context.Context, o *Outbox, c claimRequest) ([]*row, error) {
	return o.claimReturning(ctx, o.db, c)
}

func (sqliteEngine) rowLocks() bool { return false }

// startLockedPass is never called: NewRelay refuses lock mode without row
// locks.
func (sqliteEngine) startLockedPass(context.Context, *stdsql.Tx, time.Duration) error { return nil }

func (sqliteEngine) notifies() bool { return false }

func (sqliteEngine) forwarderSchema() (wsql.SchemaAdapter, wsql.OffsetsAdapter, error) {
	return nil, nil, fmt.Errorf("%w: watermill-sql has no SQLite dialect; use Outbox", ErrInvalidConfig)
}

func (sqliteEngine) idArrays() bool { return false }

func (sqliteEngine) arcColumnsQuery() string {
	return "SELECT COUNT(*) FROM pragma_table_info(?) WHERE name IN ('arc_json', 'arc_json_crc')"
}
