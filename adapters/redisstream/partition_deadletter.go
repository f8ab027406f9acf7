package redisstream

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/middleware"
)

// partitionCtxKey carries, in a delivered message's context, the key of
// the partition it was read from: middleware.DeadLetter publishes and
// looks up dead letters under contexts derived from the message's.
type partitionCtxKey struct{}

// withPartition returns ctx naming the partition key.
func withPartition(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, partitionCtxKey{}, key)
}

// partitionOf returns the partition key ctx names, if any: the delivery's
// (withPartition), else, for a parked event a Sequencer drains on a
// context of its own, the partition it was parked from (its
// MetadataPartitionStream, kept in the parked entry).
func partitionOf(ctx context.Context) (string, bool) {
	if key, ok := ctx.Value(partitionCtxKey{}).(string); ok && key != "" {
		return key, true
	}
	key := middleware.DrainedMetadata(ctx).Get(MetadataPartitionStream)
	return key, key != ""
}

// PartitionDeadLetterPublisher writes middleware.DeadLetter's dead letters
// of the events a PartitionSubscriber delivered into the dead-letter
// stream of the partition each was read from (Partitions.DeadLetterKey:
// arc:events:{3}:dlq), naming that partition as originalStream, in Arc's
// dead-letter layout as DeadLetterPublisher writes it. The dead letter thus
// shares its partition's slot, and `arcmill dlq redrive` or RedriveEntry
// puts it back where it was read, atomically, on a Cluster too. A dead
// letter of a message read elsewhere goes to the topic DeadLetter names.
// It finds its dead letters (middleware.DeadLetterFinder) in the same
// place.
type PartitionDeadLetterPublisher struct {
	DeadLetterPublisher
}

var (
	_ message.Publisher           = (*PartitionDeadLetterPublisher)(nil)
	_ middleware.DeadLetterFinder = (*PartitionDeadLetterPublisher)(nil)
	_ middleware.RedisClienter    = (*PartitionDeadLetterPublisher)(nil)
)

// Publish writes each dead letter to its partition's dead-letter stream,
// or to topic for a message not read from a partition.
func (p *PartitionDeadLetterPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, msg := range msgs {
		key, ok := partitionOf(msg.Context())
		if !ok {
			if err := p.DeadLetterPublisher.Publish(topic, msg); err != nil {
				return err
			}
			continue
		}
		// The entry was read from the partition, not from the topic the
		// handler subscribed to: the dead letter names the partition, and
		// its raw fields (for an entry that was not an event) are read there.
		out := message.NewMessage(msg.UUID, msg.Payload)
		for k, v := range msg.Metadata {
			out.Metadata.Set(k, v)
		}
		out.Metadata.Set(middleware.MetadataDLQSourceTopic, key)
		out.SetContext(msg.Context())
		if err := p.DeadLetterPublisher.Publish(key+":dlq", out); err != nil {
			return err
		}
	}
	return nil
}

// FindDeadLetter looks for q's dead letter where Publish writes it: in the
// dead-letter stream of the partition ctx names (middleware.DeadLetter
// asks under a context derived from the message's), else in q.Topic.
func (p *PartitionDeadLetterPublisher) FindDeadLetter(ctx context.Context, q middleware.DeadLetterQuery) (bool, error) {
	if key, ok := partitionOf(ctx); ok {
		q.Topic, q.SourceTopic = key+":dlq", key
	}
	return p.DeadLetterPublisher.FindDeadLetter(ctx, q)
}
