package wildcard

import (
	"context"
	"hash/fnv"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
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

// Subscribe reads the user's subscriber in lanes, one per worker: a message
// goes to the lane of its key's hash, and a lane hands out its next message
// only once the previous one is acked or nacked. Messages with one key are
// therefore handled in order, and never more than Workers at once, even
// from a subscriber that delivers ahead of acknowledgements (Watermill's
// router would otherwise run each in its own goroutine). After a nack the
// lane moves on; a subscriber that redelivers later breaks the key's order.
func (s *source) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	s.subDone = ctx.Done()
	s.mu.Unlock()
	in, err := s.key.sub.Subscribe(ctx, topic)
	if err != nil {
		if !s.startedLate {
			return nil, err // Run reports it
		}
		s.startErr = err
		s.logger.Error("Pattern subscription failed", err, watermill.LogFields{"topic": topic})
		closed := make(chan *message.Message)
		close(closed) // the Watermill handler ends at once; Handle reports the error
		return closed, nil
	}
	p := struct {
		workers int
		key     func(*message.Message) string
	}{s.workers, s.keyFunc}
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

// Close closes the user's subscriber (Watermill subscribers' Close is
// idempotent; the router calls it once per handler).
func (s *source) Close() error { return s.key.sub.Close() }
