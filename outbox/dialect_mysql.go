package outbox

import (
	"context"
	stdsql "database/sql"
	"strconv"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)

// mysqlEngine is MySQL 8 and MariaDB 10.6+: ? placeholders, row locks
// (SKIP LOCKED), but no UPDATE … RETURNING and no NOTIFY.
type mysqlEngine struct{}

func (mysqlEngine) name() string { return "mysql" }

func (mysqlEngine) bind(s string) string { return s }

func (mysqlEngine) migration(t string) []string {
	// The widening ALTER, quoted as a string literal for the SET below.
	widen := "ALTER TABLE " + t + " MODIFY event_id MEDIUMTEXT NOT NULL, MODIFY event_type VARCHAR(" +
		strconv.Itoa(MaxTypeLength) + ") NOT NULL DEFAULT ''''"
	return []string{
		"CREATE TABLE IF NOT EXISTS " + t + " (" + `
	id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	event_id MEDIUMTEXT NOT NULL,
	topic VARCHAR(255) NOT NULL,
	event_type VARCHAR(1024) NOT NULL DEFAULT '',
	payload LONGBLOB,
	metadata LONGTEXT NOT NULL,
	dedupe_key VARCHAR(255) NULL,
	partition_key VARCHAR(255) NULL,
	status SMALLINT NOT NULL DEFAULT 0,
	visible_at BIGINT NOT NULL,
	lease_owner VARCHAR(255) NULL,
	lease_until BIGINT NOT NULL DEFAULT 0,
	claims INT NOT NULL DEFAULT 0,
	attempts INT NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL,
	delivered_at BIGINT NULL,
	first_failed_at BIGINT NULL,
	last_failed_at BIGINT NULL,
	last_error TEXT NULL,
	arc_json LONGBLOB NULL,
	arc_json_crc BIGINT NULL,
	UNIQUE KEY ` + t + `_dedupe (dedupe_key),
	KEY ` + t + `_pending (status, id),
	KEY ` + t + `_partition (partition_key, status, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
		"CREATE TABLE IF NOT EXISTS " + t + "_lock (name VARCHAR(64) PRIMARY KEY) ENGINE=InnoDB",
		"INSERT IGNORE INTO " + t + "_lock (name) VALUES ('claim')",
		// Tables of arcmill before 2026-12 limited ids and types to 255
		// characters; Arc limits neither. MySQL has no IF outside stored
		// programs, so the guarded ALTER is a prepared statement that a
		// catalog query chooses: plain SQL that a migration tool runs as
		// it is, and a no-op (DO 0) on a current table. Neither column is
		// indexed, so no index length limit applies.
		"SET @arcmill_widen = (SELECT IF(COUNT(*) = 0, 'DO 0',\n\t'" + widen + "')\n" +
			"\tFROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = '" + t + "' AND (\n" +
			"\t\t(column_name = 'event_id' AND data_type <> 'mediumtext') OR\n" +
			"\t\t(column_name = 'event_type' AND character_maximum_length < " + strconv.Itoa(MaxTypeLength) + ")))",
		"PREPARE arcmill_widen FROM @arcmill_widen",
		"EXECUTE arcmill_widen",
		"DEALLOCATE PREPARE arcmill_widen",
		// Tables of arcmill before 2026-12 have no stored Arc JSON (see
		// arcjson.go): the same guarded form. Columns added last are an
		// instant change (MySQL 8.0.12+, MariaDB 10.3+).
		"SET @arcmill_arcjson = (SELECT IF(COUNT(*) > 0, 'DO 0',\n\t'ALTER TABLE " + t +
			" ADD COLUMN arc_json LONGBLOB NULL, ADD COLUMN arc_json_crc BIGINT NULL')\n" +
			"\tFROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = '" + t +
			"' AND column_name = 'arc_json_crc')",
		"PREPARE arcmill_arcjson FROM @arcmill_arcjson",
		"EXECUTE arcmill_arcjson",
		"DEALLOCATE PREPARE arcmill_arcjson",
	}
}

// migrate runs the statements on one connection: the widening's session
// variable and prepared statement belong to a session.
func (mysqlEngine) migrate(ctx context.Context, db *stdsql.DB, _ string, stmts []string) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return execAll(ctx, conn, stmts)
}

func (mysqlEngine) onDuplicate() string { return " ON DUPLICATE KEY UPDATE id = id" }

// purge uses DELETE … ORDER BY … LIMIT: MySQL cannot delete from a table
// that a subquery of the same statement reads.
func (mysqlEngine) purge(table, cond string) string {
	return "DELETE FROM " + table + " WHERE " + cond + " ORDER BY id LIMIT ?"
}

// txOptions: each read sees the latest commits, as PostgreSQL's default
// does (MySQL's default, REPEATABLE READ, would not).
func (mysqlEngine) txOptions() *stdsql.TxOptions {
	return &stdsql.TxOptions{Isolation: stdsql.LevelReadCommitted}
}

// claim selects the ids (locking them), leases them and reads them back,
// in one transaction; keyed claims take turns on the lock row first.
func (mysqlEngine) claim(ctx context.Context, o *Outbox, c claimRequest) (rows []*row, err error) {
	err = o.inTx(ctx, func(tx *stdsql.Tx) error {
		if c.keyed {
			if _, err := tx.ExecContext(ctx, o.q.lockClaims()); err != nil {
				return err
			}
		}
		ids, err := queryIDs(ctx, tx, o.q.claimSelect(c.keyed, c.types), c.filter...)
		if err != nil || len(ids) == 0 {
			return err
		}
		if _, err := tx.ExecContext(ctx, o.q.leaseIDs(len(ids)), append([]any{c.owner, c.leaseUntil}, ids...)...); err != nil {
			return err
		}
		rs, err := tx.QueryContext(ctx, o.q.selectIDs(len(ids)), ids...)
		if err != nil {
			return err
		}
		rows, err = scanRows(rs)
		return err
	})
	return rows, err
}

func (mysqlEngine) rowLocks() bool { return true }

// startLockedPass does nothing: only PostgreSQL ends a stalled pass's
// session early; here its rows are held until its transaction ends.
func (mysqlEngine) startLockedPass(context.Context, *stdsql.Tx, time.Duration) error { return nil }

func (mysqlEngine) notifies() bool { return false }

func (mysqlEngine) forwarderSchema() (wsql.SchemaAdapter, wsql.OffsetsAdapter, error) {
	return wsql.DefaultMySQLSchema{}, wsql.DefaultMySQLOffsetsAdapter{}, nil
}

func (mysqlEngine) idArrays() bool { return false }

func (mysqlEngine) arcColumnsQuery() string {
	return "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?" +
		" AND column_name IN ('arc_json', 'arc_json_crc')"
}
