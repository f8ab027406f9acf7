// Package redispubsub carries Arc events over Redis Pub/Sub as Arc's
// RedisEventTransport does: PUBLISH arc-events:<type> <event JSON>, and
// subscriptions by channel (SUBSCRIBE) or by glob pattern (PSUBSCRIBE, for
// topics holding '*', '?' or '['), byte for byte with Arc services.
//
// Redis Pub/Sub is at most once: a message published while nobody is
// subscribed, or while a subscriber is disconnected, is gone, and nothing
// is stored. Publish returns how many subscribers received a message
// (PublishCount) so a caller can notice zero. Use Redis Streams or the
// outbox when an event must not be lost.
//
// Unlike Arc's transport, a subscription delivers one message at a time
// (back-pressure, not unbounded concurrency: Arc's weakness 16), really
// unsubscribes when its context ends or the subscriber closes (weakness 17),
// and hands a message it cannot read on, flagged with
// arc.MetadataMalformed, instead of dropping it silently (weakness 15).
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

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/ctxsleep"
)

// ArcPrefix is Arc's channel prefix: events go to arc-events:<type>.
const ArcPrefix = "arc-events"

// ErrClosed is returned after Close.
var ErrClosed = errors.New("redispubsub: closed")

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
type ArcCodec struct{}

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
	ev, err := arc.FromMessage(msg)
	if err != nil {
		return nil, err
	}
	return arc.Marshal(ev)
}

// Decode reads Arc JSON.
func (ArcCodec) Decode(body []byte) (*message.Message, error) { return arc.UnmarshalMessage(body) }

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

// Config configures a PubSub.
type Config struct {
	// Client runs PUBLISH and opens subscription connections. Required.
	Client redis.UniversalClient
	// Codec defaults to ArcCodec.
	Codec Codec
	// CloseClient closes Client on Close.
	CloseClient bool
	// Logger defaults to no logging.
	Logger watermill.LoggerAdapter
}

// PubSub is a message.Publisher and message.Subscriber on Redis Pub/Sub.
type PubSub struct {
	cfg     Config
	closed  atomic.Bool
	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// New returns a PubSub.
func New(cfg Config) (*PubSub, error) {
	if cfg.Client == nil {
		return nil, errors.New("redispubsub: Config.Client is required")
	}
	if cfg.Codec == nil {
		cfg.Codec = ArcCodec{}
	}
	if cfg.Logger == nil {
		cfg.Logger = watermill.NopLogger{}
	}
	return &PubSub{cfg: cfg, closing: make(chan struct{})}, nil
}

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

// IsPattern reports whether a topic subscribes by glob (PSUBSCRIBE), as
// Arc decides: it holds '*', '?' or '['.
func IsPattern(topic string) bool { return strings.ContainsAny(topic, "*?[") }

// Subscribe subscribes to topic, a channel or a glob pattern (with Arc's
// codec, e.g. "arc-events:order.*"). It returns once Redis has confirmed
// the subscription, so nothing published after it returns is missed.
func (p *PubSub) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	var ps *redis.PubSub
	if IsPattern(topic) {
		ps = p.cfg.Client.PSubscribe(ctx, topic)
	} else {
		ps = p.cfg.Client.Subscribe(ctx, topic)
	}
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		_ = ps.Close()
		return nil, fmt.Errorf("redispubsub: subscribing to %q: %w", topic, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan *message.Message)
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		select {
		case <-p.closing:
		case <-ctx.Done():
		}
		cancel()
		_ = ps.Close() // UNSUBSCRIBE / PUNSUBSCRIBE, and the connection back
	}()
	go func() {
		defer p.wg.Done()
		defer close(out)
		p.receive(ctx, ps, topic, out)
	}()
	return out, nil
}

func (p *PubSub) receive(ctx context.Context, ps *redis.PubSub, topic string, out chan<- *message.Message) {
	for {
		rm, err := ps.ReceiveMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.cfg.Logger.Error("Pub/Sub receive failed", err, watermill.LogFields{"topic": topic})
			if !ctxsleep.Sleep(ctx, 100*time.Millisecond) {
				return
			}
			continue
		}
		msg, err := p.cfg.Codec.Decode([]byte(rm.Payload))
		if err != nil || msg == nil {
			why := "undecodable message"
			if err != nil {
				why = err.Error()
			}
			msg = message.NewMessage(watermill.NewUUID(), []byte(rm.Payload))
			msg.Metadata.Set(arc.MetadataMalformed, "Pub/Sub message on "+rm.Channel+": "+why)
			p.cfg.Logger.Info("Malformed Pub/Sub message", watermill.LogFields{"channel": rm.Channel, "reason": why})
		}
		msg.Metadata.Set(MetadataChannel, rm.Channel)
		if !p.deliver(ctx, msg, out) {
			return
		}
	}
}

// MetadataChannel holds the channel a message arrived on.
const MetadataChannel = "redis_channel"

// deliver hands msg on and waits for it; a nack sends it again.
func (p *PubSub) deliver(ctx context.Context, msg *message.Message, out chan<- *message.Message) bool {
	for {
		m := msg.Copy()
		mctx, cancel := context.WithCancel(ctx)
		m.SetContext(mctx)
		select {
		case out <- m:
		case <-ctx.Done():
			cancel()
			return false
		}
		select {
		case <-m.Acked():
			cancel()
			return true
		case <-m.Nacked():
			cancel()
		case <-ctx.Done():
			cancel()
			return false
		}
	}
}

// Close ends every subscription (unsubscribing) and later publishes;
// idempotent.
func (p *PubSub) Close() error {
	p.once.Do(func() {
		p.closed.Store(true)
		close(p.closing)
		p.wg.Wait()
		if p.cfg.CloseClient {
			_ = p.cfg.Client.Close()
		}
	})
	return nil
}
