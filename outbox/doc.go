// Package outbox is the transactional outbox: an event is stored in the
// same database transaction as the business write that caused it, and a
// relay delivers it to the broker afterwards, at least once, so a broker
// that is down when the request runs loses nothing.
//
// # Two paths
//
// For teams already on Watermill's forwarder, TxPublisher, PgxTxPublisher
// and NewForwarder wire Watermill's own components over watermill-sql v4
// (PostgreSQL and MySQL). arcmill's own outbox (New, Outbox.Write,
// Outbox.NewRelay) adds Arc's EventOutbox semantics and does better where
// Arc is weak. The rest of this page is about arcmill's own outbox.
//
// # Writing events
//
// Write runs inside the caller's *sql.Tx or pgx.Tx, one INSERT for many
// events, through watermill-sql's publisher and this package's
// SchemaAdapter (Outbox.Publisher offers the same as a Watermill
// publisher). A dedupe key (Entry.DedupeKey, else arc.DedupeKey of
// meta.idempotencyKey) makes a repeat a no-op without dropping a child
// that inherited its parent's key (Arc drops it). Each event may have a
// visible-at time and a partition key. Migrate creates the table,
// explicitly and idempotently, and widens a table of an earlier arcmill.
//
// The outbox takes every event Arc takes: ids of any length and types up
// to arc.MaxTypeLength characters (MaxTypeLength bytes). Topics follow
// watermill-sql's rule: 1 to MaxTopicLength bytes of A-Z, a-z, 0-9 and
// "-$:._", which Arc's stream names (arc:events) fit, and may hold the
// braces of a Redis Cluster hash tag ({orders}:events); dedupe and
// partition keys, which are indexed, take up to MaxKeyLength bytes.
//
// # Relaying
//
// A Relay publishes to any Watermill publisher with several workers, in
// one process or many. ClaimLock (the default on PostgreSQL and MySQL)
// holds row locks in one transaction per pass (SELECT … FOR UPDATE SKIP
// LOCKED, publish, settle, commit); ClaimLease writes Arc's leases. No
// row is published by two workers at once, a killed relay loses nothing,
// and a settlement from a worker that lost its rows is rejected
// (ErrOwnership, Arc's OutboxOwnershipError). KeepPartitionOrder keeps
// the order of rows sharing a partition key across workers, retries and
// late commits. On PostgreSQL, LISTEN/NOTIFY wakes the relay when a
// transaction commits events; polling is the fallback and the only mode
// elsewhere. Every pass reports Arc's RelayResult counters.
//
// On PostgreSQL a ClaimLock pass commits its settlements without waiting
// for the disk (synchronous_commit off, for that transaction alone): if
// PostgreSQL itself crashes, the settlements of its last moments may be
// forgotten, and those rows are published again, as after a relay that
// died between publishing and settling.
//
// Relay.Run runs the workers until its context ends or Relay.Close is
// called, and returns why (context.Cause, or ErrRelayClosed); Relay.Running
// is closed once they work, and Close may be called any number of times.
// A relay runs once. Relay.RelayBatch runs a single pass by hand, for
// tests and for hosts that call relay() on a timer.
//
// # Health
//
// Run first checks the table (every column, the right to update it, the
// lock row): a mistake that will not pass by itself, a missing table or
// credentials the database refuses, is returned at once, wrapping
// ErrMissingTable or ErrAccessDenied. An unreachable database is an
// outage: Run starts and waits for it. While Run runs, Relay.Status says
// whether the relay is healthy, paused (the broker's transport fails) or
// failing (the database fails), with the last error, whether it is
// permanent (someone must act: run Migrate, restore a grant), and when a
// pass last worked. Failures are retried with RelayConfig.OutageBackoff,
// permanent ones too, so that fixing the database is enough; they are
// logged at Error and passed to RelayConfig.OnError as RelayErrors, which
// are errors.
//
// # Failures and dead letters
//
// A failed publish goes through a FailurePolicy (default: Arc's
// exponentialBackoff with RelayConfig.RetryBackoff, dead letter after
// RelayConfig.MaxAttempts, DefaultMaxAttempts unless set); the
// attempt count is stored in the table, and a failing row waits alone.
// Only the event's own failures count (an event over the broker's size
// limit, a message the broker rejects). A failure of the transport (the
// broker unreachable, restarting, read-only or out of memory:
// IsTransportError, extended by RelayConfig.TransportError) is no
// attempt: the relay gives the rows back, pauses with a jittered backoff,
// reports it (Relay.Status, OnError, RelayResult.TransportFailed) and
// resumes when the broker takes writes again. A broker outage of any
// length dead-letters nothing.
// Malformed rows are dead-lettered, not re-claimed for ever. Dead letters
// can be listed, redriven (by type or id, oldest first, at a capped rate)
// and purged; delivered rows are purged by age.
//
// # Configuration
//
// Config and RelayConfig take their zero values as the documented
// defaults, the Default* constants. A named constant of -1 means none
// (NoMaxAttempts, NoMaxUnsettledClaims), and any other negative value is
// invalid. Every growing wait is a Backoff (RetryBackoff for an event's
// retries, OutageBackoff for outages), validated by the same rules.
// Configuration errors wrap ErrInvalidConfig and name the field.
//
// # Schema and upgrades
//
// Migrate creates what is missing and never drops, renames, narrows or
// rewrites data: the table with its indexes (PostgreSQL: partial
// <Table>_pending, _partition, _dead and the unique _dedupe; MySQL: the
// same as inline keys; SQLite: _pending, _partition, _settled and a
// UNIQUE dedupe_key), the <Table>_lock table with its one 'claim' row
// (PostgreSQL, MySQL), and on PostgreSQL the <Table>_notify() function
// and its trigger. Every statement is idempotent, so Migrate may run at
// every start, from several processes at once.
//
// Schema returns the same statements as one SQL script, and the arcmill
// command prints it (arcmill outbox schema --dialect postgres --table t),
// for teams whose migrations go through golang-migrate, goose or Atlas.
// Such a team applies the script of the arcmill version it deploys as a
// migration, and need not call Migrate (calling it too is harmless).
//
// Between arcmill versions the schema only grows: a column widened, or a
// column (nullable or with a default) or an index added, never a change
// that needs the relay stopped. The CHANGELOG lists each change with its
// statements, and the new script carries it in idempotent form, so an
// upgrade through a migration tool is: print the new version's script,
// save it as a new migration, apply it. Migrate does the same by itself.
// The changes so far:
//
//   - 2026-12: event_id and event_type were VARCHAR(255), too short for
//     ids and types Arc accepts. PostgreSQL widens both to TEXT (a
//     catalog change that rewrites nothing); MySQL to MEDIUMTEXT and
//     VARCHAR(1024) (a table rebuild: plan it for a large backlog); SQLite
//     needs nothing. Each script holds the guarded ALTER (a DO block on
//     PostgreSQL, a prepared statement on MySQL), which does nothing on a
//     current table.
//   - 2026-12: arc_json (BYTEA, LONGBLOB, BLOB) and arc_json_crc
//     (BIGINT, INTEGER), both nullable, hold each event's Arc JSON as
//     written (see "The stored Arc JSON"). PostgreSQL and MySQL add them
//     with a guarded ALTER in the script (no rewrite: nullable columns
//     without a default, added last); SQLite's script cannot guard an
//     ALTER, so Migrate adds them itself, and a migration tool runs
//     "ALTER TABLE t ADD COLUMN arc_json BLOB" and "ALTER TABLE t ADD
//     COLUMN arc_json_crc INTEGER" once. Until then writer and relay work
//     without them, as before.
//   - 2026-12: the PostgreSQL table has fillfactor 50, so that the
//     version of a row its acknowledgement writes stays on the row's page
//     (half the cost of that UPDATE; delivered rows kept take about twice
//     the space until purged). The script sets it with a guarded ALTER
//     TABLE … SET, which rewrites nothing (pages written from then on
//     leave the room) and leaves a fillfactor already chosen alone. MySQL
//     and SQLite need nothing.
//
// # The stored Arc JSON
//
// The writer encodes each Arc event once, in the business transaction
// (arc.Marshal, a microsecond or two beside a commit's milliseconds), and
// stores the bytes in arc_json. The relay attaches them to the message it
// rebuilds from the row (arc.AttachJSON), and the redisstream Publisher
// writes them as the entry instead of encoding the event again: the same
// bytes, a third less of the relay's own CPU. Any other publisher gets the
// same complete message and may ignore them. The bytes are used only while
// they are the message's: arc_json_crc, a CRC-32C of the event_id,
// payload and metadata columns, must match the row (a row edited by hand
// after the write is encoded afresh), and a message that a publisher,
// middleware or failure policy changed is encoded afresh
// (arc.AttachedJSON). Rows without them (written by an older arcmill, or
// a Watermill message that is not an Arc event) are encoded as before, and
// so are a table's rows before it has the columns: writer and relay look
// them up in the catalog (once, and again each minute while they are
// missing), so an older schema keeps working until it is migrated.
// Config.DisableArcJSON leaves the columns NULL: the bytes widen each row,
// which the database pays on every claim and acknowledgement, so where
// the database rather than the relay is the bottleneck, storing them may
// not pay (BENCHMARKS.md).
//
// # Ids that are not text
//
// An Arc id can be any JavaScript string, and arc keeps the ones UTF-8
// cannot spell (a lone surrogate, as its WTF-8 bytes) and invalid UTF-8
// as they came (see arc.Meta.ID). Write stores them so that they survive
// to the broker byte for byte, on every dialect: PostgreSQL's text refuses
// invalid UTF-8 and NUL, MariaDB refuses it (strict mode) or writes '?',
// encoding/json turns it into U+FFFD, and MariaDB's collations take "k"
// and "k " for one value. So:
//
//   - in the metadata column (a JSON object of strings), a pair whose key
//     or value is not valid UTF-8 is stored base64-encoded under a
//     reserved key: "arcmill_outbox_b64:" and the key, or
//     "arcmill_outbox_b64k:" and the key in base64;
//   - in event_id, event_type, dedupe_key and partition_key, a value with
//     invalid UTF-8, NUL or a trailing space, or one that starts with
//     U+FFFD, is stored as U+FFFD followed by the value with those bytes
//     (and '%') written %XX: "\xff" is "\ufffd%FF", "k " is "\ufffdk%20".
//     Every other value is stored as it is, as before.
//
// Both forms are one to one, so two distinct ids never become one row,
// one dedupe key or one lookup; Filter and RelayConfig.Types escape their
// arguments the same way, and the relay, DeadLetters and Redrive give the
// original bytes back. Rows written before these forms existed read as
// they were written. Limits (MaxTypeLength, MaxKeyLength) apply to the
// stored form. SQL of your own that reads the table sees the stored
// forms. The Watermill-native path (TxPublisher) cannot keep such bytes,
// since Watermill's forwarder envelope is JSON: it refuses a message whose
// UUID or metadata is not valid UTF-8 (ErrInvalidEntry, wrapping
// arc.ErrUnrecoverable) before writing anything.
//
// # Dialects
//
//	dialect      driver                        claims            notes
//	PostgreSQL   pgx (database/sql) or pgx.Tx  lock or lease     13+; LISTEN/NOTIFY with the pgx driver
//	MySQL        go-sql-driver/mysql           lock or lease     MySQL 8, MariaDB 10.6+ (SKIP LOCKED)
//	SQLite       modernc.org/sqlite (no cgo)   lease             3.35+; open with busy_timeout, WAL, _txlock=immediate
//
// # Compared with Arc's EventOutbox
//
//	Arc                                   arcmill
//	store(event, {session})               Outbox.Write(ctx, tx, Entry{...})
//	dedupeKey = meta.idempotencyKey       arc.DedupeKey: children kept
//	relayBatch() → RelayResult            Relay.RelayBatch, Relay.Run (workers, wake-up), Relay.Totals
//	attempts in process memory            attempts column, shared by every relay
//	no default failure policy (retries    MaxAttempts 5 with RetryBackoff by default
//	  for ever)
//	malformed row aborts the batch and    malformed row dead-lettered, the batch goes on
//	  is re-claimed for ever
//	getDeadLettered (random order)        DeadLetters (oldest first), Redrive, PurgeDeadLetters
//	purge(olderThanMs)                    PurgeDelivered(ctx, olderThan)
//	partitionKey stored, never read       KeepPartitionOrder
//	hosts call relay() on a timer         Run: polling plus LISTEN/NOTIFY
//
// Times are Unix milliseconds from Config.Now; relays on several hosts
// should keep their clocks in sync to well under a lease.
package outbox
