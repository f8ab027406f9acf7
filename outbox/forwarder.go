// This file is the Watermill-native path, for teams already on Watermill's
// forwarder: publishers bound to the caller's transaction (*sql.Tx or
// pgx.Tx, never watermill-sql types) that write Watermill's forwarder
// envelopes through watermill-sql v4, and Watermill's Forwarder that moves
// them to any publisher, Redis Streams in Arc's layout included. Arc events
// cross it with every meta field intact, since the envelope carries the
// message's UUID, metadata and payload unchanged. The tables are created by
// MigrateForwarder, explicitly and idempotently, never inside the caller's
// transaction (CREATE TABLE may commit it).

package outbox

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/arcmill/arcmill/arc"
)

// schema returns watermill-sql's adapters for the dialect; DetectDialect
// is found from db's driver, where there is a db.
func (d Dialect) schema(db *stdsql.DB) (wsql.SchemaAdapter, wsql.OffsetsAdapter, error) {
	if d == DetectDialect && db != nil {
		var err error
		if d, err = DialectOf(db); err != nil {
			return nil, nil, err
		}
	}
	if d == DetectDialect {
		return nil, nil, fmt.Errorf("%w: a transaction does not tell its driver: give the dialect", ErrInvalidConfig)
	}
	e := d.engine()
	if e == nil {
		return nil, nil, fmt.Errorf("%w: unknown dialect %d", ErrInvalidConfig, d)
	}
	return e.forwarderSchema()
}

// DefaultForwarderTopic is Watermill's forwarder topic (table
// watermill_forwarder_topic).
const DefaultForwarderTopic = "forwarder_topic"

// MigrateForwarder creates the forwarder's tables (watermill_<topic> and its
// offsets table) if they are missing. Run it at deploy or start-up, not
// inside a business transaction. topic "" is DefaultForwarderTopic.
func MigrateForwarder(ctx context.Context, db *stdsql.DB, dialect Dialect, topic string) error {
	if topic == "" {
		topic = DefaultForwarderTopic
	}
	schema, offsets, err := dialect.schema(db)
	if err != nil {
		return err
	}
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromStdSQL(db), wsql.SubscriberConfig{
		SchemaAdapter: schema, OffsetsAdapter: offsets, InitializeSchema: true, ConsumerGroup: "arcmill_migrate",
	}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	defer sub.Close()
	if err := sub.SubscribeInitialize(topic); err != nil {
		return fmt.Errorf("outbox: creating the tables of %q: %w", topic, err)
	}
	return nil
}

// TxPublisher returns a publisher that writes into tx: what it publishes to
// a topic reaches that topic once tx commits and the Forwarder runs, and
// never if tx rolls back. One publisher per transaction; commit or roll
// back tx yourself. topic "" is DefaultForwarderTopic.
func TxPublisher(tx *stdsql.Tx, dialect Dialect, forwarderTopic string) (message.Publisher, error) {
	if tx == nil {
		return nil, fmt.Errorf("%w: nil transaction", ErrInvalidConfig)
	}
	return txPublisher(wsql.TxFromStdSQL(tx), dialect, forwarderTopic)
}

// PgxTxPublisher is TxPublisher for a pgx transaction (PostgreSQL). Commit
// or roll back tx directly: watermill-sql's pgx wrapper holds no context.
func PgxTxPublisher(tx pgx.Tx, forwarderTopic string) (message.Publisher, error) {
	if tx == nil {
		return nil, fmt.Errorf("%w: nil transaction", ErrInvalidConfig)
	}
	return txPublisher(wsql.TxFromPgx(tx), PostgreSQL, forwarderTopic)
}

func txPublisher(tx wsql.ContextExecutor, dialect Dialect, topic string) (message.Publisher, error) {
	if topic == "" {
		topic = DefaultForwarderTopic
	}
	schema, _, err := dialect.schema(nil)
	if err != nil {
		return nil, err
	}
	pub, err := wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: schema}, watermill.NopLogger{})
	if err != nil {
		return nil, err
	}
	return textPublisher{forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: topic})}, nil
}

// textPublisher refuses what Watermill's forwarder envelope cannot carry.
// The envelope is JSON written by encoding/json, which turns invalid UTF-8
// in the UUID or the metadata (an Arc id with a lone surrogate or raw
// bytes: see arc.Meta.ID) into U+FFFD, so two distinct ids would arrive as
// one. Such a message is refused before anything is written; Outbox.Write
// keeps those bytes.
type textPublisher struct{ message.Publisher }

func (p textPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		if err := envelopeText(m); err != nil {
			return err
		}
	}
	return p.Publisher.Publish(topic, msgs...)
}

// envelopeText reports a message whose UUID or metadata is not valid UTF-8.
func envelopeText(m *message.Message) error {
	what := ""
	switch {
	case !utf8.ValidString(m.UUID):
		what = "UUID"
	default:
		for k, v := range m.Metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				what = fmt.Sprintf("metadata key %q", k)
				break
			}
		}
	}
	if what == "" {
		return nil
	}
	return fmt.Errorf("%w: %w: message %q: its %s is not valid UTF-8, which the forwarder's JSON envelope "+
		"would replace with U+FFFD; Outbox.Write keeps such bytes", ErrInvalidEntry, arc.ErrUnrecoverable, m.UUID, what)
}

// DefaultForwarderConsumerGroup names the forwarder's offsets when
// ForwarderConfig.ConsumerGroup is empty.
const DefaultForwarderConsumerGroup = "arcmill_forwarder"

// ForwarderConfig configures NewForwarder.
type ForwarderConfig struct {
	// Topic is the forwarder topic. Defaults to DefaultForwarderTopic.
	Topic string
	// ConsumerGroup names the forwarder's offsets. Defaults to
	// DefaultForwarderConsumerGroup.
	ConsumerGroup string
	// Logger receives the forwarder's log lines. Defaults to
	// watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

func (c *ForwarderConfig) setDefaults() {
	if c.Topic == "" {
		c.Topic = DefaultForwarderTopic
	}
	if c.ConsumerGroup == "" {
		c.ConsumerGroup = DefaultForwarderConsumerGroup
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// NewForwarder returns Watermill's Forwarder reading the outbox in db and
// publishing each message, unchanged, to its destination topic on dest.
// Run it with Run(ctx); Close stops it.
func NewForwarder(db *stdsql.DB, dialect Dialect, dest message.Publisher, cfg ForwarderConfig) (*forwarder.Forwarder, error) {
	cfg.setDefaults()
	schema, offsets, err := dialect.schema(db)
	if err != nil {
		return nil, err
	}
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromStdSQL(db), wsql.SubscriberConfig{
		SchemaAdapter: schema, OffsetsAdapter: offsets, ConsumerGroup: cfg.ConsumerGroup,
	}, cfg.Logger)
	if err != nil {
		return nil, err
	}
	return forwarder.NewForwarder(sub, dest, cfg.Logger, forwarder.Config{ForwarderTopic: cfg.Topic})
}
