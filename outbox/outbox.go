package outbox

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"time"
)

// DefaultTable is the outbox table's name.
const DefaultTable = "arcmill_outbox"

// Config configures an Outbox.
type Config struct {
	// Dialect of the database. Defaults to DetectDialect: New finds it
	// from the *sql.DB's driver (DialectOf), and fails with an error
	// asking for it when the driver is not one it knows.
	Dialect Dialect
	// Table names the outbox table (lower-case letters, digits and _, at
	// most 51 characters). Migrate also creates <Table>_lock (PostgreSQL,
	// MySQL) and, on PostgreSQL, the <Table>_notify trigger. Defaults to
	// DefaultTable.
	Table string
	// Now is the clock. Times are stored as Unix milliseconds taken from
	// it, so relays on several hosts should keep their clocks in sync to
	// well under a lease. Defaults to time.Now.
	Now func() time.Time
	// DisableArcJSON has Write store no Arc JSON (arc_json and
	// arc_json_crc stay NULL): the relay then encodes each event, as
	// before 2026-12. The stored bytes save the relay's process the encode
	// (about a third of its CPU per row, BenchmarkRelayRow), but widen each
	// row by the event's size, which the database pays on every claim and
	// acknowledgement: where the database, not the relay, is the
	// bottleneck (one small machine for both), disabling them may relay
	// faster (BENCHMARKS.md). Defaults to false: stored.
	DisableArcJSON bool
}

func (c *Config) setDefaults() {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot work, defaults applied;
// every error wraps ErrInvalidConfig. DetectDialect is valid here: New
// finds the dialect from the database.
func (c Config) Validate() error {
	c.setDefaults()
	d := c.Dialect
	if d == DetectDialect {
		d = PostgreSQL // any dialect: only the table name is judged
	}
	_, err := newQueries(d, c.Table)
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
// Migrate once at deploy or start-up, or apply Schema with a migration
// tool. With Config.Dialect unset, the dialect is found from db's driver
// (DialectOf).
func New(db *stdsql.DB, cfg Config) (*Outbox, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: nil *sql.DB", ErrInvalidConfig)
	}
	cfg.setDefaults()
	if cfg.Dialect == DetectDialect {
		d, err := DialectOf(db)
		if err != nil {
			return nil, err
		}
		cfg.Dialect = d
	}
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
// notify trigger when they are missing, and widens a table of an earlier
// arcmill. It runs Schema's statements, then (MySQL) the widening ALTER
// where an old table needs it. It is idempotent and safe to run from
// several processes at once (on PostgreSQL they take turns on an advisory
// lock); it never runs inside a caller's transaction, since DDL may
// commit one. The package doc ("Schema and upgrades") says what it
// changes between versions.
func (o *Outbox) Migrate(ctx context.Context) error {
	if err := o.q.e.migrate(ctx, o.db, o.cfg.Table, o.q.migration()); err != nil {
		return fmt.Errorf("outbox: migrating %s: %w", o.cfg.Table, err)
	}
	o.q.arc.set(true) // the migration adds the stored Arc JSON's columns
	return nil
}
