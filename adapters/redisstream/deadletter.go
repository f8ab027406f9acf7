package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testsignal"
	"github.com/arcmill/arcmill/middleware"
)

// Dead-letter stream entry fields, in Arc's order.
const (
	FieldOriginalStream = "originalStream"
	FieldOriginalID     = "originalId"
	FieldGroup          = "group"
)

// RawFieldPrefix starts the names of the fields that keep, after Arc's
// dead-letter fields, the original fields of an entry that could not be
// read: "raw:type", "raw:data", … in the entry's order, values byte for
// byte. `arcmill dlq redrive` writes them back as they were. Arc's readers
// ignore fields they do not know.
const RawFieldPrefix = "raw:"

// deadLetterNearCap is the share of a dead-letter stream's cap past which
// every write warns: trimming would soon drop dead letters nobody has
// redriven or purged.
const deadLetterNearCap = 0.9

// writeDeadLetter XADDs a dead letter and, when the stream has a cap,
// warns as it nears it. Dead-letter streams are uncapped by default: a dead
// letter leaves only by redrive or purge, never by silent trimming.
func writeDeadLetter(ctx context.Context, client redis.UniversalClient, args *redis.XAddArgs, logger watermill.LoggerAdapter) error {
	if err := client.XAdd(ctx, args).Err(); err != nil {
		return err
	}
	warnNearCap(ctx, client, args, logger)
	return nil
}

func warnNearCap(ctx context.Context, client redis.UniversalClient, args *redis.XAddArgs, logger watermill.LoggerAdapter) {
	if args.MaxLen > 0 {
		if n, err := client.XLen(ctx, args.Stream).Result(); err == nil && float64(n) >= deadLetterNearCap*float64(args.MaxLen) {
			logger.Error("Dead-letter stream near its cap: older dead letters will be trimmed; redrive or purge them",
				nil, watermill.LogFields{"topic": args.Stream, "entries": n, "cap": args.MaxLen})
		}
	}
}

// deadLetterWriter writes dead letters, confirmed as a durable Publisher
// confirms its entries (XADD and WAIT or WAITAOF on the stream's primary,
// following a Cluster's redirects, refused at once while the replicas are
// known to be missing) when a Durability is given.
type deadLetterWriter struct {
	once sync.Once
	pub  *Publisher
	err  error
}

// write writes the dead letter args; with d, it returns nil only once
// Redis confirmed it as d asks, else an error wrapping ErrNotDurable (the
// dead letter may be written, unconfirmed: the message it stands for is
// not acknowledged, and its next delivery writes it again or finds it).
// uuid names the message in errors.
func (w *deadLetterWriter) write(ctx context.Context, client redis.UniversalClient, d *Durability, args *redis.XAddArgs,
	uuid string, logger watermill.LoggerAdapter) error {
	if d == nil {
		return writeDeadLetter(ctx, client, args, logger)
	}
	pub, err := w.publisher(client, d, logger)
	if err != nil {
		return err
	}
	if err := pub.send(ctx, args.Stream, []*message.Message{message.NewMessage(uuid, nil)}, []*redis.XAddArgs{args}); err != nil {
		return err
	}
	warnNearCap(ctx, client, args, logger)
	return nil
}

// publisher returns the durable Publisher the writer confirms with, made
// on first use.
func (w *deadLetterWriter) publisher(client redis.UniversalClient, d *Durability, logger watermill.LoggerAdapter) (*Publisher, error) {
	w.once.Do(func() {
		w.pub, w.err = NewPublisher(PublisherConfig{Client: client, Durability: d, SkipServerCheck: true, Logger: logger})
	})
	return w.pub, w.err
}

// unknownType is Arc's type for an event that cannot be read.
const unknownType = "<unknown>"

// deadLetterGuardTTL is how long the marker that makes one process the
// writer of an entry's dead letter lives.
const deadLetterGuardTTL = 10 * time.Minute

