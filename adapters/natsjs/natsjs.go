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
// deliberate republish of the same event id inside the window. The same wildcard router and handlers as on Redis run on top:
// give Subject's result as the handler's Topic and the pattern as its
// pattern.
package natsjs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

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

// Publisher publishes each Arc message on <prefix>.<type>, whatever topic
// it is given; the stream holding <prefix>.> must exist (EnsureStream).
type Publisher struct {
	pub    *wnats.Publisher
	prefix string
}

// NewPublisher connects to url with JetStream.
func NewPublisher(url, prefix string, logger watermill.LoggerAdapter) (*Publisher, error) {
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	pub, err := wnats.NewPublisher(wnats.PublisherConfig{URL: url,
		JetStream: wnats.JetStreamConfig{TrackMsgId: true}}, logger)
	if err != nil {
		return nil, err
	}
	return &Publisher{pub: pub, prefix: prefix}, nil
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

// NewSubscriber returns a JetStream subscriber whose subscriptions are
// durable consumers named after group and the subject (so each wildcard
// handler's subject gets its own consumer), shared by the instances of
// group; messages are acknowledged explicitly, after the handler.
func NewSubscriber(url, group string, logger watermill.LoggerAdapter) (*wnats.Subscriber, error) {
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	durable := durableName
	return wnats.NewSubscriber(wnats.SubscriberConfig{URL: url, QueueGroupPrefix: group,
		SubjectCalculator: func(queueGroupPrefix, topic string) *wnats.SubjectDetail {
			// The queue group must be the durable's name.
			return &wnats.SubjectDetail{Primary: topic, QueueGroup: durable(queueGroupPrefix, topic)}
		},
		JetStream: wnats.JetStreamConfig{DurablePrefix: group, DurableCalculator: durable,
			SubscribeOptions: []nats.SubOpt{nats.DeliverAll(), nats.AckExplicit()}},
	}, logger)
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
