package outbox

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/arcmill/arcmill/arc"
)

// Metadata keys that carry per-message write options through a Watermill
// publisher (Outbox.Publisher). They are read at write time and never
// stored, so the relayed message does not carry them.
const (
	// MetadataDedupeKey overrides the dedupe key; without it, an Arc
	// message with an idempotency key is deduplicated on arc.DedupeKey.
	MetadataDedupeKey = "arcmill_outbox_dedupe_key"
	// MetadataPartitionKey overrides the partition key (default: the Arc
	// meta.partitionKey, arc_partition_key).
	MetadataPartitionKey = "arcmill_outbox_partition_key"
	// MetadataVisibleAt holds the earliest relay time, RFC 3339.
	MetadataVisibleAt = "arcmill_outbox_visible_at"
)

// Limits of what the outbox stores, checked at write time with
// ErrInvalidEntry, on the stored form (which differs only for values that
// are not plain text: see "Ids that are not text" in the package doc).
// Event ids have no limit, as in Arc.
const (
	// MaxTopicLength bounds Entry.Topic, in bytes. A topic is also made of
	// A-Z, a-z, 0-9 and "-$:._" only: watermill-sql's rule for topic names,
	// which Write applies, and of the braces of a Redis Cluster hash tag
	// ("{orders}:events"; see topic_tag.go). Arc's stream names
	// ("arc:events", …) fit it.
	MaxTopicLength = 255
	// MaxTypeLength bounds an event type, in bytes: room for any type Arc
	// accepts (arc.MaxTypeLength UTF-16 code units, at most 768 bytes of
	// UTF-8).
	MaxTypeLength = 1024
	// MaxKeyLength bounds dedupe and partition keys, in bytes: they are
	// indexed. arc.DedupeKey is a 64-character hash, whatever the
	// idempotency key's length.
	MaxKeyLength = 255
)

// topicPattern is watermill-sql's rule for topic names (its publisher
// refuses the others), with the braces of a hash tag, which cross
// watermill-sql encoded (wsqlTopic).
var topicPattern = regexp.MustCompile(`^[A-Za-z0-9\-$:._{}]+$`)

// Entry is one event to store.
type Entry struct {
	// Topic is the destination topic on the relay's publisher: 1 to
	// MaxTopicLength bytes of A-Z, a-z, 0-9, "-$:._" and the braces of a
	// Redis Cluster hash tag ("{orders}:events"). Required.
	Topic string
	// Event is the Arc event to deliver, unchanged (same meta.id and
	// timestamp, as Arc's outbox does). Ignored when Message is set.
	Event arc.Event
	// Message is a Watermill message to deliver instead of an Arc event.
	Message *message.Message
	// DedupeKey makes a second write of the same key a no-op, while the
	// first row is pending, delivered (until purged) or dead-lettered.
	// Default: arc.DedupeKey of the event, from meta.idempotencyKey, which
	// keeps a child that inherited its parent's key from being dropped.
	DedupeKey string
	// PartitionKey orders rows that share it when the relay keeps
	// partition order. Default: the event's meta.partitionKey.
	PartitionKey string
	// VisibleAt delays the row's first relay until then. Zero: at once.
	VisibleAt time.Time
}

// message turns e into the message to store, its options in metadata.
func (e Entry) message() (*message.Message, error) {
	if err := validateTopic(e.Topic); err != nil {
		return nil, err
	}
	var msg *message.Message
	if e.Message != nil {
		msg = e.Message.Copy()
		msg.SetContext(e.Message.Context())
	} else {
		if e.Event.Type == "" {
			return nil, fmt.Errorf("%w: event.type is required", ErrInvalidEntry)
		}
		if e.Event.Meta.ID == "" {
			return nil, fmt.Errorf("%w: event.meta.id is required", ErrInvalidEntry)
		}
		var err error
		if msg, err = arc.ToMessage(e.Event); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidEntry, err)
		}
		if e.DedupeKey == "" {
			e.DedupeKey = arc.DedupeKey(e.Event)
		}
	}
	if e.DedupeKey != "" {
		msg.Metadata.Set(MetadataDedupeKey, e.DedupeKey)
	}
	if e.PartitionKey != "" {
		msg.Metadata.Set(MetadataPartitionKey, e.PartitionKey)
	}
	if !e.VisibleAt.IsZero() {
		msg.Metadata.Set(MetadataVisibleAt, e.VisibleAt.UTC().Format(time.RFC3339Nano))
	}
	return msg, nil
}

// Write stores entries inside tx, in order, one INSERT statement per run
// of entries with the same topic (and per 1,000 rows), through watermill-sql's publisher and this
// outbox's schema adapter. Nothing is relayed unless tx commits.
func (o *Outbox) Write(ctx context.Context, tx *stdsql.Tx, entries ...Entry) error {
	if tx == nil {
		return fmt.Errorf("%w: nil transaction", ErrInvalidConfig)
	}
	return o.write(ctx, wsql.TxFromStdSQL(tx), entries)
}