// RawTruncatedField marks the dead letter of an entry too large to keep
// whole: its raw fields are cut to an excerpt, and the field gives the
// entry's size in bytes. Such a dead letter cannot be redriven as it was.
const RawTruncatedField = "arcmill:raw-truncated"

// readEntryScript returns entry ARGV[1] of KEYS[1] as {size, fields}: the
// fields whole when they take at most ARGV[2] bytes (size 0), else the
// first ARGV[4] fields each cut to ARGV[3] bytes and size their total, so an
// oversized entry never crosses the network whole. Nothing when the entry
// is gone.
var readEntryScript = redis.NewScript(`
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then return false end
local fields = e[1][2]
local total = 0
for i = 1, #fields do total = total + #fields[i] end
if total <= tonumber(ARGV[2]) then return {0, fields} end
local cut = {}
for i = 1, math.min(#fields, tonumber(ARGV[4])) do cut[i] = string.sub(fields[i], 1, tonumber(ARGV[3])) end
return {total, cut}`)

// entry returns one entry of stream, in order, bounded: an entry over
// DefaultMaxEntryBytes comes cut to excerpts, with its size in truncated.
// found is false when Redis reports it gone.
func entry(ctx context.Context, client redis.UniversalClient, stream, id string) (e Entry, truncated int64, found bool, err error) {
	res, err := readEntryScript.Run(ctx, client, []string{stream}, id, DefaultMaxEntryBytes, excerptBytes,
		excerptFields).Slice()
	if errors.Is(err, redis.Nil) {
		return Entry{}, 0, false, nil
	}
	if err != nil {
		return Entry{}, 0, false, fmt.Errorf("redisstream: reading entry %s of %s: %w", id, stream, err)
	}
	if len(res) != 2 {
		return Entry{}, 0, false, fmt.Errorf("redisstream: reading entry %s of %s: unexpected reply", id, stream)
	}
	truncated, _ = res[0].(int64)
	es, err := parseEntries([]any{[]any{id, res[1]}})
	if err != nil {
		return Entry{}, 0, false, err
	}
	return es[0], truncated, true, nil
}

// rawOf is what a dead letter keeps of an unreadable entry: its fields, or
// their excerpts and the truncation marker.
func rawOf(e Entry, truncated int64) []string {
	if truncated == 0 {
		return e.Fields
	}
	return append(append([]string(nil), e.Fields...), RawTruncatedField, strconv.FormatInt(truncated, 10))
}

// deadLetterArgs is the XADD of a dead letter in Arc's layout: type,
// originalStream, originalId, group, data, then (for an entry that could
// not be read) its raw fields. Both writers, DeadLetterPublisher and the
// subscriber's claims, build their entries here.
func deadLetterArgs(dlq string, maxLen int64, typ, stream, id, group string, envelope []byte, raw []string) *redis.XAddArgs {
	values := make([]any, 0, 10+len(raw))
	values = append(values, FieldType, typ, FieldOriginalStream, stream, FieldOriginalID, id,
		FieldGroup, group, FieldData, string(envelope))
	for i := 0; i+1 < len(raw); i += 2 {
		values = append(values, RawFieldPrefix+raw[i], raw[i+1])
	}
	args := &redis.XAddArgs{Stream: dlq, ID: "*", Values: values}
	if maxLen > 0 {
		args.MaxLen, args.Approx = maxLen, true
	}
	return args
}

// encodeEnvelope writes a dead letter's data field as JSON.stringify would.
func encodeEnvelope(dl middleware.DeadLetteredEvent) ([]byte, error) { return dl.MarshalArc() }

// placeholder is Arc's stand-in event for an entry that cannot be read,
// with the event's own id where it can be read and else the entry id (as
// Arc does).
func placeholder(entryID string, fields map[string]any, now time.Time) arc.Event {
	data, _ := fields[FieldData].(string)
	id := middleware.ReadableEventID([]byte(data))
	if id == "" {
		id = entryID
	}
	return middleware.PlaceholderEvent(id, now)
}

