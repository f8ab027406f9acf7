// Package natsjs runs Arc events on NATS JetStream through Watermill's NATS
// adapter (watermill-nats v2), for teams that outgrow one Redis. Each event
// is published on its own subject, <prefix>.<type>, into one stream that
// holds <prefix>.>; a pattern subscription becomes a JetStream consumer
// filtered on the subject the pattern maps to, so the server, not the
// process, does the matching where the semantics allow:
//
//	Arc pattern       NATS subject            matching
//	order.created     <prefix>.order.created  by the server
//	order.*           <prefix>.order.>        by the server (Arc's ".*" takes any depth, as ">")
//	*                 <prefix>.>              by the server
//	order:*, order*   <prefix>.>              in the process, by the wildcard router
//
// Types must be valid subject tokens (no spaces, '*' or '>'): Arc's dotted
// types are. The publisher sets Nats-Msg-Id to the event id, so JetStream
// drops a repeat within its duplicate window (2 minutes by default): an
// outbox relay's republish after a crash is stored once, and so is a
// deliberate republish of the same event id inside the window. The same
// wildcard router and handlers as on Redis run on top: give Subject's
// result as the handler's Topic and the pattern as its pattern.
//
// NewPublisher and NewSubscriber take a PublisherConfig and a
// SubscriberConfig holding a connection the caller opened (nats.Connect,
// with whatever options it needs). Watermill's NATS adapter closes that
// connection when the publisher or subscriber closes, so give each one a
// connection of its own.
package natsjs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/arcmill/arcmill/arc"
)

// Subject maps an Arc pattern onto the NATS subject a subscription should
// use under prefix, and reports whether the server's matching is exact for
// it (false: subscribe to everything and let the wildcard router filter).
func Subject(prefix, pattern string) (subject string, exact bool) {
	switch {
	case pattern == "*":
		return prefix + ".>", true
	case strings.HasSuffix(pattern, ".*") && validTokens(strings.TrimSuffix(pattern, ".*")):
		return prefix + "." + strings.TrimSuffix(pattern, ".*") + ".>", true
	case !strings.ContainsAny(pattern, "*") && validTokens(pattern):
		return prefix + "." + pattern, true
	}
	return prefix + ".>", false
}

var token = regexp.MustCompile(`^[^\s.*>]+$`)

func validTokens(s string) bool {
	for _, t := range strings.Split(s, ".") {
		if !token.MatchString(t) {
			return false
		}
	}
	return true
}

// EnsureStream creates the stream that holds <prefix>.> if it is missing.
func EnsureStream(js nats.JetStreamManager, name, prefix string) error {
	if _, err := js.StreamInfo(name); err == nil {
		return nil
	}
	if _, err := js.AddStream(&nats.StreamConfig{Name: name, Subjects: []string{prefix + ".>"}}); err != nil {
		return fmt.Errorf("natsjs: creating stream %s for %s.>: %w", name, prefix, err)
	}
	return nil
}

// ErrInvalidConfig is wrapped by every error that refuses a
// PublisherConfig or a SubscriberConfig.
var ErrInvalidConfig = errors.New("natsjs: invalid config")

// DefaultPrefix is the subject prefix of PublisherConfig and EnsureStream
// callers that have no reason to choose another: events go to
// arc.<type>.
const DefaultPrefix = "arc"

// Defaults of SubscriberConfig, Watermill's NATS adapter's.
const (
	DefaultCloseTimeout   = 30 * time.Second
	DefaultAckWaitTimeout = 30 * time.Second
)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Conn is the connection to publish on, with JetStream enabled on the
	// server; the Publisher's Close closes it. Required.
	Conn *nats.Conn
	// Prefix is the first subject token: an event of type t goes to
	// <Prefix>.<t>. It must be valid subject tokens. Defaults to
	// DefaultPrefix.
	Prefix string
	// Logger defaults to watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

func (c *PublisherConfig) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate applies the defaults to a copy of c and reports, field by field,
// a value that cannot work. Every error wraps ErrInvalidConfig.
func (c PublisherConfig) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *PublisherConfig) validate() error {
	switch {
	case c.Conn == nil:
		return fmt.Errorf("%w: PublisherConfig.Conn is required", ErrInvalidConfig)
	case !validTokens(c.Prefix):
		return fmt.Errorf("%w: PublisherConfig.Prefix %q is not a sequence of subject tokens", ErrInvalidConfig, c.Prefix)
	}
	return nil
}

// Publisher publishes each Arc message on <prefix>.<type>, whatever topic
// it is given; the stream holding <prefix>.> must exist (EnsureStream).
type Publisher struct {
	pub    *wnats.Publisher
	prefix string
}

