package inbox

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"time"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// Inbox records which events each consumer has processed, in the
// consumer's own transaction, so that a redelivered event's effects are
// not applied again. It is safe for concurrent use.
type Inbox struct {
	c   conn
	pgx bool // built by NewPgx: handlers get a pgx.Tx
	cfg Config
	e   engine
	// The statements, built once.
	recordQ, seenQ, countQ, purgeQ string
}

// New returns the inbox in db. It does not touch the database; call
// Migrate once at deploy or start-up.
func New(db *stdsql.DB, cfg Config) (*Inbox, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: nil *sql.DB", ErrInvalidConfig)
	}
	if cfg.Dialect == outbox.DetectDialect && cfg.Outbox == nil {
		d, err := outbox.DialectOf(db)
		if err != nil {
			return nil, fmt.Errorf("inbox: %w", err)
		}
		cfg.Dialect = d
	}
	return newInbox(stdConn{db}, false, cfg)
}

// NewPgx returns the inbox in a pgx pool (PostgreSQL only): handlers get a
// pgx.Tx (HandlePgx, PgxTx) and emitted events go through the outbox's
// WritePgx. The outbox, when set, must be on the same database.
func NewPgx(db PgxDB, cfg Config) (*Inbox, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: nil pgx pool", ErrInvalidConfig)
	}
	cfg.setDefaults()
	if cfg.Dialect == outbox.DetectDialect {
		cfg.Dialect = outbox.PostgreSQL
	}
	if cfg.Dialect != outbox.PostgreSQL {
		return nil, fmt.Errorf("%w: NewPgx needs Config.Dialect PostgreSQL, got %v", ErrInvalidConfig, cfg.Dialect)
	}
	return newInbox(pgxConn{db}, true, cfg)
}

func newInbox(c conn, isPgx bool, cfg Config) (*Inbox, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := engineOf(cfg.Dialect)
	if e == nil {
		return nil, fmt.Errorf("%w: Config.Dialect %v is unknown", ErrInvalidConfig, cfg.Dialect)
	}
	t := cfg.Table
	return &Inbox{c: c, pgx: isPgx, cfg: cfg, e: e,
		recordQ: e.record(t), seenQ: e.seen(t), countQ: e.count(t), purgeQ: e.purge(t)}, nil
}

// Table returns the inbox table's name.
func (ib *Inbox) Table() string { return ib.cfg.Table }

// Dialect returns the inbox's database dialect.
func (ib *Inbox) Dialect() outbox.Dialect { return ib.cfg.Dialect }

// Migrate creates the inbox table and its index when they are missing. It
// is idempotent and safe to run from several processes at once; it never
// runs inside a caller's transaction, since DDL may commit one.
func (ib *Inbox) Migrate(ctx context.Context) error {
	if err := ib.e.migrate(ctx, ib.c, ib.cfg.Table, ib.e.migration(ib.cfg.Table)); err != nil {
		return fmt.Errorf("inbox: migrating %s: %w", ib.cfg.Table, err)
	}
	return nil
}

// Seen reports whether consumer has processed ev (its key is recorded and
// not yet purged).
func (ib *Inbox) Seen(ctx context.Context, consumer string, ev arc.Event) (bool, error) {
	key, err := ib.key(consumer, ev)
	if err != nil {
		return false, err
	}
	n, err := ib.c.queryInt(ctx, ib.seenQ, consumer, key)
	if err != nil {
		return false, fmt.Errorf("inbox: reading %s: %w", ib.cfg.Table, err)
	}
	return n > 0, nil
}

// Count returns how many events consumer has processed, among the records
// not yet purged.
func (ib *Inbox) Count(ctx context.Context, consumer string) (int64, error) {
	n, err := ib.c.queryInt(ctx, ib.countQ, consumer)
	if err != nil {
		return 0, fmt.Errorf("inbox: counting %s: %w", ib.cfg.Table, err)
	}
	return n, nil
}

// purgeChunk bounds one DELETE, so that no statement holds locks long.
const purgeChunk = 1000

// PurgeProcessed deletes the records of every consumer processed more than
// olderThan ago, in chunks, and returns how many. Call it on a timer with
// at least DefaultRetention, or longer than any redelivery can come late:
// a redelivery of a purged event is processed again (see the package doc;
// Config.RefuseOlderThan refuses it instead).
func (ib *Inbox) PurgeProcessed(ctx context.Context, olderThan time.Duration) (int64, error) {
	if olderThan <= 0 {
		return 0, fmt.Errorf("%w: PurgeProcessed needs a positive age, got %v", ErrInvalidConfig, olderThan)
	}
	cutoff := ib.cfg.Now().Add(-olderThan).UnixMilli()
	var total int64
	for {
		n, err := ib.c.exec(ctx, ib.purgeQ, cutoff, purgeChunk)
		if err != nil {
			return total, fmt.Errorf("inbox: purging %s: %w", ib.cfg.Table, err)
		}
		total += n
		if n < purgeChunk {
			return total, nil
		}
	}
}

// key returns ev's dedupe key for consumer, checked.
func (ib *Inbox) key(consumer string, ev arc.Event) (string, error) {
	if consumer == "" || len(consumer) > MaxConsumerLength {
		return "", fmt.Errorf("%w: consumer name of %d bytes: 1 to %d are allowed", ErrInvalidKey, len(consumer), MaxConsumerLength)
	}
	key := ib.cfg.Key(ev)
	if key == "" || len(key) > MaxKeyLength {
		return "", fmt.Errorf("%w: %w: event %q (id %q) has a dedupe key of %d bytes: 1 to %d are allowed",
			ErrInvalidKey, arc.ErrUnrecoverable, ev.Type, ev.Meta.ID, len(key), MaxKeyLength)
	}
	if !plainText(key) {
		// A custom Config.Key's: the column would refuse it, or (MariaDB)
		// take it for another key. Key and KeyByID never return one.
		return "", fmt.Errorf("%w: %w: event %q (id %q) has a dedupe key %q that is not valid UTF-8 text "+
			"without NUL or a trailing space", ErrInvalidKey, arc.ErrUnrecoverable, ev.Type, ev.Meta.ID, key)
	}
	return key, nil
}