// deadLetterer moves entries of a subscriber's stream that can no longer
// be delivered (delivered MaxDeliveries times, or gone) to the dead-letter
// stream, then acks them; one process writes each entry's dead letter.
type deadLetterer struct {
	cfg      SubscriberConfig
	stream   string
	consumer string
	host     string
	logger   watermill.LoggerAdapter
	signal   *testsignal.Signal[string]
	w        *deadLetterWriter
}

// write dead-letters entry id and reports whether this call wrote it. On
// failure the entry stays pending, for the next claim pass to try again.
func (d *deadLetterer) write(ctx context.Context, id string, deliveries int64, why string) bool {
	cfg := d.cfg
	fields := watermill.LogFields{"xid": id}
	if cfg.DeadLetterStream == "" {
		d.logger.Error("Entry lost from the stream while pending (no DeadLetterStream configured)", nil, fields)
		return false
	}
	base := context.WithoutCancel(ctx)
	ctx, cancel := context.WithTimeout(base, cfg.CommandTimeout)
	defer cancel()
	// One dead letter per entry, whichever consumer or process gets here
	// first.
	guard := "arcmill:dead-lettered:" + d.stream + ":" + cfg.ConsumerGroup + ":" + id
	if won, err := cfg.Client.SetNX(ctx, guard, d.consumer, deadLetterGuardTTL).Result(); err != nil || !won {
		return false
	}
	// settle runs a command after the write on a deadline of its own: the
	// write (a WAIT for a replica that is gone) may have used ctx's up, and
	// a guard left behind holds the entry for deadLetterGuardTTL.
	settle := func(cmd func(context.Context) error) error {
		ctx, cancel := context.WithTimeout(base, cfg.CommandTimeout)
		defer cancel()
		return cmd(ctx)
	}
	releaseGuard := func() {
		_ = settle(func(ctx context.Context) error { return cfg.Client.Del(ctx, guard).Err() })
	}
	now := cfg.Now().UTC()
	dl := middleware.DeadLetteredEvent{Error: middleware.ErrorInfo{Message: why}, Attempts: int(deliveries),
		FirstFailedAt: now, LastFailedAt: now, Reason: middleware.ReasonRetryExhausted, SourceTopic: d.stream,
		ConsumerGroup: cfg.ConsumerGroup, OriginalID: id, Host: d.host}
	typ := unknownType
	var raw []string
	e, truncated, found, err := entry(ctx, cfg.Client, d.stream, id)
	if err != nil {
		// The content may still exist: never write a content-less dead letter
		// (and ack) for it. The next claim pass tries again.
		releaseGuard()
		d.logger.Error("Reading an entry to dead-letter failed; it stays pending", err, fields)
		return false
	}
	if found && truncated > 0 {
		dl.Reason = middleware.ReasonMalformed
		dl.Error.Message = fmt.Sprintf("%s; and the entry (%d bytes) is over MaxEntryBytes", why, truncated)
		dl.Event = placeholder(id, e.Map(), now)
		raw = rawOf(e, truncated)
	} else if found {
		values := e.Map()
		msg, uerr := cfg.Unmarshaller.Unmarshal(values)
		var ev arc.Event
		if uerr == nil && msg != nil && msg.Metadata.Get(arc.MetadataMalformed) == "" {
			ev, uerr = limitsOf(cfg.Unmarshaller).FromMessage(msg)
		} else if uerr == nil {
			uerr = errors.New(msg.Metadata.Get(arc.MetadataMalformed))
		}
		if uerr == nil {
			dl.Event, typ = ev, ev.Type
		} else {
			dl.Reason = middleware.ReasonMalformed
			dl.Error.Message = why + "; and the entry cannot be read: " + uerr.Error()
			dl.Event = placeholder(id, values, now)
			raw = e.Fields
		}
	} else { // Redis reports it deleted: Arc's placeholder
		dl.Event = middleware.PlaceholderEvent(id, now)
	}
	data, err := encodeEnvelope(dl)
	if err != nil { // cannot happen for a placeholder: fall back to one
		dl.Event, typ = middleware.PlaceholderEvent(id, now), unknownType
		if data, err = encodeEnvelope(dl); err != nil {
			d.logger.Error("Encoding a dead letter", err, fields)
			releaseGuard()
			return false
		}
	}
	if err := d.w.write(ctx, cfg.Client, cfg.DeadLetterDurability, deadLetterArgs(cfg.DeadLetterStream, cfg.DeadLetterMaxLen,
		typ, d.stream, id, cfg.ConsumerGroup, data, raw), id, d.logger); err != nil {
		releaseGuard() // let the next pass try again
		d.logger.Error("Dead letter not written; the entry stays pending", err, fields)
		return false
	}
	if err := settle(func(ctx context.Context) error {
		return cfg.Client.XAck(ctx, d.stream, cfg.ConsumerGroup, id).Err()
	}); err != nil {
		d.logger.Error("XACK of a dead-lettered entry failed; the guard keeps it from a second dead letter", err, fields)
	}
	// Error, as middleware.DeadLetter and natsjs log theirs: an entry the
	// service gave up on needs someone to look at it.
	d.logger.Error("Entry moved to the dead-letter stream", errors.New(dl.Error.Message), watermill.LogFields{"xid": id,
		"deliveries": deliveries, "reason": dl.Reason, "event_type": typ})
	d.signal.Signal(id)
	return true
}