// NewPublisher returns a JetStream publisher on cfg.Conn that sets
// Nats-Msg-Id to the event id.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pub, err := wnats.NewPublisherWithNatsConn(cfg.Conn, wnats.PublisherPublishConfig{
		Marshaler: &wnats.NATSMarshaler{}, SubjectCalculator: wnats.DefaultSubjectCalculator,
		JetStream: wnats.JetStreamConfig{TrackMsgId: true}}, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("natsjs: publisher: %w", err)
	}
	return &Publisher{pub: pub, prefix: cfg.Prefix}, nil
}

// Publish sends each message to its type's subject; topic is ignored.
func (p *Publisher) Publish(_ string, msgs ...*message.Message) error {
	for _, msg := range msgs {
		typ := msg.Metadata.Get(arc.MetadataType)
		if typ == "" || !validTokens(typ) {
			return fmt.Errorf("natsjs: message %s: type %q is not a NATS subject token sequence", msg.UUID, typ)
		}
		if err := p.pub.Publish(p.prefix+"."+typ, msg); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the connection.
func (p *Publisher) Close() error { return p.pub.Close() }

// SubscriberConfig configures NewSubscriber.
type SubscriberConfig struct {
	// Conn is the connection to consume on; the subscriber's Close drains
	// and closes it. Required.
	Conn *nats.Conn
	// Group names the durable consumers, shared by every instance of the
	// group (Arc's consumer group, the service): one per subscribed
	// subject. Required.
	Group string
	// CloseTimeout is how long Close waits for handlers to ack or nack.
	// Defaults to DefaultCloseTimeout.
	CloseTimeout time.Duration
	// AckWaitTimeout is how long the server waits for an ack before it
	// redelivers. Defaults to DefaultAckWaitTimeout.
	AckWaitTimeout time.Duration
	// Logger defaults to watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

func (c *SubscriberConfig) setDefaults() {
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.AckWaitTimeout == 0 {
		c.AckWaitTimeout = DefaultAckWaitTimeout
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate applies the defaults to a copy of c and reports, field by field,
// a value that cannot work. Every error wraps ErrInvalidConfig.
func (c SubscriberConfig) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *SubscriberConfig) validate() error {
	switch {
	case c.Conn == nil:
		return fmt.Errorf("%w: SubscriberConfig.Conn is required", ErrInvalidConfig)
	case c.Group == "":
		return fmt.Errorf("%w: SubscriberConfig.Group is required", ErrInvalidConfig)
	case strings.ContainsAny(c.Group, " \t\r\n.*>"):
		return fmt.Errorf("%w: SubscriberConfig.Group %q must not hold whitespace, '.', '*' or '>'",
			ErrInvalidConfig, c.Group)
	case c.CloseTimeout < 0:
		return fmt.Errorf("%w: SubscriberConfig.CloseTimeout must not be negative, got %v", ErrInvalidConfig, c.CloseTimeout)
	case c.AckWaitTimeout < 0:
		return fmt.Errorf("%w: SubscriberConfig.AckWaitTimeout must not be negative, got %v",
			ErrInvalidConfig, c.AckWaitTimeout)
	}
	return nil
}

// NewSubscriber returns a JetStream subscriber whose subscriptions are
// durable consumers named after cfg.Group and the subject (so each wildcard
// handler's subject gets its own consumer), shared by the instances of
// the group; messages are acknowledged explicitly, after the handler.
func NewSubscriber(cfg SubscriberConfig) (*wnats.Subscriber, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	durable := durableName
	sc := wnats.SubscriberConfig{QueueGroupPrefix: cfg.Group,
		CloseTimeout: cfg.CloseTimeout, AckWaitTimeout: cfg.AckWaitTimeout,
		SubjectCalculator: func(queueGroupPrefix, topic string) *wnats.SubjectDetail {
			// The queue group must be the durable's name.
			return &wnats.SubjectDetail{Primary: topic, QueueGroup: durable(queueGroupPrefix, topic)}
		},
		JetStream: wnats.JetStreamConfig{DurablePrefix: cfg.Group, DurableCalculator: durable,
			SubscribeOptions: []nats.SubOpt{nats.DeliverAll(), nats.AckExplicit()}},
	}
	sub, err := wnats.NewSubscriberWithNatsConn(cfg.Conn, sc.GetSubscriberSubscriptionConfig(), cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("natsjs: subscriber: %w", err)
	}
	return sub, nil
}

// durableName names the consumer of group on subject: a readable part
// (characters JetStream allows) and a hash of the subject, so that two
// subjects never share a consumer (order.> and order.all would otherwise).
func durableName(group, subject string) string {
	var b strings.Builder
	for _, r := range subject {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		case r == '>':
			b.WriteString("all")
		default:
			b.WriteByte('_')
		}
	}
	readable := b.String()
	if len(readable) > 80 {
		readable = readable[:80]
	}
	sum := sha256.Sum256([]byte(subject))
	return group + "_" + readable + "_" + hex.EncodeToString(sum[:6])
}