// WritePgx is Write for a pgx transaction (PostgreSQL).
func (o *Outbox) WritePgx(ctx context.Context, tx pgx.Tx, entries ...Entry) error {
	if tx == nil {
		return fmt.Errorf("%w: nil transaction", ErrInvalidConfig)
	}
	return o.write(ctx, wsql.TxFromPgx(tx), entries)
}

func (o *Outbox) write(ctx context.Context, tx wsql.ContextExecutor, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	// Once per outbox (and a minute after finding an older table): does
	// the table store the Arc JSON? Asked in the caller's transaction,
	// through the catalog, which cannot fail the transaction.
	o.detectArcColumns(ctx, countOn(tx))
	pub, err := o.publisher(tx)
	if err != nil {
		return err
	}
	// One statement per run of entries with the same topic, so the rows'
	// sequence is the caller's order.
	msgs := make([]*message.Message, 0, len(entries))
	for i, e := range entries {
		msg, err := e.message()
		if err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		msg.SetContext(ctx)
		msgs = append(msgs, msg)
	}
	for start := 0; start < len(entries); {
		end := start + 1
		for end < len(entries) && entries[end].Topic == entries[start].Topic {
			end++
		}
		if err := pub.Publish(entries[start].Topic, msgs[start:end]...); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// Publisher returns a Watermill publisher that writes into tx: a message
// published to a topic is relayed to that topic after tx commits, never if
// it rolls back. Per-message options ride in MetadataDedupeKey,
// MetadataPartitionKey and MetadataVisibleAt. One publisher per
// transaction; commit or roll back tx yourself.
func (o *Outbox) Publisher(tx *stdsql.Tx) (message.Publisher, error) {
	if tx == nil {
		return nil, fmt.Errorf("%w: nil transaction", ErrInvalidConfig)
	}
	exec := wsql.TxFromStdSQL(tx)
	o.detectArcColumns(context.Background(), countOn(exec))
	return o.publisher(exec)
}

// PgxPublisher is Publisher for a pgx transaction. Commit or roll back tx
// directly: watermill-sql's pgx wrapper holds no context.
func (o *Outbox) PgxPublisher(tx pgx.Tx) (message.Publisher, error) {
	if tx == nil {
		return nil, fmt.Errorf("%w: nil transaction", ErrInvalidConfig)
	}
	exec := wsql.TxFromPgx(tx)
	o.detectArcColumns(context.Background(), countOn(exec))
	return o.publisher(exec)
}

func (o *Outbox) publisher(tx wsql.ContextExecutor) (message.Publisher, error) {
	pub, err := wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: SchemaAdapter{o: o}}, watermill.NopLogger{})
	if err != nil {
		return nil, err
	}
	return chunkedPublisher{pub}, nil
}

// chunkedPublisher splits a large Publish into statements of at most
// maxRowsPerInsert rows.
type chunkedPublisher struct{ *wsql.Publisher }

// Publish writes msgs to topic, encoded for watermill-sql (wsqlTopic) when
// it has a hash tag.
func (p chunkedPublisher) Publish(topic string, msgs ...*message.Message) error {
	topic = wsqlTopic(topic)
	for len(msgs) > maxRowsPerInsert {
		if err := p.Publisher.Publish(topic, msgs[:maxRowsPerInsert]...); err != nil {
			return err
		}
		msgs = msgs[maxRowsPerInsert:]
	}
	if len(msgs) == 0 {
		return nil
	}
	return p.Publisher.Publish(topic, msgs...)
}

// SchemaAdapter is the watermill-sql v4 schema adapter of arcmill's outbox
// table: it builds the multi-row INSERT that Write and Publisher run,
// ignoring repeated dedupe keys. The table is read by the Relay, not by a
// watermill-sql Subscriber, so the subscribing methods return
// ErrNotSubscribable.
type SchemaAdapter struct{ o *Outbox }

// InsertQuery implements wsql.SchemaAdapter.
func (a SchemaAdapter) InsertQuery(p wsql.InsertQueryParams) (wsql.Query, error) {
	if len(p.Msgs) == 0 {
		return wsql.Query{}, errors.New("outbox: nothing to insert")
	}
	topic := storedTopic(p.Topic)
	if err := validateTopic(topic); err != nil {
		return wsql.Query{}, err
	}
	now := a.o.nowMs()
	// The columns are written whenever the table has them (NULL when
	// disabled); only their content is optional.
	withArc := a.o.q.arc.present()
	encode := withArc && !a.o.cfg.DisableArcJSON
	args := make([]any, 0, 11*len(p.Msgs))
	for _, msg := range p.Msgs {
		row, err := rowFor(msg, now, encode)
		if err != nil {
			return wsql.Query{}, err
		}
		args = append(args, row.eventID, topic, row.eventType, []byte(msg.Payload), row.metadata,
			nullString(row.dedupe), nullString(row.partition), row.visibleAt, now)
		if withArc {
			if row.arcJSON == nil {
				args = append(args, nil, nil)
			} else {
				args = append(args, row.arcJSON, row.arcSum)
			}
		}
	}
	return wsql.Query{Query: a.o.q.insert(len(p.Msgs), withArc), Args: args}, nil
}