// DeadLetterPublisher writes middleware.DeadLetter's dead letters into a
// stream in Arc's dead-letter layout: XADD <topic> * type <event type>
// originalStream <stream> originalId <entry id> group <group> data
// <DeadLetteredEvent JSON>, so Arc's tooling reads ours. For a message
// that could not be read as an event, it re-reads the original entry and
// keeps its fields exactly (RawFieldPrefix), and names the event by its id
// where that can be read. Give it to middleware.DeadLetterConfig.Publisher
// with Topic "<stream>:dlq" (Arc's default arc:events:dlq for arc:events)
// and the group's name in ConsumerGroup.
type DeadLetterPublisher struct {
	// Client runs the XADDs. Required.
	Client redis.UniversalClient
	// MaxLen caps the stream (MAXLEN ~), and a warning is logged as it
	// nears the cap. Defaults to no cap: dead letters leave only by redrive
	// or purge.
	MaxLen int64
	// Durability, when set, has each dead letter confirmed beyond the
	// primary's memory before Publish returns, as PublisherConfig.Durability
	// does for events: the message it stands for is acknowledged only then.
	// Without it a dead letter written just before the primary dies can go
	// with it, while the message's acknowledgement, sent after, lands on the
	// promoted replica. Use the same setting as the service's publisher.
	// Defaults to nil: a plain XADD.
	Durability *Durability
	// Logger receives the near-cap warning. Defaults to no logging.
	Logger watermill.LoggerAdapter

	w deadLetterWriter
}

