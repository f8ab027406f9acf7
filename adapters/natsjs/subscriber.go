package natsjs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	wnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/arcmill/arcmill/middleware"
)

// ErrClosed is returned by Subscribe after Close, and is the cause with
// which Close cancels the context of a message still in a handler when
// CloseTimeout ends. It matches middleware.ErrShutdown under errors.Is, so
// the recovery middleware nacks such a message instead of counting an
// attempt or dead-lettering it.
var ErrClosed error = closedError{}

type closedError struct{}

func (closedError) Error() string { return "natsjs: subscriber closed" }

// Is makes ErrClosed a middleware.ErrShutdown.
func (closedError) Is(target error) bool { return target == middleware.ErrShutdown }

// MetadataDelivered is the metadata key holding JetStream's delivery count
// of a message (1 on its first delivery).
const MetadataDelivered = "arcmill_nats_delivered"

// Subscriber consumes JetStream durable consumers, one per subscribed
// subject and group, that it creates itself before it subscribes (so the
// client binds to them and never deletes them: a Close, a crash or the
// stop of one instance of the group leaves them, and their acknowledged
// position, to the others and to the next start).
//
// Each message's handler must ack or nack it. A nack is redelivered after
// BackOff's wait, never at once; a message delivered MaxDeliver times is
// given up by JetStream, and the Subscriber writes it as a dead letter to
// DeadLetterSubject when the server's max-deliveries advisory arrives.
// A message carrying Watermill's delay metadata (a delayed retry) is held
// back until its time with a NakWithDelay, which counts as a delivery.
//
// Each subscription hands its handler one message at a time; the server
// pushes up to MaxAckPending, which wait in the Subscriber meanwhile.
// Every half AckWaitTimeout the Subscriber tells the server that each
// message it holds, in the handler or waiting, is in progress, so that a
// handler that waits out a downstream outage costs the messages behind it
// no delivery (and no dead letter). Close and the end of a subscription's
// context nack the waiting messages at once, for another member.
type Subscriber struct {
	cfg  SubscriberConfig
	js   nats.JetStreamContext
	host string

	mu      sync.Mutex // guards closed; Subscribe's wg.Add happens under it
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup // one per subscription, until its channel is closed
}

// NewSubscriber returns a Subscriber on cfg.Conn, or on a connection it
// opens on cfg.URL with cfg.Options.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	owned := cfg.Conn == nil
	conn, err := dial(cfg.Conn, cfg.URL, cfg.Options, cfg.Logger)
	if err != nil {
		return nil, err
	}
	cfg.Conn = conn // the one connection every method uses
	js, err := conn.JetStream()
	if err != nil {
		if owned {
			conn.Close()
		}
		return nil, fmt.Errorf("natsjs: subscriber: %w", err)
	}
	host := hostname()
	return &Subscriber{cfg: cfg, js: js, host: host, closing: make(chan struct{})}, nil
}

// Subscribe creates (or updates) the group's durable consumer on topic, a
// NATS subject that may hold wildcards (see SubjectMode), binds to it and
// returns its messages. topic is checked with ValidateSubject before
// anything reaches the server. When ctx ends or the Subscriber closes, the
// intake stops, the messages waiting are nacked, and the channel is
// closed once the message in flight is settled.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := ValidateSubject(topic, true); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()
	started := false
	defer func() {
		if !started {
			s.wg.Done()
		}
	}()

	stream, err := s.js.StreamNameBySubject(topic)
	if err != nil {
		return nil, fmt.Errorf("natsjs: no stream holds %s: %w", topic, err)
	}
	// Dead letters in the events' stream would reach its "*" consumers.
	switch dlq, err := s.js.StreamNameBySubject(s.cfg.DeadLetterSubject); {
	case err == nil && dlq == stream:
		return nil, fmt.Errorf("%w: SubscriberConfig.DeadLetterSubject %q lies in stream %s with the events of %s; give it a stream of its own",
			ErrInvalidConfig, s.cfg.DeadLetterSubject, stream, topic)
	case err != nil:
		s.cfg.Logger.Error("No stream holds the dead-letter subject: messages JetStream gives up on cannot be dead-lettered",
			err, watermill.LogFields{"dead_letter_subject": s.cfg.DeadLetterSubject, "topic": topic})
	}
	durable := durableName(s.cfg.Group, topic)
	if err := s.ensureConsumer(stream, durable, topic); err != nil {
		return nil, err
	}
	c := &consumption{s: s, ctx: ctx, stream: stream, durable: durable, topic: topic,
		out: make(chan *message.Message), queue: newWaiting(),
		logFields: watermill.LogFields{"topic": topic, "consumer_group": s.cfg.Group, "consumer": durable}}
	// Advisories first, so that none is missed once deliveries begin.
	adv, err := s.cfg.Conn.Subscribe(maxDeliveriesSubject(stream, durable), c.maxDeliveries)
	if err != nil {
		return nil, fmt.Errorf("natsjs: subscribing to the max-deliveries advisories of %s: %w", durable, err)
	}
	// A callback that only queues, not a channel subscription: nats.go
	// drops a message it cannot put in a full channel (a slow consumer).
	sub, err := s.js.QueueSubscribe(topic, durable, c.receive, nats.Bind(stream, durable), nats.ManualAck())
	if err != nil {
		_ = adv.Unsubscribe()
		return nil, fmt.Errorf("natsjs: binding to consumer %s on %s: %w", durable, stream, err)
	}
	c.sub, c.adv = sub, adv
	started = true
	s.cfg.Logger.Debug("Subscribed", c.logFields)
	go c.run() // until ctx ends or Close; then Unsubscribe, which leaves the consumer on the server
	return c.out, nil
}

