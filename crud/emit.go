package crud

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// DefaultTopic is the topic CRUD events are written for: Arc's stream
// (arc:events), which every Arc consumer reads.
const DefaultTopic = "arc:events"

// ErrInvalidConfig is wrapped by configuration errors.
var ErrInvalidConfig = errors.New("crud: invalid config")

// EmitterConfig configures an Emitter.
type EmitterConfig struct {
	// Outbox stores the events. Required.
	Outbox *outbox.Outbox
	// Topic is the relay's destination topic for every event. Defaults to
	// DefaultTopic.
	Topic string
}

func (c *EmitterConfig) setDefaults() {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
}

// Validate reports whether the configuration can be used.
func (c EmitterConfig) Validate() error {
	if c.Outbox == nil {
		return fmt.Errorf("%w: Outbox is required", ErrInvalidConfig)
	}
	return nil
}

// Emitter writes CRUD events into the outbox, inside the transaction of
// the change they describe.
type Emitter struct {
	cfg EmitterConfig
}

// NewEmitter returns an Emitter.
func NewEmitter(cfg EmitterConfig) (*Emitter, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Emitter{cfg: cfg}, nil
}

// Outbox returns the outbox the emitter writes to.
func (e *Emitter) Outbox() *outbox.Outbox { return e.cfg.Outbox }

// Topic returns the topic the events are written for.
func (e *Emitter) Topic() string { return e.cfg.Topic }

// Write stores events in tx, in order, in one statement: they are relayed
// once tx commits, and never if it rolls back. A bulk change writes one
// event per changed row.
func (e *Emitter) Write(ctx context.Context, tx *sql.Tx, events ...arc.Event) error {
	return e.cfg.Outbox.Write(ctx, tx, e.Entries(events...)...)
}

// WritePgx is Write for a pgx transaction (PostgreSQL).
func (e *Emitter) WritePgx(ctx context.Context, tx pgx.Tx, events ...arc.Event) error {
	return e.cfg.Outbox.WritePgx(ctx, tx, e.Entries(events...)...)
}

// WriteChanges builds each change's event, taking the scope from ctx
// (ScopeFrom) where a change has none, and stores them in tx as Write.
func (e *Emitter) WriteChanges(ctx context.Context, tx *sql.Tx, changes ...Change) error {
	events, err := Events(ctx, changes...)
	if err != nil {
		return err
	}
	return e.Write(ctx, tx, events...)
}

// WriteChangesPgx is WriteChanges for a pgx transaction.
func (e *Emitter) WriteChangesPgx(ctx context.Context, tx pgx.Tx, changes ...Change) error {
	events, err := Events(ctx, changes...)
	if err != nil {
		return err
	}
	return e.WritePgx(ctx, tx, events...)
}

// Entries returns the outbox entries of events, for callers who write
// them with other entries in one Outbox.Write.
func (e *Emitter) Entries(events ...arc.Event) []outbox.Entry {
	entries := make([]outbox.Entry, len(events))
	for i, ev := range events {
		entries[i] = outbox.Entry{Topic: e.cfg.Topic, Event: ev}
	}
	return entries
}

// Events builds the events of changes; a change with a zero Scope takes
// the scope ctx carries.
func Events(ctx context.Context, changes ...Change) ([]arc.Event, error) {
	scope := ScopeFrom(ctx)
	events := make([]arc.Event, len(changes))
	for i, c := range changes {
		if c.Scope == (Scope{}) {
			c.Scope = scope
		}
		ev, err := c.Event()
		if err != nil {
			return nil, fmt.Errorf("change %d: %w", i, err)
		}
		events[i] = ev
	}
	return events, nil
}
