package outbox

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Dialect is a database flavour.
type Dialect int

const (
	// PostgreSQL needs version 13 or newer (watermill-sql's schema uses xid8).
	PostgreSQL Dialect = iota
	// MySQL covers MySQL 8 and MariaDB 10.6+ (both have SKIP LOCKED).
	MySQL
	// SQLite is the embedded database, through modernc.org/sqlite (no cgo)
	// or any database/sql driver for SQLite 3.35+. Only arcmill's outbox
	// supports it; watermill-sql, and so the forwarder path, does not.
	SQLite
)

// String names the dialect.
func (d Dialect) String() string {
	switch d {
	case PostgreSQL:
		return "postgres"
	case MySQL:
		return "mysql"
	case SQLite:
		return "sqlite"
	}
	return "dialect(" + strconv.Itoa(int(d)) + ")"
}

// Row states in the status column.
const (
	statusPending   = 0
	statusDelivered = 1
	statusDead      = 2
)

// maxRowsPerInsert keeps a multi-row INSERT under every database's
// placeholder limit (SQLite's is 32766; 9 columns per row).
const maxRowsPerInsert = 1000

// tableName is lower case: PostgreSQL folds unquoted names, and the
// migration's catalog lookups must see the name as written.
var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,50}$`)

// queries holds one dialect's statements for one table, written with ?
// placeholders and rebound to $n for PostgreSQL.
type queries struct {
	d     Dialect
	table string
	cols  string // the columns a claim reads, in scanRow order
}

func newQueries(d Dialect, table string) (*queries, error) {
	if d < PostgreSQL || d > SQLite {
		return nil, fmt.Errorf("%w: unknown dialect %d", ErrInvalidConfig, d)
	}
	if !tableName.MatchString(table) {
		return nil, fmt.Errorf("%w: table name %q must match %s", ErrInvalidConfig, table, tableName)
	}
	return &queries{d: d, table: table,
		cols: "id, event_id, topic, event_type, payload, metadata, partition_key, claims, attempts, created_at"}, nil
}

// bind rewrites ? placeholders as $1, $2, … for PostgreSQL. Statements
// never hold a literal ?.
func (q *queries) bind(s string) string {
	if q.d != PostgreSQL {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// byID is "status = 0" written so that no index on status can serve it:
// statements that name their rows by id must reach them through the
// primary key. Before the table is analyzed, PostgreSQL would otherwise
// walk the whole pending index checking each row against the id list
// (18 ms instead of 2 for 100 rows of 10,000).
const byID = "status + 0 = 0"

// list returns "?, ?, …" with n placeholders.
func list(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// migration returns the statements that create the table, idempotently.
func (q *queries) migration() []string {
	t := q.table
	switch q.d {
	case PostgreSQL:
		return []string{
			`CREATE TABLE IF NOT EXISTS ` + t + ` (
	id BIGSERIAL PRIMARY KEY,
	event_id VARCHAR(255) NOT NULL,
	topic VARCHAR(255) NOT NULL,
	event_type VARCHAR(255) NOT NULL DEFAULT '',
	payload BYTEA,
	metadata TEXT NOT NULL,
	dedupe_key VARCHAR(255),
	partition_key VARCHAR(255),
	status SMALLINT NOT NULL DEFAULT 0,
	visible_at BIGINT NOT NULL,
	lease_owner VARCHAR(255),
	lease_until BIGINT NOT NULL DEFAULT 0,
	claims INTEGER NOT NULL DEFAULT 0,
	attempts INTEGER NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL,
	delivered_at BIGINT,
	first_failed_at BIGINT,
	last_failed_at BIGINT,
	last_error TEXT
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02)`,
			`CREATE INDEX IF NOT EXISTS ` + t + `_pending ON ` + t + ` (id) WHERE status = 0`,
			`CREATE INDEX IF NOT EXISTS ` + t + `_partition ON ` + t + ` (partition_key, id) WHERE status = 0`,
			`CREATE INDEX IF NOT EXISTS ` + t + `_dead ON ` + t + ` (id) WHERE status = 2`,
			// Partial, so that the many rows without a key cost nothing here.
			`CREATE UNIQUE INDEX IF NOT EXISTS ` + t + `_dedupe ON ` + t + ` (dedupe_key) WHERE dedupe_key IS NOT NULL`,
			`CREATE TABLE IF NOT EXISTS ` + t + `_lock (name VARCHAR(64) PRIMARY KEY)`,
			`INSERT INTO ` + t + `_lock (name) VALUES ('claim') ON CONFLICT DO NOTHING`,
			// One notification per inserting statement, delivered at commit
			// (PostgreSQL folds repeats within a transaction).
			`CREATE OR REPLACE FUNCTION ` + t + `_notify() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN PERFORM pg_notify('` + t + `', ''); RETURN NULL; END $f$`,
			`DO $d$ BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '` + t + `_notify' AND tgrelid = '` + t + `'::regclass) THEN
		CREATE TRIGGER ` + t + `_notify AFTER INSERT ON ` + t + ` FOR EACH STATEMENT EXECUTE FUNCTION ` + t + `_notify();
	END IF;
