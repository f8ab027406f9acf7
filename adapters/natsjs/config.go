package natsjs

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/nats-io/nats.go"
)

// ErrInvalidConfig is wrapped by every error that refuses a
// PublisherConfig or a SubscriberConfig.
var ErrInvalidConfig = errors.New("natsjs: invalid config")

// DefaultPrefix is the subject prefix of PublisherConfig and EnsureStream
// callers that have no reason to choose another: events go to
// arc.<type>.
const DefaultPrefix = "arc"

// DefaultDeadLetterPrefix is the first token of the default dead-letter
// subject, <DefaultDeadLetterPrefix>.<group>: outside <prefix>.>, so that
// dead letters live in a stream of their own (EnsureStream(js,
// "ARC_DEAD_LETTERS", DefaultDeadLetterPrefix)) and no "*" consumer of the
// events sees them.
const DefaultDeadLetterPrefix = "arcdlq"

// Defaults of SubscriberConfig.
const (
	DefaultCloseTimeout   = 30 * time.Second
	DefaultAckWaitTimeout = 30 * time.Second
	// DefaultMaxDeliver is how many times JetStream delivers a message
	// before it gives up and the subscriber dead-letters it. A handler's
	// own failures are retried in process (middleware.Retry) and
	// dead-lettered by middleware.DeadLetter within one delivery; these
	// deliveries are for crashes, ack timeouts and failed dead-letter
	// writes. As redisstream.DefaultMaxDeliveries.
	DefaultMaxDeliver = 5
	// DefaultMaxAckPending bounds the messages the group's consumer has
	// delivered and not yet seen acknowledged.
	DefaultMaxAckPending = 64
)

// NoMaxDeliver, as SubscriberConfig.MaxDeliver, lets JetStream redeliver
// for ever: nothing is dead-lettered by the subscriber.
const NoMaxDeliver = -1

// DefaultBackOff returns SubscriberConfig.BackOff's default: 1 s, 5 s,
// 30 s. A function, so that no caller can change it.
func DefaultBackOff() []time.Duration {
	return []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}
}

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Conn is a connection the caller opened (nats.Connect with whatever
	// options it needs), with JetStream enabled on the server; the
	// Publisher's Close drains and closes it. Give it, or URL: not both.
	Conn *nats.Conn
	// URL is the server (or comma-separated servers) NewPublisher
	// connects to when Conn is nil, with Options; the connection is the
	// Publisher's, and its Close drains it. Give it, or Conn: not both.
	URL string
	// Options configure the connection NewPublisher opens on URL:
	// credentials (nats.UserInfo, nats.UserCredentials, nats.Token,
	// nats.Nkey), TLS (nats.Secure, nats.RootCAs, nats.ClientCert),
	// reconnection (nats.MaxReconnects, nats.ReconnectWait), a name for
	// the server's monitoring (nats.Name). They are applied after
	// arcmill's own (see DefaultConnOptions), so one of them overrides
	// arcmill's. Only with URL. Defaults to none.
	Options []nats.Option
	// Prefix is the first subject token: an event of type t goes to
	// <Prefix>.<t>. It must be valid subject tokens. Defaults to
	// DefaultPrefix.
	Prefix string
	// PartitionIngress, when set, partitions the events by key (see
	// PartitionMapping): an event goes to
	// <PartitionIngress>.<KeyToken(PartitionKey(msg))>.<type>, and the
	// server's subject mapping places it on <Prefix>.<partition>.<key
	// token>.<type>. It must be subject tokens outside <Prefix>.>, and the
	// mapping must be in every server's configuration: without it the
	// publish finds no stream and fails. Dead letters are not partitioned.
	// Defaults to "": events go to <Prefix>.<type>, unpartitioned.
	PartitionIngress string
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
	if err := validateConn("PublisherConfig", c.Conn, c.URL, c.Options); err != nil {
		return err
	}
	switch {
	case !validTokens(c.Prefix):
		return fmt.Errorf("%w: PublisherConfig.Prefix %q is not a sequence of subject tokens", ErrInvalidConfig, c.Prefix)
	case c.PartitionIngress != "" && !validTokens(c.PartitionIngress):
		return fmt.Errorf("%w: PublisherConfig.PartitionIngress %q is not a sequence of subject tokens",
			ErrInvalidConfig, c.PartitionIngress)
	case c.PartitionIngress != "" && underPrefix(c.PartitionIngress, c.Prefix):
		// The events' stream would store them there, unpartitioned.
		return fmt.Errorf("%w: PublisherConfig.PartitionIngress %q lies under Prefix %s.>; give it a prefix of its own",
			ErrInvalidConfig, c.PartitionIngress, c.Prefix)
	}
	return nil
}

// underPrefix reports whether subject lies under prefix.> (or is prefix).
func underPrefix(subject, prefix string) bool {
	return subject == prefix || strings.HasPrefix(subject, prefix+".")
}

