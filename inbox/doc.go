// Package inbox gives event handlers exactly-once effects on top of
// at-least-once delivery: the transactional inbox, and the consumer outbox
// for the events a handler emits.
//
// # What "exactly once" means here
//
// Delivery stays at least once: a broker redelivers what was not acked, a
// relay republishes a row it could not settle, a producer retries. The
// inbox makes the handler's effects in its database happen once anyway.
// For each delivery, in one database transaction, Process (and Handle,
// HandlePgx, Middleware, which call it):
//
//  1. records (consumer name, dedupe key) in the inbox table;
//  2. runs the handler's own writes, through the transaction it is given;
//  3. writes the events the handler emits into the consumer outbox
//     (Config.Outbox), stamped as children of the handled event;
//  4. commits.
//
// A key already recorded skips the handler and returns no error, so the
// delivery is acked. Two deliveries of one event racing (two consumers,
// or a redelivery while the first is still running) produce one effect:
// the second insert of the key waits on the first transaction's unique-key
// lock, then finds the key and skips; it is acked without an error. A crash
// anywhere before the commit leaves nothing, and the redelivery applies the
// event; a crash after the commit but before the ack leaves the record, and
// the redelivery is skipped. The emitted events, being rows of the same
// transaction, are relayed once per handled event (the relay itself
// publishes at least once: a relay killed between publishing and settling
// publishes a row again, with the same meta.id, which the next consumer's
// inbox skips in turn).
//
// What it does not cover: anything the handler does outside the
// transaction. An HTTP call, an email, a write to another database or a
// publish straight to a broker happen once per attempt, and an attempt
// may fail after them (at the commit, say) and run again. Put such effects
// behind the consumer outbox (emit an event; let another consumer make the
// call, with its own idempotency key toward the remote side), or make the
// remote call idempotent. A handler must also not commit or roll back the
// transaction it is given.
//
// # The dedupe key
//
// Config.Key defaults to Key: for an event with meta.idempotencyKey, the
// key is arc.DedupeKey (the idempotency key, type, causation id and, for a
// child, payload, hashed), so a producer's retry of the same request under
// a new meta.id is a repeat; otherwise it is meta.id, so only redeliveries
// of the same event are. This is the rule the outbox deduplicates by:
// children inheriting their parent's idempotency key are not mistaken for
// it. KeyByID keys on meta.id alone.
//
// # Consumers and the table
//
// One table (Config.Table, default arcmill_inbox) holds every consumer,
// keyed by (consumer, dedupe_key): several handlers of one event, each
// with its own consumer name, are independent, and one Migrate serves them
// all. Consumer names must be stable: a renamed consumer processes again
// what it had processed under its old name. Migrate creates the table,
// explicitly and idempotently.
//
// # Retention, and a redelivery after purge
//
// Records are kept until PurgeProcessed deletes those older than an age.
// DefaultRetention (7 days, as the outbox's PurgeDelivered) is the window
// this package documents: purge no younger than the longest a redelivery
// can come late (a broker's pending entries claimed again, a dead letter
// redriven, an outbox row redriven, a backup replayed). A redelivery that
// arrives after its record was purged is not recognised: it is processed
// again, and its effects happen twice. Config.RefuseOlderThan turns that
// into a refusal instead: an event not in the inbox whose meta.timestamp
// is older than it fails with ErrStale (wrapping arc.ErrUnrecoverable), so
// the retry middleware dead-letters it, where an operator decides.
//
// # With Watermill and middleware.NewStack
//
// Middleware is a message.HandlerMiddleware; Handle and HandlePgx return
// wildcard handlers. Either goes inside Retry, so that each attempt is a
// transaction of its own and a failed attempt leaves no record, and inside
// Causation, which stays outermost: append it after the stack, last.
//
//	stack, _ := middleware.NewStack(cfg)
//	router.Handle(wildcard.HandlerConfig{Name: "billing", Middleware: stack.Middleware, …},
//		ib.Handle("billing", charge))
//	// or, for a message handler:
//	mw := append(stack.Middleware, ib.Middleware("billing"))
//
// A middleware-wrapped handler's returned messages are written into the
// consumer outbox, not published by the router.
//
// # Handlers whose effect is not a database write
//
// Lease is the non-transactional option: a Redis record per (consumer,
// dedupe key) reading "processing" (with a lease renewed while the handler
// runs) and then "done". A done event is skipped, one in progress is
// retried (ErrInProgress, a middleware.Transient wait that costs no
// attempt), a failed or panicked handler releases the record. It is at
// most once per lease window, not exactly once: a crash after the effect
// and before "done" lets the next delivery, after the lease lapses, run the
// handler again. See Lease for the whole promise.
//
// # The table
//
// Its columns are consumer, dedupe_key (together the primary key),
// event_id, event_type and processed_at (Unix milliseconds, indexed for
// the purge): an operator, or a test, can read which events a consumer
// has processed with plain SQL.
//
// # Dialects
//
//	dialect      driver                        duplicates                  notes
//	PostgreSQL   pgx (database/sql, New)       INSERT … ON CONFLICT        READ COMMITTED (the default)
//	             or a pgx pool (NewPgx)          DO NOTHING
//	MySQL        go-sql-driver/mysql           INSERT IGNORE               MySQL 8, MariaDB 10.6+ (InnoDB)
//	SQLite       modernc.org/sqlite            INSERT … ON CONFLICT        WAL, busy_timeout, _txlock=immediate
//	                                             DO NOTHING
//
// The inbox adds one row insert to the handler's transaction (the record,
// with its primary key and one index on processed_at); BENCHMARKS.md has
// the measured cost.
package inbox
