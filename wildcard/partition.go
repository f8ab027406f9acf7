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

// KeyOrderedSubscriber is a message.Subscriber that keeps the order of
// DefaultPartitionKey itself: it delivers a message only once every
// earlier message of the same key has been acked (a nacked one is
// delivered again first), and bounds how many it has in flight. The router
// reads such a subscriber directly, with no lanes and no hand-off between
// goroutines, when Config.PartitionKey is the default; the subscriber's
// bound then stands in for Workers. arcmill's Redis Streams Subscriber is
// one.
type KeyOrderedSubscriber interface {
	message.Subscriber
	// OrdersByPartitionKey reports whether the subscriber orders every
	// subscription by DefaultPartitionKey as described.
	OrdersByPartitionKey() bool
}

// ordersByKey reports whether the source can read its subscriber directly.
func (s *source) ordersByKey() bool {
	ko, ok := s.key.sub.(KeyOrderedSubscriber)
	return ok && s.r.defaultKey && ko.OrdersByPartitionKey()
}

// Subscribe reads the user's subscriber in lanes, one per worker: a message
// goes to the lane of its key's hash, and a lane hands out its next message
// only once the previous one is acked or nacked. Messages with one key are
// therefore handled in order, and never more than Workers at once, even
// from a subscriber that delivers ahead of acknowledgements (Watermill's
// router would otherwise run each in its own goroutine). After a nack the
// lane moves on; a subscriber that redelivers later breaks the key's order.
// A KeyOrderedSubscriber is read directly: it already does all this.
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
	if s.ordersByKey() {
		return in, nil
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