// Publish writes each dead letter; a message that is not one is refused.
func (p *DeadLetterPublisher) Publish(topic string, msgs ...*message.Message) error {
	if p.Client == nil {
		return fmt.Errorf("%w: DeadLetterPublisher.Client is required", ErrInvalidConfig)
	}
	if p.MaxLen < 0 {
		return fmt.Errorf("%w: DeadLetterPublisher.MaxLen is %d: must not be negative", ErrInvalidConfig, p.MaxLen)
	}
	logger := p.Logger
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	for _, msg := range msgs {
		var dl middleware.DeadLetteredEvent
		if err := json.Unmarshal(msg.Payload, &dl); err != nil {
			return fmt.Errorf("redisstream: message %q is not a dead letter: %w", msg.UUID, err)
		}
		md := msg.Metadata
		stream, id := md.Get(middleware.MetadataDLQSourceTopic), md.Get(middleware.MetadataDLQOriginalID)
		data, typ := []byte(msg.Payload), dl.Event.Type
		var raw []string
		if dl.Raw != nil && stream != "" && id != "" {
			// The message was not an event: keep the entry itself, exactly.
			if e, truncated, found, err := entry(msg.Context(), p.Client, stream, id); err == nil && found {
				raw = rawOf(e, truncated)
				if dl.Event.Type == unknownType {
					dl.Event = placeholder(id, e.Map(), dl.LastFailedAt)
					if enc, err := encodeEnvelope(dl); err == nil {
						data = enc
					}
				}
			}
		}
		if err := p.w.write(msg.Context(), p.Client, p.Durability, deadLetterArgs(topic, p.MaxLen, typ, stream, id,
			md.Get(middleware.MetadataDLQConsumerGroup), data, raw), msg.UUID, logger); err != nil {
			return fmt.Errorf("redisstream: writing the dead letter of %q to %q: %w", dl.Event.Meta.ID, topic, err)
		}
	}
	return nil
}

// Close does nothing: the client is the caller's.
func (p *DeadLetterPublisher) Close() error { return nil }

// DeadLetterEntry is one entry of a dead-letter stream, Arc's or ours.
type DeadLetterEntry struct {
	// ID is the dead-letter entry's own id.
	ID             string
	Type           string
	OriginalStream string
	OriginalID     string
	Group          string
	// Envelope is the DeadLetteredEvent; an Arc envelope has no reason.
	Envelope middleware.DeadLetteredEvent
	// RawFields, for an entry that could not be read, are its original
	// fields (names and values alternating, in order), to put back as they
	// were. Only ReadDeadLetterEntry, which sees the order, fills it.
	RawFields []string
	// Truncated is the size in bytes of an entry too large to keep whole:
	// RawFields are then excerpts, not to be put back. 0 otherwise.
	Truncated int64
}

// ReadDeadLetter reads an entry of a dead-letter stream in Arc's layout.
// Use ReadDeadLetterEntry on entries from RangeEntries to get RawFields.
func ReadDeadLetter(e redis.XMessage) (DeadLetterEntry, error) {
	return readDeadLetter(e.ID, e.Values)
}

// ReadDeadLetterEntry reads an entry of a dead-letter stream, with its
// raw fields in order when it has them.
func ReadDeadLetterEntry(e Entry) (DeadLetterEntry, error) {
	out, err := readDeadLetter(e.ID, e.Map())
	for i := 0; i+1 < len(e.Fields); i += 2 {
		if name, ok := strings.CutPrefix(e.Fields[i], RawFieldPrefix); ok {
			out.RawFields = append(out.RawFields, name, e.Fields[i+1])
		}
		if e.Fields[i] == RawFieldPrefix+RawTruncatedField {
			out.Truncated, _ = strconv.ParseInt(e.Fields[i+1], 10, 64)
		}
	}
	if out.Truncated > 0 { // the marker is not one of the entry's fields
		out.RawFields = out.RawFields[:len(out.RawFields)-2]
	}
	return out, err
}

func readDeadLetter(id string, values map[string]any) (DeadLetterEntry, error) {
	str := func(k string) string { s, _ := values[k].(string); return s }
	out := DeadLetterEntry{ID: id, Type: str(FieldType), OriginalStream: str(FieldOriginalStream),
		OriginalID: str(FieldOriginalID), Group: str(FieldGroup)}
	data := str(FieldData)
	if data == "" {
		return out, fmt.Errorf("redisstream: dead-letter entry %s has no data", id)
	}
	if err := json.Unmarshal([]byte(data), &out.Envelope); err != nil {
		return out, fmt.Errorf("redisstream: dead-letter entry %s: %w", id, err)
	}
	return out, nil
}