// insertRow is one row's columns, text in its stored form (toColumn).
type insertRow struct {
	eventID, eventType, dedupe, partition string
	metadata                              string
	visibleAt                             int64
	// arcJSON is the event's Arc JSON as the relay's publisher would
	// encode it (nil: not an Arc event, or not asked for), and arcSum the
	// checksum of the columns it encodes (arcjson.go).
	arcJSON []byte
	arcSum  int64
}

// rowFor returns msg's row; withArc adds its Arc JSON.
func rowFor(msg *message.Message, now int64, withArc bool) (insertRow, error) {
	if msg.UUID == "" {
		return insertRow{}, fmt.Errorf("%w: message uuid (event.meta.id) is required", ErrInvalidEntry)
	}
	r := insertRow{eventType: msg.Metadata.Get(arc.MetadataType), visibleAt: now}
	r.dedupe = msg.Metadata.Get(MetadataDedupeKey)
	r.partition = msg.Metadata.Get(MetadataPartitionKey)
	if r.partition == "" {
		r.partition = msg.Metadata.Get(arc.MetadataPartitionKey)
	}
	if r.dedupe == "" && msg.Metadata.Get(arc.MetadataIdempotencyKey) != "" {
		if ev, err := arc.FromMessage(msg); err == nil {
			r.dedupe = arc.DedupeKey(ev)
		}
	}
	if v := msg.Metadata.Get(MetadataVisibleAt); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return insertRow{}, fmt.Errorf("%w: %s %q: %w", ErrInvalidEntry, MetadataVisibleAt, v, err)
		}
		r.visibleAt = t.UnixMilli()
	}
	// Text that a column cannot hold as it is gets its escaped form; the
	// limits apply to what is stored.
	r.eventID, r.eventType = toColumn(msg.UUID), toColumn(r.eventType)
	r.dedupe, r.partition = toColumn(r.dedupe), toColumn(r.partition)
	switch {
	case len(r.eventType) > MaxTypeLength:
		return insertRow{}, fmt.Errorf("%w: event type of %d bytes stored, over MaxTypeLength (%d)", ErrInvalidEntry, len(r.eventType), MaxTypeLength)
	case len(r.dedupe) > MaxKeyLength || len(r.partition) > MaxKeyLength:
		return insertRow{}, fmt.Errorf("%w: dedupe and partition keys are limited to MaxKeyLength (%d bytes stored)", ErrInvalidEntry, MaxKeyLength)
	}
	md := msg.Metadata
	for k := range md {
		if strings.HasPrefix(k, "arcmill_outbox_") {
			md = make(message.Metadata, len(msg.Metadata))
			for k, v := range msg.Metadata {
				if !strings.HasPrefix(k, "arcmill_outbox_") {
					md[k] = v
				}
			}
			break
		}
	}
	b := appendMetadata(make([]byte, 0, 64*len(md)), md)
	r.metadata = string(b)
	if withArc {
		// Encoded from exactly what the relay rebuilds: the id, the
		// payload and the metadata as stored (the write options removed).
		if r.arcJSON = encodeStored(msg.UUID, msg.Payload, md); r.arcJSON != nil {
			r.arcSum = arcSum(r.eventID, msg.Payload, b)
		}
	}
	return r, nil
}

// validateTopic applies MaxTopicLength and watermill-sql's character rule.
func validateTopic(topic string) error {
	switch {
	case topic == "" || len(topic) > MaxTopicLength:
		return fmt.Errorf("%w: a topic of 1 to %d bytes is required", ErrInvalidEntry, MaxTopicLength)
	case !topicPattern.MatchString(topic):
		return fmt.Errorf("%w: topic %q: only A-Z, a-z, 0-9, \"-$:._\" (watermill-sql's rule) and the braces of a hash tag are allowed",
			ErrInvalidEntry, topic)
	}
	return nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// SelectQuery implements wsql.SchemaAdapter; it returns ErrNotSubscribable.
func (a SchemaAdapter) SelectQuery(wsql.SelectQueryParams) (wsql.Query, error) {
	return wsql.Query{}, ErrNotSubscribable
}

// UnmarshalMessage implements wsql.SchemaAdapter; it returns
// ErrNotSubscribable.
func (a SchemaAdapter) UnmarshalMessage(wsql.UnmarshalMessageParams) (wsql.Row, error) {
	return wsql.Row{}, ErrNotSubscribable
}

// SchemaInitializingQueries implements wsql.SchemaAdapter with Migrate's
// statements (outside a transaction only).
func (a SchemaAdapter) SchemaInitializingQueries(wsql.SchemaInitializingQueriesParams) ([]wsql.Query, error) {
	var qs []wsql.Query
	for _, s := range a.o.q.migration() {
		qs = append(qs, wsql.Query{Query: s})
	}
	return qs, nil
}

// SubscribeIsolationLevel implements wsql.SchemaAdapter.
func (a SchemaAdapter) SubscribeIsolationLevel() stdsql.IsolationLevel { return stdsql.LevelDefault }

var _ wsql.SchemaAdapter = SchemaAdapter{}
