package outbox

import (
	"context"
	stdsql "database/sql"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)

// postgresEngine is PostgreSQL 13+: $n placeholders, partial indexes,
// UPDATE … RETURNING, row locks, and a trigger that NOTIFYs relays.
type postgresEngine struct{}

func (postgresEngine) name() string { return "postgres" }

// bind rewrites ? placeholders as $1, $2, ….
func (postgresEngine) bind(s string) string {
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

// fillFactor leaves half of each page free when rows are inserted, so
// that the version of a row its acknowledgement writes (status 1) fits
// on the row's own page: PostgreSQL then logs only the changed bytes, and
// neither extends the table nor searches for space. The update cannot be
// HOT (status is in the partial indexes' predicates), but on the same
// page it costs about half (BENCHMARKS.md). Delivered rows that are kept
// take about twice the space until they are purged.
const fillFactor = "50"

func (postgresEngine) migration(t string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
	id BIGSERIAL PRIMARY KEY,
	event_id TEXT NOT NULL,
	topic VARCHAR(255) NOT NULL,
	event_type TEXT NOT NULL DEFAULT '',
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
	last_error TEXT,
	arc_json BYTEA,
	arc_json_crc BIGINT
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02, fillfactor = ` + fillFactor + `)`,
		// Tables of arcmill before 2026-12 fill their pages: each row's
		// delivered version then lands on another page, with its whole tuple
		// in the WAL. Only pages written from now on leave the room; a table
		// whose fillfactor someone chose is left alone.
		`DO $d$ BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_class c, unnest(c.reloptions) o WHERE c.oid = '` + t + `'::regclass AND o LIKE 'fillfactor=%') THEN
		ALTER TABLE ` + t + ` SET (fillfactor = ` + fillFactor + `);
	END IF;
END $d$`,
		// Tables of arcmill before 2026-12 limited ids and types to 255
		// characters; Arc has no such limit. varchar to text rewrites
		// nothing, and runs only once.
		`DO $d$ BEGIN
	IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '` + t + `'
			AND column_name IN ('event_id', 'event_type') AND data_type <> 'text') THEN
		ALTER TABLE ` + t + ` ALTER COLUMN event_id TYPE TEXT, ALTER COLUMN event_type TYPE TEXT;
	END IF;
END $d$`,
		// Tables of arcmill before 2026-12 have no stored Arc JSON (see
		// arcjson.go). Adding nullable columns without a default rewrites
		// nothing; the guard keeps a current table from even being locked.
		`DO $d$ BEGIN
	IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '` + t + `'
			AND column_name = 'arc_json_crc') THEN
		ALTER TABLE ` + t + ` ADD COLUMN IF NOT EXISTS arc_json BYTEA, ADD COLUMN IF NOT EXISTS arc_json_crc BIGINT;
	END IF;
END $d$`,
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

}

// migrate runs the statements one migration at a time: CREATE … IF NOT
// EXISTS races in PostgreSQL.
func (postgresEngine) migrate(ctx context.Context, db *stdsql.DB, table string, stmts []string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	h := fnv.New64a()
	_, _ = h.Write([]byte("arcmill_outbox_migrate:" + table))
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(h.Sum64())); err != nil {
		return err
	}
	if err := execAll(ctx, tx, stmts); err != nil {
		return err
	}
	return tx.Commit()
}

// onDuplicate names the partial unique index's predicate, so that
// PostgreSQL infers it as the conflict target.
func (postgresEngine) onDuplicate() string {
	return " ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING"
}

func (postgresEngine) purge(table, cond string) string {
	return "DELETE FROM " + table + " WHERE id IN (SELECT id FROM " + table + " WHERE " + cond + " ORDER BY id LIMIT ?)"
}

func (postgresEngine) txOptions() *stdsql.TxOptions { return nil }

// steerPlanner keeps PostgreSQL on the ordered walk of the pending index
// for "ORDER BY id LIMIT n": before the table is analyzed (a backlog built
// up within autovacuum's first minute) it misjudges the pending rows as
// few and would bitmap-scan and sort all of them (5 ms per claim at
// 10,000 rows, 0.2 ms walking the index).
const steerPlanner = "SET LOCAL enable_bitmapscan = off"

// claim selects and leases in one UPDATE … RETURNING; keyed claims take
// turns on the lock row first, so that each sees the leases of the one
// before it.
func (postgresEngine) claim(ctx context.Context, o *Outbox, c claimRequest) (rows []*row, err error) {
	err = o.inConnTx(ctx, func(conn *stdsql.Conn, tx *stdsql.Tx) error {
		if _, err := tx.ExecContext(ctx, steerPlanner); err != nil {
			return err
		}
		if c.keyed {
			if _, err := tx.ExecContext(ctx, o.q.lockClaims()); err != nil {
				return err
			}
		}
		var err error
		rows, err = queryRows(ctx, conn, tx, o.q.claimUpdate(c.keyed, c.types),
			append([]any{c.owner, c.leaseUntil}, c.filter...))
		return err
	})
	return rows, err
}

func (postgresEngine) rowLocks() bool { return true }

// startLockedPass has the server end the session of a pass stalled
// longer than lease (idle_in_transaction_session_timeout), which frees
// its rows and makes its late commit fail.
//
// The pass commits without waiting for its WAL to reach the disk
// (synchronous_commit off): what it commits is only the settlement of
// rows already published, and a crash of PostgreSQL that forgets the last
// moments of them leaves those rows pending, to be published again (at
// least once). The business transactions that wrote the rows keep their
// own setting. Waiting for the flush held each worker a disk sync per
// pass: the relay ran at 0.80 of the raw loop with it and 0.94 without.
func (postgresEngine) startLockedPass(ctx context.Context, tx *stdsql.Tx, lease time.Duration) error {
	_, err := tx.ExecContext(ctx, "SET LOCAL idle_in_transaction_session_timeout = "+
		strconv.FormatInt(max(1, lease.Milliseconds()), 10)+"; SET LOCAL synchronous_commit = off; "+steerPlanner)
	return err
}

func (postgresEngine) notifies() bool { return true }

func (postgresEngine) forwarderSchema() (wsql.SchemaAdapter, wsql.OffsetsAdapter, error) {
	return wsql.DefaultPostgreSQLSchema{}, wsql.DefaultPostgreSQLOffsetsAdapter{}, nil
}

func (postgresEngine) idArrays() bool { return true }

func (postgresEngine) arcColumnsQuery() string {
	return "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1" +
		" AND column_name IN ('arc_json', 'arc_json_crc')"
}
