package redisstream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// ErrClosed is returned by Subscribe and Publish after Close. It is also
// the cause (context.Cause) with which a handler's context is cancelled
// when CloseTimeout has run out, and it matches middleware.ErrShutdown
// (errors.Is), so arcmill's middleware counts no attempt, retries nothing
// and dead-letters nothing for a handler cut short by a shutdown.
var ErrClosed error = closedError{}

type closedError struct{}

func (closedError) Error() string { return "redisstream: closed" }

// Is makes ErrClosed a middleware.ErrShutdown.
func (closedError) Is(target error) bool { return target == middleware.ErrShutdown }

// ErrCloseTimeout is returned by Close when handlers had not settled their
// messages within CloseTimeout. Their entries stay pending for the group,
// and are delivered again: nothing is lost, but the work may run twice.
var ErrCloseTimeout = errors.New("redisstream: close timed out with messages unsettled")

// MetadataEntryID holds the stream entry id of a received message; dead
// letters name it (it is middleware.MetadataOriginalID).
const MetadataEntryID = "arcmill_original_id"

// Subscriber reads Redis Streams through a consumer group, built for
// throughput: batched XREADGROUP and XACK, claims of entries left idle by
// dead consumers (XPENDING … IDLE, then XCLAIM, so delivery counts are
// known), several consumers per process on request. By default it pipelines
// MaxInFlight messages per consumer, one per partition key (the next of a
// key after the previous is acked), so order holds per key; MaxInFlight 1
// delivers one message at a time, and order holds per consumer.
//
// An entry is acknowledged only after its message is acked, within
// AckFlushInterval. While a consumer holds an entry (read, in flight, or
// acked and waiting for its XACK) its heartbeat keeps the entry fresh, and
// no consumer of this process claims it, so a slow batch is never handed to
// another consumer and handled twice.
//
// Close stops reading at once, gives in-flight handlers CloseTimeout with
// their contexts live, then cancels those contexts with ErrClosed as the
// cause; whatever is not acked stays pending for the group (Arc acks
// entries read during shutdown without running them).
type Subscriber struct {
	cfg     SubscriberConfig
	host    string
	closing chan struct{} // closed by Close: stop reading
	running chan struct{} // closed once the first subscription reads
	started sync.Once
	once    sync.Once
	wg      sync.WaitGroup // every goroutine of every subscription

	// unsettled counts messages whose handlers had not settled them when
	// CloseTimeout ran out; Close reports it.
	unsettled atomic.Int64

	mu     sync.Mutex
	closed bool
	// held maps a topic's entry id to the consumer holding the entry
	// (read, in flight, or acked and not yet XACKed). Written by the
	// consumers; read by claims (to skip) and heartbeats (to refresh).
	held map[heldKey]*consumer

	signals subscriberSignals
	// deadLetters writes the subscriber's own dead letters, one durable
	// publisher (and its gate) for all its consumers.
	deadLetters deadLetterWriter

	// keyOf, when set, is the key whose messages are delivered one at a
	// time instead of wildcard.DefaultPartitionKey: a PartitionSubscriber's
	// RoutingKey, so that the key that chose the partition is the key kept in
	// order within it. Set before the first Subscribe, never changed.
	keyOf func(*message.Message) string
}

// orderKey is the key a consumer delivers one message of at a time.
func (s *Subscriber) orderKey(msg *message.Message) string {
	if s.keyOf != nil {
		return s.keyOf(msg)
	}
	return wildcard.DefaultPartitionKey(msg)
}

// NewSubscriber returns a Subscriber.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	host, _ := os.Hostname()
	return &Subscriber{cfg: cfg, host: host, closing: make(chan struct{}), running: make(chan struct{}),
		held: map[heldKey]*consumer{}}, nil
}

// OrdersByPartitionKey reports that the Subscriber delivers the messages of
// one wildcard.DefaultPartitionKey one at a time, in stream order (see
// SubscriberConfig.MaxInFlight), so the wildcard router reads it directly.
func (s *Subscriber) OrdersByPartitionKey() bool { return true }

var _ wildcard.KeyOrderedSubscriber = (*Subscriber)(nil)

