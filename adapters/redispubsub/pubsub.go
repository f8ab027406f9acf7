// Package redispubsub carries Arc events over Redis Pub/Sub as Arc's
// RedisEventTransport does: PUBLISH arc-events:<type> <event JSON>, and
// subscriptions by channel (SUBSCRIBE) or by prefix (PSUBSCRIBE), on the
// channels Arc services use. The body is the event as arc.Marshal writes
// it; package arc says how that follows Arc's JSON.stringify.
//
// # Topics: exact or prefix
//
// A topic that is "*" or ends in ".*" or ":*" ("arc-events:order.*") is a
// prefix subscription, as Arc's patterns are everywhere but on Pub/Sub: it
// matches every channel that starts with the topic minus its '*', and the
// glob characters before that ('*', '?', '[', ']', '\') are escaped with a
// backslash. Every other topic is an exact channel, subscribed with
// SUBSCRIBE whatever characters it holds: a type such as "order[1]" or
// "what?" gets its own events and no others. Arc's Pub/Sub transport
// instead hands any topic holding '*', '?' or '[' to PSUBSCRIBE as a Redis
// glob, so that such a type gets other types and misses its own; set
// Config.RedisGlob for that behaviour (globs such as "*.created").
// Subscription says what a topic becomes.
//
// # Size limit
//
// A message longer than Config.MaxMessageBytes (default Arc's 1,000,000)
// is not decoded: it is handed on flagged with arc.MetadataMalformed,
// carrying only its first ExcerptBytes bytes, so a dead-letter middleware
// stores it once with a bounded excerpt, and no handler or dead letter
// holds the whole of it. Redis itself delivers each message whole, so one
// message's size is still read into memory once; Redis's
// client-output-buffer-limit for pubsub bounds that.
//
// Redis Pub/Sub is at most once: a message published while nobody is
// subscribed, or while a subscriber is disconnected, is gone, and nothing
// is stored. Publish returns how many subscribers received a message
// (PublishCount) so a caller can notice zero. Use Redis Streams or the
// outbox when an event must not be lost.
//
// Unlike Arc's transport, a subscription delivers one message at a time
// (back-pressure, where Arc does not await its handlers), really
// unsubscribes when its context ends or the subscriber closes (Arc's
// subscriptions stay on Redis until close), and hands a message it cannot
// read on, flagged with arc.MetadataMalformed, instead of dropping it
// silently as Arc does.
//
// # Lifecycle and shutdown
//
// A PubSub works once New returns (Running is closed then). Close, and the
// end of a subscription's context, stop reading at once, but a message
// already handed to a handler keeps its context for Config.CloseTimeout, so
// the handler can finish. Past that its context is cancelled with ErrClosed
// as the cause, and ErrClosed matches middleware.ErrShutdown under
// errors.Is: arcmill's Retry and DeadLetter then nack the message instead of
// counting a failure (middleware.IsShutdown). Close reports messages whose
// handlers did not finish in time with an error wrapping ErrCloseTimeout.
//
// On a Redis Cluster, PUBLISH and SUBSCRIBE work through a Cluster client
// as on one server (Redis broadcasts classic Pub/Sub to every node), and a
// failover (Sentinel) client and TLS options work as they are. Pub/Sub
// keeps nothing: a message published while a subscriber is disconnected,
// by a failover or otherwise, is gone, as in Arc.
package redispubsub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/ctxsleep"
	"github.com/arcmill/arcmill/middleware"
)

// ArcPrefix is Arc's channel prefix: events go to arc-events:<type>.
const ArcPrefix = "arc-events"

// ErrClosed is returned by Publish and Subscribe after Close, and is the
// cause (context.Cause) of a handler's message context cancelled by a
// shutdown. It matches middleware.ErrShutdown under errors.Is.
var ErrClosed error = closedError{}

type closedError struct{}

func (closedError) Error() string { return "redispubsub: closed" }

// Is makes ErrClosed a middleware.ErrShutdown, so that arcmill's middleware
// tells a shutdown from a handler's failure.
func (closedError) Is(target error) bool { return target == middleware.ErrShutdown }

// ErrCloseTimeout is wrapped by Close's error when handlers still held
// messages after CloseTimeout; their contexts were cancelled.
var ErrCloseTimeout = errors.New("redispubsub: close timeout")

