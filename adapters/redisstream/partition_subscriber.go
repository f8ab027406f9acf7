package redisstream

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/wildcard"
)

// MetadataPartitionStream holds, on a message a PartitionSubscriber
// delivers, the key of the partition it was read from (arc:events:{3}):
// with MetadataEntryID it names the entry.
const MetadataPartitionStream = "arcmill_partition_stream"

// PartitionSubscriberConfig configures a PartitionSubscriber.
type PartitionSubscriberConfig struct {
	// Subscriber configures the reading of each partition, as it would a
	// Subscriber's of one stream: one consumer group for the whole topic,
	// claims, acks and MaxInFlight per partition (a process holds up to
	// MaxInFlight × partitions messages). Keep Consumers at 1 (the default):
	// several consumers of one partition share its keys, and per-key order
	// holds within one consumer only. DeadLetterStream must be empty: set
	// DeadLetters instead. Subscriber.Client and ConsumerGroup are required.
	Subscriber SubscriberConfig
	// Partitions is how many partitions each topic has: N of Partitions.
	// Required; every publisher and subscriber of a topic must agree on it.
	Partitions int
	// Assign lists the partitions this subscriber reads. Defaults to all.
	// Two processes of one group that both read a partition share its
	// entries, so one key's events can be handled by both at once; give
	// each process its own partitions (AssignPartitions) where per-key order
	// must hold across processes. A partition nobody reads waits: a
	// process's assignment is static, and its partitions wait for it (or
	// another process given them) when it stops.
	Assign []int
	// DeadLetters, when set, moves what each partition's claims give up on
	// (see SubscriberConfig.DeadLetterStream) to that partition's own
	// dead-letter stream, Partitions.DeadLetterKey (arc:events:{3}:dlq, in
	// the partition's slot). Defaults to off, as DeadLetterStream.
	DeadLetters bool
}

// AssignPartitions is the share of n partitions of member (0 ≤ member <
// members) of a group of members processes: the partitions i with i mod
// members = member, so that the members together read each partition once.
func AssignPartitions(member, members, n int) []int {
	var out []int
	for i := member; members > 0 && i < n; i += members {
		out = append(out, i)
	}
	return out
}

func (c *PartitionSubscriberConfig) setDefaults() {
	if c.Subscriber.Consumer == "" { // one name across the partitions
		c.Subscriber.Consumer = watermill.NewShortUUID()
	}
	if c.Assign == nil {
		for i := 0; i < c.Partitions; i++ {
			c.Assign = append(c.Assign, i)
		}
	}
}

// Validate reports a configuration that cannot work, naming the field.
func (c PartitionSubscriberConfig) Validate() error {
	c.setDefaults()
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: PartitionSubscriberConfig.%s", ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if c.Partitions < 1 {
		bad("Partitions is %d: must be at least 1", c.Partitions)
	}
	if c.Subscriber.DeadLetterStream != "" {
		bad("Subscriber.DeadLetterStream is %q: partitions each have their own; set DeadLetters",
			c.Subscriber.DeadLetterStream)
	}
	if len(c.Assign) == 0 {
		bad("Assign is empty: the subscriber would read nothing")
	}
	seen := map[int]bool{}
	for _, i := range c.Assign {
		if i < 0 || i >= c.Partitions || seen[i] {
			bad("Assign holds %d: want distinct partitions from 0 to %d", i, c.Partitions-1)
		}
		seen[i] = true
	}
	if err := c.Subscriber.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// PartitionSubscriber reads partitioned streams (Partitions) for the
// Watermill router, or the wildcard router: Subscribe(ctx, "arc:events")
// reads the assigned partitions arc:events:{i} of the group, each with a
// Subscriber of its own (its consumers, claims, acks, heartbeat and dead
// letters, all on that one key), and merges their messages into one
// channel.
//
// Per-key order holds end to end: the publisher puts every event of a
// RoutingKey in one partition, in order, and a partition's consumer
// delivers one message of a RoutingKey at a time, in stream order (the
// next once the previous is acked; a nacked one is sent again first), while
// keys, and partitions, are handled concurrently. It holds across the
// processes of a group when each partition is read by one of them
// (Assign).
type PartitionSubscriber struct {
	cfg     PartitionSubscriberConfig
	closing chan struct{} // closed by Close: forwarders stop forwarding
	once    sync.Once
	wg      sync.WaitGroup // the forwarders

	mu     sync.Mutex
	closed bool
	subs   []*Subscriber // every partition's, for Close
}

