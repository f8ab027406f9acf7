package inbox

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"regexp"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// DefaultTable is the inbox table's name.
const DefaultTable = "arcmill_inbox"

// DefaultRetention is the retention window this package documents and
// PurgeProcessed callers are advised to keep at least: 7 days, as the
// outbox's PurgeDelivered (Arc's purge default). A record must outlive
// every redelivery of its event; see the package doc.
const DefaultRetention = 7 * 24 * time.Hour

// tablePattern is the rule for table names: safe to splice into SQL, and
// short enough that <table>_processed fits MySQL's 64-character limit on
// index names.
var tablePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,52}$`)

// Config configures an Inbox.
type Config struct {
	// Dialect of the database. When Outbox is set, the inbox shares its
	// database and this must be left zero or equal Outbox.Dialect().
	// Defaults to Outbox.Dialect() when Outbox is set; else New finds it
	// from the *sql.DB's driver (outbox.DialectOf) and NewPgx takes
	// PostgreSQL.
	Dialect outbox.Dialect
	// Table names the inbox table (lower-case letters, digits and _, at
	// most 53 characters; Migrate also creates the index
	// <Table>_processed). One table serves every consumer: its primary
	// key is (consumer, dedupe_key). Defaults to DefaultTable.
	Table string
	// Outbox is the consumer outbox: the events a handler emits (Emit,
	// EmitEntries, or the messages a middleware-wrapped handler returns)
	// are written into it inside the handler's transaction. It must use
	// the same database as the inbox. Defaults to nil: emitting is an
	// error (ErrNoOutbox).
	Outbox *outbox.Outbox
	// EmitTopic is the destination topic of emitted events on the outbox
	// relay's publisher (Arc's stream, say "arc:events"). Required with
	// Outbox.
	EmitTopic string
	// Key returns the dedupe key of an event. Defaults to Key: arc.DedupeKey
	// where the event has an idempotency key, else its meta.id.
	Key func(arc.Event) string
	// TxOptions are the options of the handler's transaction. Defaults to
	// nil: the driver's default (READ COMMITTED on PostgreSQL; MySQL's
	// REPEATABLE READ, under which the inbox still holds: the dedupe record
	// is a unique key, not a read).
	TxOptions *stdsql.TxOptions
	// RefuseOlderThan, when positive, refuses (ErrStale, dead-lettered by
	// the retry middleware) an event not yet in the inbox whose
	// meta.timestamp is older than it, instead of applying it: a record
	// purged after that age can no longer stop a repeat. Set it to your
	// purge age minus the clock skew you allow. An event without a
	// timestamp is never refused. Defaults to 0: never refuse.
	RefuseOlderThan time.Duration
	// OnDuplicate, when set, is called after a delivery was found already
	// recorded and skipped (its transaction rolled back), with the
	// delivery's context, for counting duplicates (a metric, or a counter
	// row written outside the inbox). Defaults to nil.
	OnDuplicate func(ctx context.Context, consumer string, ev arc.Event)
	// Logger logs skipped duplicates at Debug. Defaults to
	// watermill.NopLogger.
	Logger watermill.LoggerAdapter
	// Now is the clock of processed_at and of RefuseOlderThan. Defaults to
	// time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Outbox != nil && c.Dialect == outbox.DetectDialect {
		c.Dialect = c.Outbox.Dialect()
	}
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.Key == nil {
		c.Key = Key
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot work, defaults applied;
// every error wraps ErrInvalidConfig and names the field.
func (c Config) Validate() error {
	c.setDefaults()
	switch {
	case c.Dialect != outbox.DetectDialect && engineOf(c.Dialect) == nil:
		return fmt.Errorf("%w: Config.Dialect %v is unknown", ErrInvalidConfig, c.Dialect)
	case !tablePattern.MatchString(c.Table):
		return fmt.Errorf("%w: Config.Table %q: use 1 to 53 lower-case letters, digits and _", ErrInvalidConfig, c.Table)
	case c.Outbox != nil && c.Dialect != c.Outbox.Dialect():
		return fmt.Errorf("%w: Config.Dialect %v differs from the outbox's (%v): they share one database",
			ErrInvalidConfig, c.Dialect, c.Outbox.Dialect())
	case c.Outbox != nil && c.EmitTopic == "":
		return fmt.Errorf("%w: Config.EmitTopic is required with Config.Outbox", ErrInvalidConfig)
	case c.Outbox == nil && c.EmitTopic != "":
		return fmt.Errorf("%w: Config.EmitTopic is set without Config.Outbox", ErrInvalidConfig)
	case c.RefuseOlderThan < 0:
		return fmt.Errorf("%w: Config.RefuseOlderThan must not be negative, got %v", ErrInvalidConfig, c.RefuseOlderThan)
	}
	return nil
}