// Running is closed once a subscription has started reading. Subscribe
// returns before its consumers have sent their first XREADGROUP; wait on
// Running when that matters (as Watermill's Router.Running).
func (s *Subscriber) Running() <-chan struct{} { return s.running }

// heldKey names an entry of a topic (a struct: no string built per entry).
type heldKey struct{ topic, id string }

// hold records that c holds the entries ids of its topic.
func (s *Subscriber) hold(c *consumer, ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.held[heldKey{c.topic, id}] = c
	}
}

// release forgets entries c held: acked, or left pending for the group.
func (s *Subscriber) release(c *consumer, ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if k := (heldKey{c.topic, id}); s.held[k] == c {
			delete(s.held, k)
		}
	}
}

// holds reports whether a consumer of this subscriber holds an entry.
func (s *Subscriber) holds(topic, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[heldKey{topic, id}] != nil
}

// heldBy returns the entries c holds.
func (s *Subscriber) heldBy(c *consumer) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for k, owner := range s.held {
		if owner == c {
			ids = append(ids, k.id)
		}
	}
	return ids
}

// Subscribe reads topic (the stream key) until ctx ends or Close. The
// messages' contexts are not ctx's: they stay live for CloseTimeout after
// ctx ends or Close, so handlers can finish (see Subscriber).
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.wg.Add(1) // held until the subscription is running, so Close waits for it
	s.mu.Unlock()
	defer s.wg.Done()
	if err := createGroup(ctx, s.cfg, topic); err != nil {
		return nil, err
	}
	readCtx, stopReading := context.WithCancel(ctx)
	workCtx, cancelWork := context.WithCancelCause(context.WithoutCancel(ctx))
	// Buffered to what may be in flight anyway: the slots, not the channel,
	// bound unsettled messages (MaxInFlight 1 keeps Watermill's rule).
	out := make(chan *message.Message, s.cfg.MaxInFlight*s.cfg.Consumers-1)
	var consumers sync.WaitGroup
	for i := 1; i <= s.cfg.Consumers; i++ {
		name := s.cfg.Consumer
		if s.cfg.Consumers > 1 {
			name = fmt.Sprintf("%s-%d", s.cfg.Consumer, i)
		}
		c := newConsumer(s, topic, name, out, workCtx)
		consumers.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer consumers.Done()
			c.run(readCtx)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-s.closing:
		case <-ctx.Done():
		}
		stopReading()
		s.drain(out, &consumers, workCtx, cancelWork)
	}()
	return out, nil
}

// drain ends a subscription once reading has stopped: messages still in
// the channel never reached a handler and are nacked (their entries stay
// pending); handlers get CloseTimeout to settle what they have, and are
// then cancelled with ErrClosed.
func (s *Subscriber) drain(out chan *message.Message, consumers *sync.WaitGroup, workCtx context.Context,
	cancelWork context.CancelCauseFunc) {
	done := make(chan struct{})
	go func() { consumers.Wait(); close(done) }()
	var deadline <-chan struct{}
	if s.cfg.CloseTimeout == None {
		cancelWork(ErrClosed)
	} else {
		timeoutCtx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
		defer cancel()
		deadline = timeoutCtx.Done()
	}
	for {
		select {
		case m := <-out:
			m.Nack()
			continue
		case <-deadline:
			cancelWork(ErrClosed)
			deadline = nil
			continue
		case <-done:
		}
		break
	}
	cancelWork(ErrClosed) // every consumer is done: frees the context
	close(out)
}

// Close stops every subscription and waits for them; idempotent. It
// returns ErrCloseTimeout, with the count, when handlers left messages
// unsettled past CloseTimeout.
func (s *Subscriber) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.closing)
		s.wg.Wait()
		if s.cfg.CloseClient {
			_ = s.cfg.Client.Close()
			if s.cfg.BlockingClient != s.cfg.Client {
				_ = s.cfg.BlockingClient.Close()
			}
		}
	})
	if n := s.unsettled.Load(); n > 0 {
		return fmt.Errorf("%w: %d message(s) left pending", ErrCloseTimeout, n)
	}
	return nil
}

func (s *Subscriber) logger(topic, consumer string) watermill.LoggerAdapter {
	return s.cfg.Logger.With(watermill.LogFields{"topic": topic, "consumer_group": s.cfg.ConsumerGroup,
		"consumer_uuid": consumer})
}