// NewPartitionSubscriber returns a PartitionSubscriber.
func NewPartitionSubscriber(cfg PartitionSubscriberConfig) (*PartitionSubscriber, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &PartitionSubscriber{cfg: cfg, closing: make(chan struct{})}, nil
}

// OrdersByPartitionKey reports that, as a Subscriber, it delivers one
// message of a key at a time, in stream order: its key is RoutingKey,
// which messages sharing a wildcard.DefaultPartitionKey share too.
func (s *PartitionSubscriber) OrdersByPartitionKey() bool { return true }

var _ wildcard.KeyOrderedSubscriber = (*PartitionSubscriber)(nil)

// Partitions returns the partitions of topic.
func (s *PartitionSubscriber) Partitions(topic string) Partitions {
	return Partitions{Stream: topic, N: s.cfg.Partitions}
}

// Subscribe reads the assigned partitions of topic until ctx ends or
// Close. The messages' contexts outlive ctx by CloseTimeout, as a
// Subscriber's do; a message that reaches no handler once reading stops is
// nacked, and its entry stays pending for the group.
func (s *PartitionSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	parts := s.Partitions(topic)
	if err := parts.Validate(); err != nil {
		return nil, err
	}
	subCtx, cancel := context.WithCancel(ctx)
	var mine []*Subscriber
	fail := func(err error) (<-chan *message.Message, error) {
		cancel()
		for _, sub := range mine {
			_ = sub.Close()
		}
		return nil, err
	}
	ins := make([]<-chan *message.Message, 0, len(s.cfg.Assign))
	for _, i := range s.cfg.Assign {
		cfg := s.cfg.Subscriber
		cfg.CloseClient = false // the client is shared: closed once, by Close
		if s.cfg.DeadLetters {
			cfg.DeadLetterStream = parts.DeadLetterKey(i)
		}
		sub, err := NewSubscriber(cfg)
		if err != nil {
			return fail(err)
		}
		sub.keyOf = RoutingKey
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return fail(ErrClosed)
		}
		s.subs = append(s.subs, sub)
		s.mu.Unlock()
		mine = append(mine, sub)
		in, err := sub.Subscribe(subCtx, parts.Key(i))
		if err != nil {
			return fail(fmt.Errorf("redisstream: subscribing to partition %d of %q: %w", i, topic, err))
		}
		ins = append(ins, in)
	}
	out := make(chan *message.Message)
	var forwarders sync.WaitGroup
	for n, in := range ins {
		key := parts.Key(s.cfg.Assign[n])
		forwarders.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer forwarders.Done()
			s.forward(subCtx, key, in, out)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		forwarders.Wait()
		cancel()
		close(out)
	}()
	return out, nil
}

// forward hands one partition's messages on until its channel closes.
// Once reading stops (ctx ends, or Close) a message taken from the
// partition is nacked, not handed on: as a Subscriber's buffered messages,
// it stays pending for the group, and the partition's channel drains.
func (s *PartitionSubscriber) forward(ctx context.Context, key string, in <-chan *message.Message,
	out chan<- *message.Message) {
	for msg := range in {
		msg.Metadata.Set(MetadataPartitionStream, key)
		msg.SetContext(withPartition(msg.Context(), key)) // for PartitionDeadLetterPublisher
		select {
		case <-ctx.Done():
			msg.Nack()
			continue
		case <-s.closing:
			msg.Nack()
			continue
		default:
		}
		select {
		case out <- msg:
		case <-ctx.Done():
			msg.Nack()
		case <-s.closing:
			msg.Nack()
		}
	}
}

// Close stops every subscription and waits for them; idempotent. Each
// partition's Subscriber gives its handlers CloseTimeout, all at once; the
// error joins theirs (ErrCloseTimeout with the count, per partition).
func (s *PartitionSubscriber) Close() error {
	var errs []error
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		subs := s.subs
		s.mu.Unlock()
		close(s.closing)
		errs = make([]error, len(subs))
		var wg sync.WaitGroup
		for i, sub := range subs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = sub.Close()
			}()
		}
		wg.Wait()
		s.wg.Wait()
		if s.cfg.Subscriber.CloseClient {
			_ = s.cfg.Subscriber.Client.Close()
			if b := s.cfg.Subscriber.BlockingClient; b != nil && b != s.cfg.Subscriber.Client {
				_ = b.Close()
			}
		}
	})
	return errors.Join(errs...)
}
