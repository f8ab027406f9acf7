package redisstream

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/middleware"
)

// Dead-letter stream entry fields, in Arc's order.
const (
	FieldOriginalStream = "originalStream"
	FieldOriginalID     = "originalId"
	FieldGroup          = "group"
)

// DefaultDeadLetterMaxLen caps a dead-letter stream (approximately). Arc's
// grows without bound (its weakness 4).
const DefaultDeadLetterMaxLen = 100000

// DeadLetterPublisher writes middleware.DeadLetter's dead letters into a
// stream in Arc's dead-letter layout: XADD <topic> * type <event type>
// originalStream <stream> originalId <entry id> group <group> data
// <DeadLetteredEvent JSON>, so Arc's tooling reads ours. Give it to
// middleware.DeadLetterConfig.Publisher with Topic "<stream>:dlq" (Arc's
// default arc:events:dlq for arc:events) and the group's name in
// ConsumerGroup.
type DeadLetterPublisher struct {
	// Client runs the XADDs. Required.
	Client redis.UniversalClient
	// MaxLen trims approximately; 0 means DefaultDeadLetterMaxLen, a
	// negative value never trims.
	MaxLen int64
}

// Publish writes each dead letter; a message that is not one is refused.
func (p *DeadLetterPublisher) Publish(topic string, msgs ...*message.Message) error {
	if p.Client == nil {
		return errors.New("redisstream: DeadLetterPublisher.Client is required")
	}
	maxLen := p.MaxLen
	if maxLen == 0 {
		maxLen = DefaultDeadLetterMaxLen
	}
	for _, msg := range msgs {
		var dl middleware.DeadLetteredEvent
		if err := json.Unmarshal(msg.Payload, &dl); err != nil {
			return fmt.Errorf("redisstream: message %q is not a dead letter: %w", msg.UUID, err)
		}
		md := msg.Metadata
		args := &redis.XAddArgs{Stream: topic, ID: "*", Values: []any{
			FieldType, dl.Event.Type,
			FieldOriginalStream, md.Get(middleware.MetadataDLQSourceTopic),
			FieldOriginalID, md.Get(middleware.MetadataDLQOriginalID),
			FieldGroup, md.Get(middleware.MetadataDLQConsumerGroup),
			FieldData, string(msg.Payload),
		}}
		if maxLen > 0 {
			args.MaxLen, args.Approx = maxLen, true
		}
		if err := p.Client.XAdd(msg.Context(), args).Err(); err != nil {
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
}

// ReadDeadLetter reads an entry of a dead-letter stream in Arc's layout.
func ReadDeadLetter(e redis.XMessage) (DeadLetterEntry, error) {
	str := func(k string) string { s, _ := e.Values[k].(string); return s }
	out := DeadLetterEntry{ID: e.ID, Type: str(FieldType), OriginalStream: str(FieldOriginalStream),
		OriginalID: str(FieldOriginalID), Group: str(FieldGroup)}
	data := str(FieldData)
	if data == "" {
		return out, fmt.Errorf("redisstream: dead-letter entry %s has no data", e.ID)
	}
	if err := json.Unmarshal([]byte(data), &out.Envelope); err != nil {
		return out, fmt.Errorf("redisstream: dead-letter entry %s: %w", e.ID, err)
	}
	return out, nil
}
