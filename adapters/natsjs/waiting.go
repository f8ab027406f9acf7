package natsjs

import (
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
)

// received is a JetStream message the subscription has received and not
// yet settled, read once on arrival.
type received struct {
	raw       *nats.Msg
	msg       *message.Message
	delivered uint64 // JetStream's delivery count of raw
}

// waiting holds, in arrival order, the messages a consumption has received
// and not yet handed to its handler: the ones the server pushed (up to
// MaxAckPending) while the handler works on an earlier one.
//
// nats.go's callback pushes; the consumption's goroutine pops, reports the
// waiting messages as in progress (snapshot) and, on stop, takes what is
// left to nack it. It is unbounded so that the callback never blocks and
// nothing is ever dropped: nats.go's own queue behind a blocked callback
// drops messages past its pending limits (a slow consumer), and a
// channel subscription drops them as soon as the channel is full. Its
// length is bounded by the server, which pushes no more than
// MaxAckPending unacknowledged messages to the group; only a redelivery of
// a message still held (its progress reports lost in a disconnection) can
// add a second copy.
type waiting struct {
	mu      sync.Mutex
	msgs    []*received
	stopped bool
	// ready holds a token while msgs may be non-empty; push leaves one.
	ready chan struct{}
}

func newWaiting() *waiting {
	return &waiting{ready: make(chan struct{}, 1)}
}

// push appends r, or reports false once the queue is stopped (the caller
// nacks r then, so that another member receives it at once).
func (w *waiting) push(r *received) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return false
	}
	w.msgs = append(w.msgs, r)
	select {
	case w.ready <- struct{}{}:
	default: // a token is there already
	}
	return true
}

// pop removes and returns the oldest message, or nil when none waits.
func (w *waiting) pop() *received {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.msgs) == 0 {
		return nil
	}
	r := w.msgs[0]
	w.msgs[0] = nil // let the settled message go
	w.msgs = w.msgs[1:]
	if len(w.msgs) == 0 {
		w.msgs = nil // drop the backing array, which only grows by append
	}
	return r
}

// snapshot returns the waiting messages, so that the caller reports them
// without holding the lock across I/O.
func (w *waiting) snapshot() []*received {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*received(nil), w.msgs...)
}

// stop refuses every later push and returns what was waiting, oldest
// first; a second stop returns nothing.
func (w *waiting) stop() []*received {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	left := w.msgs
	w.msgs = nil
	return left
}