// ErrInvalidConfig is wrapped by every error that refuses a Config.
var ErrInvalidConfig = errors.New("redispubsub: invalid config")

// DefaultCloseTimeout is Config.CloseTimeout's default, Watermill's router
// default.
const DefaultCloseTimeout = 30 * time.Second

// NoCloseTimeout, as Config.CloseTimeout, cancels handlers' contexts as
// soon as their subscription stops.
const NoCloseTimeout time.Duration = -1

// DefaultMaxMessageBytes is Config.MaxMessageBytes' default: Arc's
// maxPayloadBytes.
const DefaultMaxMessageBytes = 1_000_000

// NoMaxMessageBytes, as Config.MaxMessageBytes, takes messages of any size.
const NoMaxMessageBytes = -1

// ExcerptBytes is how many bytes of a message over MaxMessageBytes are
// handed on (cut back to a UTF-8 character boundary).
const ExcerptBytes = 64 << 10

// receiveRetryDelay is the pause after a failed receive before the next.
const receiveRetryDelay = 100 * time.Millisecond

// Codec turns messages into Pub/Sub bodies and back.
type Codec interface {
	// Channel returns the channel a message published to topic goes to.
	Channel(topic string, msg *message.Message) (string, error)
	Encode(msg *message.Message) ([]byte, error)
	// Decode must not fail on foreign bytes in a way that loses them: an
	// error here becomes a message flagged with arc.MetadataMalformed.
	Decode(body []byte) (*message.Message, error)
}

// ArcCodec is Arc's format: the body is the event's Arc JSON, and a message
// published to topic (a prefix, ArcPrefix for Arc) goes to the channel
// <topic>:<event type>.
type ArcCodec struct {
	// Limits bound what Decode accepts (nesting, type length); a body over
	// them is malformed. Defaults to arc's defaults (arc.DefaultMaxDepth,
	// arc.DefaultMaxTypeBytes).
	Limits arc.Limits
}

// Channel is topic:type.
func (ArcCodec) Channel(topic string, msg *message.Message) (string, error) {
	typ := msg.Metadata.Get(arc.MetadataType)
	if typ == "" {
		return "", fmt.Errorf("redispubsub: message %q is not an Arc event (no %s)", msg.UUID, arc.MetadataType)
	}
	return topic + ":" + typ, nil
}

// Encode writes the event's Arc JSON.
func (ArcCodec) Encode(msg *message.Message) ([]byte, error) {
	// arc.Marshal(arc.FromMessage(msg)), from the metadata straight.
	return arc.AppendMessageJSON(make([]byte, 0, len(msg.Payload)+64+48*len(msg.Metadata)), msg)
}

// Decode reads Arc JSON under the codec's Limits.
func (c ArcCodec) Decode(body []byte) (*message.Message, error) {
	return c.Limits.UnmarshalMessage(body)
}

// WatermillCodec carries any Watermill message (uuid, metadata, payload)
// as JSON, on the topic's own channel: for Go services among themselves.
type WatermillCodec struct{}

