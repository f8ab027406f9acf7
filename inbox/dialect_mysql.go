package inbox

import "context"

// mysqlEngine is MySQL 8 and MariaDB 10.6+ (InnoDB).
type mysqlEngine struct{}

// migration: both key columns are case- and accent-sensitive (utf8mb4_bin),
// as keys are; the primary key is 2,040 bytes, under InnoDB's 3,072.
func (mysqlEngine) migration(t string) []string {
	return []string{
		"CREATE TABLE IF NOT EXISTS " + t + ` (
	consumer VARCHAR(255) NOT NULL,
	dedupe_key VARCHAR(255) NOT NULL,
	event_id MEDIUMTEXT NOT NULL,
	event_type VARCHAR(1024) NOT NULL DEFAULT '',
	processed_at BIGINT NOT NULL,
	PRIMARY KEY (consumer, dedupe_key),
	KEY ` + t + `_processed (processed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
	}
}

// migrate needs no lock: CREATE TABLE IF NOT EXISTS is atomic in InnoDB.
func (mysqlEngine) migrate(ctx context.Context, c conn, _ string, stmts []string) error {
	return execAll(ctx, c.exec, stmts)
}

// record uses INSERT IGNORE: 1 row affected when new, 0 when the key is
// recorded, whatever the driver's clientFoundRows (ON DUPLICATE KEY UPDATE
// would report 0 or 1 for a duplicate depending on it). IGNORE also turns
// a too-long value into a warning, so Process checks every length first.
// A concurrent insert of the same key waits on the first one's row lock.
func (mysqlEngine) record(t string) string {
	return `INSERT IGNORE INTO ` + t + ` (consumer, dedupe_key, event_id, event_type, processed_at) VALUES (?, ?, ?, ?, ?)`
}

func (mysqlEngine) seen(t string) string {
	return `SELECT COUNT(*) FROM ` + t + ` WHERE consumer = ? AND dedupe_key = ?`
}

func (mysqlEngine) count(t string) string {
	return `SELECT COUNT(*) FROM ` + t + ` WHERE consumer = ?`
}

// purge uses DELETE … ORDER BY … LIMIT: MySQL cannot delete from a table
// a subquery of the same statement reads.
func (mysqlEngine) purge(t string) string {
	return `DELETE FROM ` + t + ` WHERE processed_at < ? ORDER BY processed_at LIMIT ?`
}
