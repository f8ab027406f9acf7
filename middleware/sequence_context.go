package middleware

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
)

// drainedKey carries, in the context a Sequencer's drainer runs a parked
// event under, the metadata it was parked with.
type drainedKey struct{}

// DrainedMetadata returns the metadata of the parked event a Sequencer's
// drainer runs under ctx (or under a context derived from it, as
// DeadLetter's publish and look-up are), as the event was delivered; nil
// for a live delivery. The drainer runs the event on a context of its own,
// long after (and maybe in another process than) the delivery: what the
// transport put in the delivery's context is gone, and a transport that
// needs it (redisstream's PartitionDeadLetterPublisher: the partition read
// from) recovers it from the metadata here.
func DrainedMetadata(ctx context.Context) message.Metadata {
	md, _ := ctx.Value(drainedKey{}).(message.Metadata)
	return md
}

func withDrained(ctx context.Context, msg *message.Message) context.Context {
	md := make(message.Metadata, len(msg.Metadata))
	for k, v := range msg.Metadata {
		md[k] = v
	}
	return context.WithValue(ctx, drainedKey{}, md)
}
