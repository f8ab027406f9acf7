package inbox

import "context"

// sqliteEngine is SQLite 3.35+ (modernc.org/sqlite), one writer at a time:
// a duplicate waits for the database's write lock (busy_timeout), then
// finds the record. Open it as the outbox advises: WAL, busy_timeout and
// _txlock=immediate.
type sqliteEngine struct{}

func (sqliteEngine) migration(t string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
	consumer TEXT NOT NULL,
	dedupe_key TEXT NOT NULL,
	event_id TEXT NOT NULL,
	event_type TEXT NOT NULL DEFAULT '',
	processed_at INTEGER NOT NULL,
	PRIMARY KEY (consumer, dedupe_key)
)`,
		`CREATE INDEX IF NOT EXISTS ` + t + `_processed ON ` + t + ` (processed_at)`,
	}
}

func (sqliteEngine) migrate(ctx context.Context, c conn, _ string, stmts []string) error {
	return execAll(ctx, c.exec, stmts)
}

func (sqliteEngine) record(t string) string {
	return `INSERT INTO ` + t + ` (consumer, dedupe_key, event_id, event_type, processed_at)
VALUES (?, ?, ?, ?, ?) ON CONFLICT (consumer, dedupe_key) DO NOTHING`
}

func (sqliteEngine) seen(t string) string {
	return `SELECT COUNT(*) FROM ` + t + ` WHERE consumer = ? AND dedupe_key = ?`
}

func (sqliteEngine) count(t string) string {
	return `SELECT COUNT(*) FROM ` + t + ` WHERE consumer = ?`
}

func (sqliteEngine) purge(t string) string {
	return `DELETE FROM ` + t + ` WHERE rowid IN (SELECT rowid FROM ` + t + ` WHERE processed_at < ? LIMIT ?)`
}