type envelope struct {
	UUID     string            `json:"uuid"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Payload  []byte            `json:"payload"`
}

// Channel is the topic.
func (WatermillCodec) Channel(topic string, _ *message.Message) (string, error) { return topic, nil }

// Encode writes the envelope.
func (WatermillCodec) Encode(msg *message.Message) ([]byte, error) {
	return json.Marshal(envelope{UUID: msg.UUID, Metadata: msg.Metadata, Payload: msg.Payload})
}

// Decode reads the envelope.
func (WatermillCodec) Decode(body []byte) (*message.Message, error) {
	var e envelope
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, err
	}
	msg := message.NewMessage(e.UUID, e.Payload)
	if e.Metadata != nil {
		msg.Metadata = e.Metadata
	}
	return msg, nil
}

// Config configures a PubSub. Zero means the default.
type Config struct {
	// Client runs PUBLISH and opens subscription connections. Required.
	Client redis.UniversalClient
	// Codec turns messages into bodies and back. Defaults to ArcCodec.
	Codec Codec
	// CloseClient closes Client on Close. Defaults to false.
	CloseClient bool
	// CloseTimeout is how long a handler keeps its message's context after
	// its subscription stops (Close, or the subscription's context ending);
	// NoCloseTimeout cancels it at once. Defaults to DefaultCloseTimeout.
	CloseTimeout time.Duration
	// MaxMessageBytes bounds a received message's length, counted as Arc
	// counts maxPayloadBytes: in UTF-16 code units of the body (never more
	// than its bytes), so nothing Arc publishes is refused. A longer one is
	// handed on malformed with a bounded excerpt (see the package doc).
	// NoMaxMessageBytes takes any size. Defaults to DefaultMaxMessageBytes.
	MaxMessageBytes int
	// RedisGlob reads topics as Arc's Pub/Sub transport does: any topic
	// holding '*', '?' or '[' is a Redis glob (PSUBSCRIBE, unescaped).
	// Defaults to false: only "*", ".*" and ":*" topics are prefixes, and
	// every other topic is exact (see Subscription).
	RedisGlob bool
	// Logger receives errors and Debug lines about single messages.
	// Defaults to watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

func (c *Config) setDefaults() {
	if c.Codec == nil {
		c.Codec = ArcCodec{}
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate applies the defaults to a copy of c and reports, field by field,
// a value that cannot work. Every error wraps ErrInvalidConfig.
func (c Config) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *Config) validate() error {
	switch {
	case c.Client == nil:
		return fmt.Errorf("%w: Config.Client is required", ErrInvalidConfig)
	case c.CloseTimeout < 0 && c.CloseTimeout != NoCloseTimeout:
		return fmt.Errorf("%w: Config.CloseTimeout must be positive, 0 (default) or NoCloseTimeout, got %v",
			ErrInvalidConfig, c.CloseTimeout)
	case c.MaxMessageBytes < 0 && c.MaxMessageBytes != NoMaxMessageBytes:
		return fmt.Errorf("%w: Config.MaxMessageBytes must be positive, 0 (default) or NoMaxMessageBytes, got %d",
			ErrInvalidConfig, c.MaxMessageBytes)
	}
	if ac, ok := c.Codec.(ArcCodec); ok {
		if err := ac.Limits.Validate(); err != nil {
			return fmt.Errorf("%w: Config.Codec: %w", ErrInvalidConfig, err)
		}
	}
	return nil
}

// PubSub is a message.Publisher and message.Subscriber on Redis Pub/Sub.
type PubSub struct {
	cfg     Config
	running chan struct{} // closed by New
	mu      sync.Mutex    // orders Subscribe's wg.Add before Close's wg.Wait; held for no I/O
	closed  atomic.Bool
	closing chan struct{}
	done    chan struct{} // closed when Close has finished
	once    sync.Once
	wg      sync.WaitGroup
	// unfinished counts messages whose handlers outlived CloseTimeout.
	unfinished atomic.Int64
}

// New returns a PubSub, ready at once.
func New(cfg Config) (*PubSub, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &PubSub{cfg: cfg, running: make(chan struct{}), closing: make(chan struct{}), done: make(chan struct{})}
	close(p.running) // nothing to start: subscriptions start in Subscribe
	return p, nil
}

// Running returns a channel that is closed while the PubSub can publish
// and subscribe: from New on. It is there so that code waiting on
// components treats a PubSub like the wildcard Router and Watermill's
// Router; Subscribe itself returns only once Redis confirmed the
// subscription.
func (p *PubSub) Running() <-chan struct{} { return p.running }

// Closed returns a channel closed once Close has returned: every
// subscription has ended and every goroutine of the PubSub is gone.
func (p *PubSub) Closed() <-chan struct{} { return p.done }

// Publish sends each message to its channel (see Codec.Channel).
func (p *PubSub) Publish(topic string, msgs ...*message.Message) error {
	_, err := p.PublishCount(topic, msgs...)
	return err
}

// PublishCount is Publish that also returns, per message, how many
// subscribers received it (Redis's PUBLISH reply; Arc ignores it).
func (p *PubSub) PublishCount(topic string, msgs ...*message.Message) ([]int64, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	counts := make([]int64, len(msgs))
	for i, msg := range msgs {
		channel, err := p.cfg.Codec.Channel(topic, msg)
		if err != nil {
			return counts, err
		}
		body, err := p.cfg.Codec.Encode(msg)
		if err != nil {
			return counts, err
		}
		n, err := p.cfg.Client.Publish(msg.Context(), channel, body).Result()
		if err != nil {
			return counts, fmt.Errorf("redispubsub: PUBLISH %s: %w", channel, err)
		}
		counts[i] = n
	}
	return counts, nil
}

// IsPattern reports whether Arc's Pub/Sub transport subscribes to topic by
// glob (PSUBSCRIBE): it holds '*', '?' or '['. That is Config.RedisGlob's
// rule; by default Subscription decides.
func IsPattern(topic string) bool { return strings.ContainsAny(topic, "*?[") }

// Subscription returns what Subscribe sends for topic: whether it is a
// pattern (PSUBSCRIBE) and the channel or glob. With redisGlob false (the
// default) a topic that is "*" or ends in ".*" or ":*" is a prefix: the
// glob is the rest with '*', '?', '[', ']' and '\' escaped, then '*'. Any
// other topic is an exact channel (SUBSCRIBE), as it is. With redisGlob
// true it is Arc's rule: IsPattern, the topic as it is.
func Subscription(topic string, redisGlob bool) (pattern bool, channel string) {
	if redisGlob {
		return IsPattern(topic), topic
	}
	if topic == "*" || strings.HasSuffix(topic, ".*") || strings.HasSuffix(topic, ":*") {
		return true, escapeGlob(topic[:len(topic)-1]) + "*"
	}
	return false, topic
}

// escapeGlob escapes Redis glob's special characters.
func escapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Subscribe subscribes to topic, an exact channel or a prefix (with Arc's
// codec, e.g. "arc-events:order.*"; see Subscription). It returns once
// Redis has confirmed the subscription, so nothing published after it
// returns is missed.
func (p *PubSub) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	// The goroutines are counted before any I/O, under the lock Close takes
	// to mark the PubSub closed, so Close's Wait never misses them.
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	p.wg.Add(2)
	p.mu.Unlock()
	var ps *redis.PubSub
	if pattern, channel := Subscription(topic, p.cfg.RedisGlob); pattern {
		ps = p.cfg.Client.PSubscribe(ctx, channel)
	} else {
		ps = p.cfg.Client.Subscribe(ctx, channel)
	}
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		_ = ps.Close()
		p.wg.Add(-2)
		return nil, fmt.Errorf("redispubsub: subscribing to %q: %w", topic, err)
	}
	// Reading stops with ctx or Close; the work a handler does on a message
	// keeps ctx's values but not its cancellation (see deliver).
	readCtx, stopReading := context.WithCancel(ctx)
	work := context.WithoutCancel(ctx)
	out := make(chan *message.Message)
	go func() {
		defer p.wg.Done()
		select {
		case <-p.closing:
		case <-readCtx.Done():
		}
		stopReading()
		_ = ps.Close() // UNSUBSCRIBE / PUNSUBSCRIBE, and the connection back
	}()
	go func() {
		defer p.wg.Done()
		defer close(out)
		p.receive(readCtx, work, ps, topic, out)
	}()
	return out, nil
}

func (p *PubSub) receive(ctx, work context.Context, ps *redis.PubSub, topic string, out chan<- *message.Message) {
	for {
		rm, err := ps.ReceiveMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.cfg.Logger.Error("Pub/Sub receive failed", err, watermill.LogFields{"topic": topic})
			if !ctxsleep.Sleep(ctx, receiveRetryDelay) {
				return
			}
			continue
		}
		msg := p.decode(rm, topic)
		if !p.deliver(ctx, work, msg, out) {
			return
		}
	}
}

// decode turns a received message into a Watermill message; one that is
// too long or that the codec cannot read is flagged malformed, never
// dropped, with at most ExcerptBytes of a too long body.
func (p *PubSub) decode(rm *redis.Message, topic string) *message.Message {
	var (
		msg *message.Message
		why string
	)
	body := rm.Payload
	if n := p.cfg.MaxMessageBytes; n >= 0 && overLimit(body, n) {
		why = fmt.Sprintf("%d bytes, over MaxMessageBytes (%d); the first %d bytes kept", len(body), n, ExcerptBytes)
		body = excerpt(body, ExcerptBytes)
	} else {
		var err error
		msg, err = p.cfg.Codec.Decode([]byte(body))
		switch {
		case err != nil:
			why = err.Error()
		case msg == nil:
			why = "undecodable message"
		}
	}
	if why != "" {
		msg = message.NewMessage(watermill.NewUUID(), []byte(body))
		msg.Metadata.Set(arc.MetadataMalformed, "Pub/Sub message on "+rm.Channel+": "+why)
		p.cfg.Logger.Debug("Malformed Pub/Sub message", watermill.LogFields{
			"message_uuid": msg.UUID, "topic": topic, "channel": rm.Channel, "reason": why})
	}
	msg.Metadata.Set(MetadataChannel, rm.Channel)
	return msg
}

// overLimit reports whether s is longer than n UTF-16 code units, as
// JavaScript's String length counts: bytes bound the count from above and
// a third of them from below, so most bodies need no counting.
func overLimit(s string, n int) bool {
	switch {
	case len(s) <= n:
		return false
	case len(s) > 3*n:
		return true
	}
	units := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x80 || c >= 0xc0 && c < 0xf0:
			units++ // ASCII, or the lead byte of a 2- or 3-byte character
		case c >= 0xf0:
			units += 2 // a 4-byte character is a surrogate pair
		}
	}
	return units > n
}

// excerpt returns s's first n bytes, cut back to a character boundary so
// that valid UTF-8 stays valid.
func excerpt(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for i := n; i > n-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return strings.Clone(s[:i])
		}
	}
	return strings.Clone(s[:n])
}

// MetadataChannel holds the channel a message arrived on.
const MetadataChannel = "redis_channel"

// deliver hands msg on and waits for it; a nack sends it again. The
// message's context derives from work, not from ctx: when ctx ends the
// handler keeps it for CloseTimeout, and then it is cancelled with
// ErrClosed as the cause. deliver reports whether to read on.
func (p *PubSub) deliver(ctx, work context.Context, msg *message.Message, out chan<- *message.Message) bool {
	for {
		m := msg.Copy()
		mctx, cancel := context.WithCancelCause(work)
		m.SetContext(mctx)
		select {
		case out <- m:
		case <-ctx.Done():
			cancel(ErrClosed)
			return false
		}
		select {
		case <-m.Acked():
			cancel(nil)
			return true
		case <-m.Nacked():
			cancel(nil)
			p.cfg.Logger.Debug("Message nacked; delivering it again", watermill.LogFields{"message_uuid": m.UUID})
		case <-ctx.Done():
			p.finish(m, cancel)
			return false
		}
	}
}

// finish gives the handler of m CloseTimeout to ack or nack once its
// subscription has stopped, then cancels its context with ErrClosed.
func (p *PubSub) finish(m *message.Message, cancel context.CancelCauseFunc) {
	defer cancel(ErrClosed)
	if p.cfg.CloseTimeout == NoCloseTimeout {
		p.countUnfinished()
		return
	}
	timer := time.NewTimer(p.cfg.CloseTimeout)
	defer timer.Stop()
	select {
	case <-m.Acked():
	case <-m.Nacked():
	case <-timer.C:
		p.countUnfinished()
		p.cfg.Logger.Debug("Handler outlived CloseTimeout; cancelling its context", watermill.LogFields{
			"message_uuid": m.UUID, "timeout": p.cfg.CloseTimeout.String()})
	}
}

// countUnfinished counts a handler cancelled because Close stopped its
// subscription; Close reports the count. One whose own subscription
// context ended is the caller's doing, not Close's.
func (p *PubSub) countUnfinished() {
	if p.closed.Load() {
		p.unfinished.Add(1)
	}
}

// Close ends every subscription (unsubscribing) and later publishes and
// subscriptions. Handlers holding a message get CloseTimeout to finish;
// an error wrapping ErrCloseTimeout gives how many did not. Idempotent and
// safe to call concurrently: every call waits for the first to finish and
// returns nil after the first.
func (p *PubSub) Close() error {
	var err error
	p.once.Do(func() {
		p.mu.Lock()
		p.closed.Store(true)
		close(p.closing)
		p.mu.Unlock()
		p.wg.Wait()
		if n := p.unfinished.Load(); n > 0 {
			err = fmt.Errorf("%w: %d message(s) still in their handlers after %v; their contexts were cancelled",
				ErrCloseTimeout, n, p.cfg.CloseTimeout)
		}
		if p.cfg.CloseClient {
			if cerr := p.cfg.Client.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		close(p.done)
	})
	<-p.done
	return err
}
