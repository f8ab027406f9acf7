package wildcard

import (
	"context"
	"hash/fnv"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
)

// DefaultPartitionKey is the event's meta.partitionKey, else its aggregate
// id, else the message UUID (so unrelated events spread over the workers).
func DefaultPartitionKey(msg *message.Message) string {
	if k := msg.Metadata.Get(arc.MetadataPartitionKey); k != "" {
		return k
	}
	if k := msg.Metadata.Get(arc.MetadataAggregateID); k != "" {
		return k
	}
	return msg.UUID
}

// partitioned delivers up to workers messages at once from a subscriber,
// one lane per worker: a message goes to the lane of its key's hash, and a
// lane hands out its next message only once the previous one is acked or
// nacked. Messages with one key are therefore handled in order.
type partitioned struct {
	message.Subscriber
	workers int
	key     func(*message.Message) string
}

func (p *partitioned) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	in, err := p.Subscriber.Subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	lanes := make([]chan *message.Message, p.workers)
	var wg sync.WaitGroup
	for i := range lanes {
		lanes[i] = make(chan *message.Message, 1)
		wg.Add(1)
		go func(lane <-chan *message.Message) {
			defer wg.Done()
			for msg := range lane {
				select {
				case out <- msg:
				case <-ctx.Done():
					return // unacked: the broker redelivers it
				}
				select {
				case <-msg.Acked():
				case <-msg.Nacked():
				case <-ctx.Done():
					return
				}
			}
		}(lanes[i])
	}
	go func() {
		defer func() {
			for _, l := range lanes {
				close(l)
			}
			wg.Wait()
			close(out)
		}()
		for {
			select {
			case msg, ok := <-in:
				if !ok {
					return
				}
				h := fnv.New32a()
				h.Write([]byte(p.key(msg)))
				select {
				case lanes[h.Sum32()%uint32(len(lanes))] <- msg:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