END $d$`,
		}
	case MySQL:
		return []string{
			"CREATE TABLE IF NOT EXISTS " + t + " (" + `
	id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	event_id VARCHAR(255) NOT NULL,
	topic VARCHAR(255) NOT NULL,
	event_type VARCHAR(255) NOT NULL DEFAULT '',
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
	UNIQUE KEY ` + t + `_dedupe (dedupe_key),
	KEY ` + t + `_pending (status, id),
	KEY ` + t + `_partition (partition_key, status, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
			"CREATE TABLE IF NOT EXISTS " + t + "_lock (name VARCHAR(64) PRIMARY KEY) ENGINE=InnoDB",
			"INSERT IGNORE INTO " + t + "_lock (name) VALUES ('claim')",
		}
	default: // SQLite
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
	last_error TEXT
)`,
			`CREATE INDEX IF NOT EXISTS ` + t + `_pending ON ` + t + ` (id) WHERE status = 0`,
			`CREATE INDEX IF NOT EXISTS ` + t + `_partition ON ` + t + ` (partition_key, id) WHERE status = 0`,
			`CREATE INDEX IF NOT EXISTS ` + t + `_settled ON ` + t + ` (status, delivered_at)`,
		}
	}
}

// insert is the multi-row INSERT of n rows; a repeated dedupe key is a
// no-op, never an error.
func (q *queries) insert(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + q.table +
		" (event_id, topic, event_type, payload, metadata, dedupe_key, partition_key, visible_at, created_at) VALUES ")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	if q.d == MySQL {
		b.WriteString(" ON DUPLICATE KEY UPDATE id = id")
	} else {
		b.WriteString(" ON CONFLICT (dedupe_key)")
		if q.d == PostgreSQL {
			b.WriteString(" WHERE dedupe_key IS NOT NULL") // infers the partial index
		}
		b.WriteString(" DO NOTHING")
	}
	return q.bind(b.String())
}

// claimable is the filter of rows a claim may take. Its arguments are
// claimArgs's: now, now, the types; keyed adds now, now and the types again.
func (q *queries) claimable(keyed bool, types int) string {
	s := "status = 0 AND visible_at <= ? AND lease_until <= ?"
	if types > 0 {
		s += " AND event_type IN (" + list(types) + ")"
	}
	if keyed {
		// No row of the same key may be in flight, and no earlier row of it
		// may be pending unless this claim can take it too (an earlier
		// claimable row comes first in the same batch): the key's order
		// holds across workers, failures, type filters and late commits.
		later := "p.visible_at > ?"
		if types > 0 {
			later += " OR p.event_type NOT IN (" + list(types) + ")"
		}
		s += " AND NOT EXISTS (SELECT 1 FROM " + q.table + " p WHERE p.partition_key = o.partition_key" +
			" AND p.status = 0 AND p.id <> o.id AND (p.lease_until > ? OR (p.id < o.id AND (" + later + "))))"
	}
	return s
}

// claimArgs are the arguments of claimable and a LIMIT, in order.
func claimArgs(now int64, keyed bool, types []string, limit int) []any {
	args := []any{now, now}
	for _, t := range types {
		args = append(args, t)
	}
	if keyed {
		args = append(args, now, now)
		for _, t := range types {
			args = append(args, t)
		}
	}
	return append(args, limit)
}

// claimSelect selects the ids of up to limit claimable rows, locking them
// where the database can skip rows other workers hold.
func (q *queries) claimSelect(keyed bool, types int) string {
	return q.bind(q.claimSelectRaw(keyed, types))
}

func (q *queries) claimSelectRaw(keyed bool, types int) string {
	s := "SELECT id FROM " + q.table + " o WHERE " + q.claimable(keyed, types) + " ORDER BY id LIMIT ?"
	if !keyed && q.d != SQLite {
		// Keyed claims are serialised by the lock row instead, and read
		// without locking so that a row being settled counts as in flight.
		s += " FOR UPDATE SKIP LOCKED"
	}
	return s
}

// claimUpdate leases the rows of claimSelect in one statement and returns
// them (PostgreSQL and SQLite).
func (q *queries) claimUpdate(keyed bool, types int) string {
	return q.bind("UPDATE " + q.table + " SET lease_owner = ?, lease_until = ?, claims = claims + 1 WHERE id IN (" +
		q.claimSelectRaw(keyed, types) + ") RETURNING " + q.cols)
}

func (q *queries) lockClaims() string {
	return "SELECT name FROM " + q.table + "_lock WHERE name = 'claim' FOR UPDATE"
}

// leaseIDs leases n rows by id (MySQL's claim, which has no RETURNING).
func (q *queries) leaseIDs(n int) string {
	return q.bind("UPDATE " + q.table + " SET lease_owner = ?, lease_until = ?, claims = claims + 1 WHERE id IN (" + list(n) + ")")
}

func (q *queries) selectIDs(n int) string {
	return q.bind("SELECT " + q.cols + " FROM " + q.table + " WHERE id IN (" + list(n) + ")")
}

// lockSelect reads up to limit claimable rows and locks them for the
// rest of the transaction, skipping rows other workers hold (lock mode).
func (q *queries) lockSelect(types int) string {
	return q.bind("SELECT " + q.cols + " FROM " + q.table + " o WHERE " + q.claimable(false, types) +
		" ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED")
}

// ack marks n rows delivered: with owned, only where the owner (the
// first argument after the time) still holds their lease; otherwise the
// caller holds their row locks.
func (q *queries) ack(n int, owned bool) string {
	cond := ""
	if owned {
		cond = " AND lease_owner = ?"
	}
	return q.bind("UPDATE " + q.table + " SET status = 1, delivered_at = ?, lease_owner = NULL, lease_until = 0" +
		" WHERE " + byID + cond + " AND id IN (" + list(n) + ")")
}

// owners reads who holds n rows now, to explain a rejected settlement.
func (q *queries) owners(n int) string {
	return q.bind("SELECT id, status, lease_owner, lease_until FROM " + q.table + " WHERE id IN (" + list(n) + ")")
}

// fail records one failed publish: back to pending at visible_at, or
// dead; owned as for ack (the owner is the last argument).
func (q *queries) fail(owned bool) string {
	s := "UPDATE " + q.table + " SET status = ?, visible_at = ?, lease_owner = NULL, lease_until = 0," +
		" attempts = attempts + 1, last_error = ?, first_failed_at = COALESCE(first_failed_at, ?), last_failed_at = ?" +
		" WHERE " + byID + " AND id = ?"
	if owned {
		s += " AND lease_owner = ?"
	}
	return q.bind(s)
}

// release gives n leased rows back unpublished; the claim is taken back
// too, so that waiting behind a key never counts as an unsettled claim.
func (q *queries) release(n int) string {
	return q.bind("UPDATE " + q.table + " SET lease_owner = NULL, lease_until = 0, claims = claims - 1" +
		" WHERE " + byID + " AND lease_owner = ? AND id IN (" + list(n) + ")")
}