// ensureConsumer creates the durable consumer, or brings an existing one
// to the configured limits.
func (s *Subscriber) ensureConsumer(stream, durable, topic string) error {
	want := nats.ConsumerConfig{Durable: durable, DeliverSubject: deliverSubject(stream, durable),
		DeliverGroup: durable, FilterSubject: topic, DeliverPolicy: nats.DeliverAllPolicy,
		AckPolicy: nats.AckExplicitPolicy, AckWait: s.cfg.AckWaitTimeout, MaxDeliver: s.cfg.MaxDeliver,
		MaxAckPending: s.cfg.MaxAckPending, ReplayPolicy: nats.ReplayInstantPolicy}
	if s.cfg.MaxDeliver != NoMaxDeliver { // JetStream wants MaxDeliver > len(BackOff)
		for _, d := range s.cfg.BackOff {
			want.BackOff = append(want.BackOff, s.cfg.AckWaitTimeout+d)
		}
		want.AckWait = want.BackOff[0] // JetStream uses BackOff[0] as the ack wait
	}
	info, err := s.js.ConsumerInfo(stream, durable)
	if errors.Is(err, nats.ErrConsumerNotFound) {
		if _, err = s.js.AddConsumer(stream, &want); err == nil {
			s.cfg.Logger.Info("Durable consumer created", watermill.LogFields{"consumer": durable, "topic": topic})
			return nil
		}
		// Another instance of the group may have created it meanwhile.
		info, err = s.js.ConsumerInfo(stream, durable)
	}
	if err != nil {
		return fmt.Errorf("natsjs: consumer %s on %s: %w", durable, stream, err)
	}
	have := info.Config
	switch {
	case have.FilterSubject != topic:
		return fmt.Errorf("natsjs: consumer %s filters %q, not %q", durable, have.FilterSubject, topic)
	case have.DeliverSubject == "" || have.DeliverGroup != durable:
		return fmt.Errorf("natsjs: consumer %s is not a push consumer with deliver group %s", durable, durable)
	case have.AckWait == want.AckWait && have.MaxDeliver == want.MaxDeliver && slices.Equal(have.BackOff, want.BackOff) &&
		have.MaxAckPending == want.MaxAckPending:
		return nil
	}
	want.DeliverSubject = have.DeliverSubject // members bound to it keep receiving
	if _, err := s.js.UpdateConsumer(stream, &want); err != nil {
		return fmt.Errorf("natsjs: updating consumer %s on %s to AckWait %v, MaxDeliver %d, BackOff %v: %w",
			durable, stream, want.AckWait, want.MaxDeliver, want.BackOff, err)
	}
	s.cfg.Logger.Info("Durable consumer updated", watermill.LogFields{"consumer": durable, "topic": topic})
	return nil
}

// Close stops every subscription (their consumers stay on the server),
// waits up to CloseTimeout for the handlers to settle the messages in
// flight, then cancels their contexts with ErrClosed and nacks them, and
// drains the connection.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()
	s.wg.Wait() // bounded: each message in flight waits CloseTimeout at most
	if s.cfg.Conn.IsClosed() {
		return nil
	}
	if err := s.cfg.Conn.Drain(); err != nil {
		return fmt.Errorf("natsjs: draining the connection: %w", err)
	}
	return nil
}

// toMessage reads a JetStream message as a Watermill message, as
// watermill-nats writes it (the UUID in a header, metadata in the others).
// A message another client wrote is read too: its UUID is its Nats-Msg-Id,
// else "<stream sequence>", and a header with several values keeps its
// first. The stream sequence is put in middleware.MetadataOriginalID, so
// dead letters name it.
func toMessage(h nats.Header, data []byte, seq uint64) *message.Message {
	msg, err := (&wnats.NATSMarshaler{}).Unmarshal(&nats.Msg{Header: h, Data: data})
	if err != nil { // several values under one header: keep the first
		md := message.Metadata{}
		for k, v := range h {
			if len(v) > 0 && k != wnats.WatermillUUIDHdr && k != nats.MsgIdHdr {
				md.Set(k, v[0])
			}
		}
		msg = message.NewMessage(h.Get(wnats.WatermillUUIDHdr), data)
		msg.Metadata = md
	}
	if msg.UUID == "" {
		msg.UUID = h.Get(nats.MsgIdHdr)
	}
	if msg.UUID == "" {
		msg.UUID = strconv.FormatUint(seq, 10)
	}
	msg.Metadata.Set(middleware.MetadataOriginalID, strconv.FormatUint(seq, 10))
	return msg
}

// deliverSubject is where the server pushes the consumer's messages: one
// name for every instance, so that they all bind to the same consumer.
func deliverSubject(stream, durable string) string {
	return "_arcmill.deliver." + stream + "." + durable
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
		case r == '*':
			b.WriteString("any")
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
