package natsjs

import (
	"context"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	wnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
)

// Publisher publishes each Arc message on <prefix>.<type>, whatever topic
// it is given; the stream holding <prefix>.> must exist (EnsureStream).
// With PublisherConfig.PartitionIngress, it publishes on
// <ingress>.<key token>.<type> instead, for the server to partition (see
// PartitionMapping).
// A dead letter (a message carrying middleware.MetadataDLQReason, as
// middleware.DeadLetter writes them) goes to topic instead, which must be
// a subject outside <prefix>.>, in a stream of its own.
//
// Nats-Msg-Id, JetStream's deduplication key, is MsgID(msg): the message
// UUID (the event id, for arc.ToMessage), so a republish of the same event
// within the stream's duplicate window (2 minutes by default) is stored
// once. A delayed-retry copy (middleware.MetadataDelayedRetries n) gets
// "<uuid>.retry.<n>", so it is stored although its UUID is the event's.
type Publisher struct {
	conn   *nats.Conn
	js     nats.JetStreamContext
	prefix string
	// ingress is PublisherConfig.PartitionIngress: "" for no partitions.
	ingress string
	logger  watermill.LoggerAdapter

	closeOnce sync.Once
	closeErr  error
}

// NewPublisher returns a JetStream publisher on cfg.Conn, or on a
// connection it opens on cfg.URL with cfg.Options.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	conn, err := dial(cfg.Conn, cfg.URL, cfg.Options, cfg.Logger)
	if err != nil {
		return nil, err
	}
	js, err := conn.JetStream()
	if err != nil {
		if cfg.Conn == nil {
			conn.Close()
		}
		return nil, fmt.Errorf("natsjs: publisher: %w", err)
	}
	return &Publisher{conn: conn, js: js, prefix: cfg.Prefix, ingress: cfg.PartitionIngress, logger: cfg.Logger}, nil
}

// MsgID returns the Nats-Msg-Id the Publisher gives msg: its UUID, and
// for the n-th delayed retry of it "<uuid>.retry.<n>".
func MsgID(msg *message.Message) string {
	if n := msg.Metadata.Get(middleware.MetadataDelayedRetries); n != "" {
		return msg.UUID + ".retry." + n
	}
	return msg.UUID
}

// Publish sends each event to its type's subject, and each dead letter to
// topic. It stops at the first failure.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	for _, msg := range msgs {
		subject, err := p.subject(topic, msg)
		if err != nil {
			return err
		}
		nm, err := (&wnats.NATSMarshaler{}).Marshal(subject, msg)
		if err != nil {
			return fmt.Errorf("natsjs: message %s: %w", msg.UUID, err)
		}
		opts := []nats.PubOpt{nats.MsgId(MsgID(msg))}
		if ctx := msg.Context(); ctx != context.Background() {
			opts = append(opts, nats.Context(ctx))
		}
		ack, err := p.js.PublishMsg(nm, opts...)
		if err != nil {
			return fmt.Errorf("natsjs: publishing message %s to %s: %w", msg.UUID, subject, err)
		}
		if ack.Duplicate {
			p.logger.Debug("JetStream dropped a duplicate within its window", watermill.LogFields{
				"message_uuid": msg.UUID, "topic": subject, "msg_id": MsgID(msg)})
		}
	}
	return nil
}

func (p *Publisher) subject(topic string, msg *message.Message) (string, error) {
	if msg.Metadata.Get(middleware.MetadataDLQReason) != "" {
		if err := ValidateSubject(topic, false); err != nil {
			return "", fmt.Errorf("natsjs: dead letter %s: topic: %w", msg.UUID, err)
		}
		if underPrefix(topic, p.prefix) {
			return "", fmt.Errorf("%w: dead letter %s: topic %q lies under %s.>, where every \"*\" consumer would read it",
				ErrInvalidSubject, msg.UUID, topic, p.prefix)
		}
		return topic, nil
	}
	typ := msg.Metadata.Get(arc.MetadataType)
	if typ == "" {
		return "", fmt.Errorf("%w: message %s has no event type (%s)", ErrInvalidSubject, msg.UUID, arc.MetadataType)
	}
	subject := p.prefix + "." + typ
	if p.ingress != "" {
		subject = p.ingress + "." + KeyToken(PartitionKey(msg)) + "." + typ
	}
	if err := ValidateSubject(subject, false); err != nil {
		return "", fmt.Errorf("natsjs: message %s: type %q is not a NATS subject token sequence: %w", msg.UUID, typ, err)
	}
	return subject, nil
}

// Close drains and closes the connection. It is idempotent: a later call
// returns the first one's result (Drain is asynchronous, so a second Drain
// could meet the connection closing and fail).
func (p *Publisher) Close() error {
	p.closeOnce.Do(func() {
		if !p.conn.IsClosed() {
			p.closeErr = p.conn.Drain()
		}
	})
	return p.closeErr
}