// SubscriberConfig configures NewSubscriber.
type SubscriberConfig struct {
	// Conn is a connection the caller opened (nats.Connect with whatever
	// options it needs), with JetStream enabled on the server; the
	// Subscriber's Close drains and closes it. Give it, or URL: not both.
	Conn *nats.Conn
	// URL is the server (or comma-separated servers) NewSubscriber
	// connects to when Conn is nil, with Options; the connection is the
	// Subscriber's, and its Close drains it. Give it, or Conn: not both.
	URL string
	// Options configure the connection NewSubscriber opens on URL, as
	// PublisherConfig.Options: credentials, TLS, reconnection. They are
	// applied after DefaultConnOptions, so one of them overrides
	// arcmill's. Only with URL. Defaults to none.
	Options []nats.Option
	// Group names the durable consumers, shared by every instance of the
	// group (Arc's consumer group, the service): one per subscribed
	// subject. Required.
	Group string
	// CloseTimeout is how long Close waits for handlers to ack or nack;
	// then their contexts are cancelled with ErrClosed and their messages
	// nacked. Defaults to DefaultCloseTimeout.
	CloseTimeout time.Duration
	// AckWaitTimeout is how long the server waits for an ack before it
	// redelivers (plus BackOff's wait, see there). While a handler works
	// on a message, the subscriber tells the server (+WPI) every half
	// AckWaitTimeout that the message, and each one waiting behind it,
	// is in progress, so the wait detects crashed processes, not slow
	// handlers. Defaults to DefaultAckWaitTimeout.
	AckWaitTimeout time.Duration
	// MaxAckPending is the consumer's MaxAckPending: how many messages the
	// group holds delivered and unacknowledged, the ones waiting in an
	// instance's buffer included. A message waits there while those before
	// it are handled, reported in progress like the one in the handler, so
	// a long wait spends none of its deliveries; but it is held by that
	// instance, not by an idle one, until Close or a crash releases it.
	// 1 delivers the subject's next message only
	// once the one before is settled, whatever happens to it (nack,
	// crash, redelivery): set it for the consumer of a partition
	// (PartitionSubject), to keep the order of each key. Defaults to
	// DefaultMaxAckPending.
	MaxAckPending int
	// MaxDeliver is how many times JetStream delivers a message at most
	// (the consumer's MaxDeliver). When it gives up, the server sends its
	// max-deliveries advisory and the subscriber writes a dead letter to
	// DeadLetterSubject. NoMaxDeliver for no limit. Defaults to
	// DefaultMaxDeliver.
	MaxDeliver int
	// BackOff holds the waits before redelivery n+1 (the last repeats):
	// a nack is a NakWithDelay of BackOff[n-1], never an immediate
	// redelivery, and the consumer's JetStream BackOff is AckWaitTimeout +
	// BackOff[i], so an unacknowledged delivery (a crashed process) waits
	// as long past its ack deadline. Each wait must be positive, and
	// MaxDeliver larger than len(BackOff). Defaults to DefaultBackOff().
	BackOff []time.Duration
	// DeadLetterSubject receives a middleware.DeadLetteredEvent for each
	// message JetStream gave up on. It must be a subject without wildcards
	// in a stream of its own, outside the events' <prefix>.>. Defaults to
	// DefaultDeadLetterPrefix + "." + Group.
	DeadLetterSubject string
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
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if c.BackOff == nil {
		c.BackOff = DefaultBackOff()
	}
	if c.DeadLetterSubject == "" {
		c.DeadLetterSubject = DefaultDeadLetterPrefix + "." + c.Group
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
	if err := validateConn("SubscriberConfig", c.Conn, c.URL, c.Options); err != nil {
		return err
	}
	switch {
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
	case c.MaxDeliver < 0 && c.MaxDeliver != NoMaxDeliver:
		return fmt.Errorf("%w: SubscriberConfig.MaxDeliver must be positive, 0 (default) or NoMaxDeliver, got %d",
			ErrInvalidConfig, c.MaxDeliver)
	case c.MaxAckPending < 0:
		return fmt.Errorf("%w: SubscriberConfig.MaxAckPending must not be negative, got %d", ErrInvalidConfig, c.MaxAckPending)
	case len(c.BackOff) == 0:
		return fmt.Errorf("%w: SubscriberConfig.BackOff must hold at least one wait", ErrInvalidConfig)
	case c.MaxDeliver != NoMaxDeliver && c.MaxDeliver <= len(c.BackOff):
		return fmt.Errorf("%w: SubscriberConfig.MaxDeliver (%d) must be larger than len(BackOff) (%d), as JetStream requires",
			ErrInvalidConfig, c.MaxDeliver, len(c.BackOff))
	case !validTokens(c.DeadLetterSubject):
		return fmt.Errorf("%w: SubscriberConfig.DeadLetterSubject %q is not a subject without wildcards",
			ErrInvalidConfig, c.DeadLetterSubject)
	}
	for i, d := range c.BackOff {
		if d <= 0 {
			return fmt.Errorf("%w: SubscriberConfig.BackOff[%d] must be positive, got %v", ErrInvalidConfig, i, d)
		}
	}
	return nil
}

// nakDelay is the wait before the redelivery that follows delivery n.
func (c *SubscriberConfig) nakDelay(n uint64) time.Duration {
	i := int(min(n, uint64(len(c.BackOff)))) - 1
	return c.BackOff[max(i, 0)]
}
