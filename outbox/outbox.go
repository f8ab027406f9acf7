package outbox

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"time"
)

// Errors of arcmill's outbox.
var (
	// ErrInvalidConfig wraps every configuration error.
	ErrInvalidConfig = errors.New("outbox: invalid config")
	// ErrInvalidEntry is Arc's InvalidOutboxEventError: an entry without a
	// type, an id or a destination topic is refused at write time.
	ErrInvalidEntry = errors.New("outbox: invalid outbox event")
	// ErrOwnership is Arc's OutboxOwnershipError: a relay settled a row whose
	// lease it no longer holds (it expired and another worker took the row).
	// The settlement is rejected; *OwnershipError says who holds the row.
	ErrOwnership = errors.New("outbox: ownership mismatch")
	// ErrMalformedRow marks a stored row the relay cannot turn back into a
	// message (bad metadata JSON, no id or topic). It is dead-lettered.
	ErrMalformedRow = errors.New("outbox: malformed row")
	// ErrRelayClosed is returned by Run and RelayBatch after Close.
	ErrRelayClosed = errors.New("outbox: relay closed")
)

// OwnershipError is Arc's OutboxOwnershipError for one row.
type OwnershipError struct {
	// Seq is the row's sequence number (the id column).
	Seq int64
	// EventID is the event's meta.id.
	EventID string
	// AttemptedBy is the consumer id that tried to settle the row.
	AttemptedBy string
	// CurrentOwner holds the row's lease now; "" when nobody does (the row
	// was settled by its new owner, or its lease was released).
	CurrentOwner string
}

func (e *OwnershipError) Error() string {
	owner := e.CurrentOwner
	if owner == "" {
		owner = "none"
	}
	return fmt.Sprintf("Outbox ownership mismatch for event %q: attempted by %q, current owner is %q. "+
		"The lease may have expired and been reclaimed by another worker.", e.EventID, e.AttemptedBy, owner)
}

// Is makes errors.Is(err, ErrOwnership) hold.
func (e *OwnershipError) Is(target error) bool { return target == ErrOwnership }

// DefaultTable is the outbox table's name.
const DefaultTable = "arcmill_outbox"

// Config configures an Outbox.
type Config struct {
	// Dialect of the database. Default PostgreSQL.
	Dialect Dialect
	// Table names the outbox table (letters, digits and _, at most 51
	// characters). Default DefaultTable. Migrate also creates <Table>_lock
	// (PostgreSQL, MySQL) and, on PostgreSQL, the <Table>_notify trigger.
	Table string
	// Now is the clock; default time.Now. Times are stored as Unix
	// milliseconds taken from it, so relays on several hosts should keep
	// their clocks in sync to well under a lease.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	_, err := newQueries(c.Dialect, c.Table)
	return err
}

// Outbox is arcmill's transactional outbox over one table: Write stores
// events inside the caller's transaction, a Relay delivers them, and the
// admin methods list, redrive and purge dead letters and delivered rows.
// It is safe for concurrent use.
type Outbox struct {
	db  *stdsql.DB
	cfg Config
	q   *queries
}

// New returns the outbox in db. It does not touch the database; call
// Migrate once at deploy or start-up.
func New(db *stdsql.DB, cfg Config) (*Outbox, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: nil *sql.DB", ErrInvalidConfig)
	}
	cfg.setDefaults()
	q, err := newQueries(cfg.Dialect, cfg.Table)
	if err != nil {
		return nil, err
	}
	return &Outbox{db: db, cfg: cfg, q: q}, nil
}

// Table returns the outbox table's name.
func (o *Outbox) Table() string { return o.cfg.Table }

// Dialect returns the outbox's database dialect.
func (o *Outbox) Dialect() Dialect { return o.cfg.Dialect }

func (o *Outbox) nowMs() int64 { return o.cfg.Now().UnixMilli() }

// Migrate creates the outbox table, its indexes and (PostgreSQL) its
// notify trigger when they are missing. It is idempotent and safe to run
// from several processes at once; it never runs inside a caller's
// transaction, since DDL may commit one.
func (o *Outbox) Migrate(ctx context.Context) error {
	if err := o.q.e.migrate(ctx, o.db, o.cfg.Table, o.q.migration()); err != nil {
		return fmt.Errorf("outbox: migrating %s: %w", o.cfg.Table, err)
	}
	return nil
}
