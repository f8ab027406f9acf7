package inbox

import (
	"context"
	"hash/fnv"
)

// postgresEngine is PostgreSQL 13+, through database/sql or pgx.
type postgresEngine struct{}

func (postgresEngine) migration(t string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
	consumer VARCHAR(255) NOT NULL,
	dedupe_key VARCHAR(255) NOT NULL,
	event_id TEXT NOT NULL,
	event_type TEXT NOT NULL DEFAULT '',
	processed_at BIGINT NOT NULL,
	PRIMARY KEY (consumer, dedupe_key)
)`,
		`CREATE INDEX IF NOT EXISTS ` + t + `_processed ON ` + t + ` (processed_at)`,
	}
}

// migrate runs the statements one migration at a time, under an advisory
// lock: CREATE … IF NOT EXISTS races in PostgreSQL.
func (postgresEngine) migrate(ctx context.Context, c conn, table string, stmts []string) error {
	tx, err := c.begin(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.rollback(ctx) }()
	h := fnv.New64a()
	_, _ = h.Write([]byte("arcmill_inbox_migrate:" + table))
	if _, err := tx.exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(h.Sum64())); err != nil {
		return err
	}
	if err := execAll(ctx, tx.exec, stmts); err != nil {
		return err
	}
	return tx.commit(ctx)
}

// record: ON CONFLICT DO NOTHING waits for a concurrent inserter of the
// same key and then inserts nothing (READ COMMITTED; under REPEATABLE READ
// or SERIALIZABLE the loser gets a serialization failure instead, and its
// retry skips).
func (postgresEngine) record(t string) string {
	return `INSERT INTO ` + t + ` (consumer, dedupe_key, event_id, event_type, processed_at)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (consumer, dedupe_key) DO NOTHING`
}

func (postgresEngine) seen(t string) string {
	return `SELECT COUNT(*) FROM ` + t + ` WHERE consumer = $1 AND dedupe_key = $2`
}

func (postgresEngine) count(t string) string {
	return `SELECT COUNT(*) FROM ` + t + ` WHERE consumer = $1`
}

func (postgresEngine) purge(t string) string {
	return `DELETE FROM ` + t + ` WHERE ctid IN (SELECT ctid FROM ` + t + ` WHERE processed_at < $1 LIMIT $2)`
}
