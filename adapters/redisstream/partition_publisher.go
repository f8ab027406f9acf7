package redisstream

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// PartitionPublisherConfig configures a PartitionPublisher.
type PartitionPublisherConfig struct {
	// Publisher configures the writes to each partition as it would a
	// Publisher's to one stream: Client (a redis.ClusterClient to spread the
	// partitions over a cluster's nodes), Marshaller, MaxPayloadBytes,
	// Durability (confirmed per partition, on the partition's primary),
	// SafeTrimEvery (per partition). MaxLens and DefaultMaxLen name the
	// topic, the partitions' shared name, and cap each partition.
	// Publisher.Client is required.
	Publisher PublisherConfig
	// Partitions is how many partitions each topic has: N of Partitions.
	// Required; every publisher and subscriber of a topic must agree on it.
	Partitions int
}

// Validate reports a configuration that cannot work, naming the field.
func (c PartitionPublisherConfig) Validate() error {
	var errs []error
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("%w: PartitionPublisherConfig.Partitions is %d: must be at least 1",
			ErrInvalidConfig, c.Partitions))
	}
	if err := c.Publisher.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// PartitionPublisher publishes to partitioned streams (Partitions): each
// message to the partition of its RoutingKey (meta.partitionKey, else the
// aggregate id, else meta.resourceId, else the event id), so one key's
// events stay in one stream, in the order published. A Publish call's
// messages are encoded and checked first, all of them, so that a refused one
// leaves nothing written; then each partition's share is written in one
// pipeline, the partitions concurrently (on a Cluster, each to its node).
//
// A topic is the partitions' shared name ("arc:events" writes
// arc:events:{0} … arc:events:{N-1}). With Partitions 1 it writes the topic
// itself, as Publisher does.
type PartitionPublisher struct {
	cfg    PartitionPublisherConfig
	closed atomic.Bool

	checked sync.Once // the server check, before the first Publish

	mu    sync.Mutex
	parts map[string]*Publisher // by partition key: its durability gate and trim count
}

// NewPartitionPublisher returns a PartitionPublisher.
func NewPartitionPublisher(cfg PartitionPublisherConfig) (*PartitionPublisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Publisher.setDefaults()
	return &PartitionPublisher{cfg: cfg, parts: map[string]*Publisher{}}, nil
}

// Partitions returns the partitions of topic.
func (p *PartitionPublisher) Partitions(topic string) Partitions {
	return Partitions{Stream: topic, N: p.cfg.Partitions}
}

// partition returns the Publisher that writes partition key of topic.
func (p *PartitionPublisher) partition(topic, key string) *Publisher {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pub, ok := p.parts[key]; ok {
		return pub
	}
	cfg := p.cfg.Publisher
	cfg.MaxLens, cfg.DefaultMaxLen = nil, (&Publisher{cfg: p.cfg.Publisher}).maxLen(topic)
	cfg.CloseClient, cfg.SkipServerCheck = false, true // the client is closed, and the server checked, once, here
	pub := &Publisher{cfg: cfg, published: map[string]int{}}
	p.parts[key] = pub
	return pub
}

// Publish writes msgs to the partitions of topic, each to the partition
// of its RoutingKey, in order within each partition. A failure in one
// partition does not stop the others: the error names each partition that
// failed, and its messages; the messages of other partitions are written.
func (p *PartitionPublisher) Publish(topic string, msgs ...*message.Message) error {
	if p.closed.Load() {
		return ErrClosed
	}
	if len(msgs) == 0 {
		return nil
	}
	parts := p.Partitions(topic)
	if err := parts.Validate(); err != nil {
		return err
	}
	type share struct {
		key  string
		pub  *Publisher
		msgs []*message.Message
		b    *batch
	}
	byPart := map[int]*share{}
	var order []int
	for _, msg := range msgs {
		i := parts.OfMessage(msg)
		s := byPart[i]
		if s == nil {
			s = &share{key: parts.Key(i)}
			s.pub = p.partition(topic, s.key)
			byPart[i] = s
			order = append(order, i)
		}
		s.msgs = append(s.msgs, msg)
	}
	defer func() {
		for _, s := range byPart {
			s.b.release()
		}
	}()
	for _, i := range order { // everything encoded and checked before anything is written
		s := byPart[i]
		b, err := s.pub.entries(s.key, s.msgs)
		if err != nil {
			return err
		}
		s.b = b
	}
	ctx := msgs[0].Context()
	p.checked.Do(func() { (&Publisher{cfg: p.cfg.Publisher}).checkServer(ctx) })
	if len(order) == 1 {
		s := byPart[order[0]]
		return s.pub.send(ctx, s.key, s.msgs, s.b.args)
	}
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for n, i := range order {
		s := byPart[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.pub.send(ctx, s.key, s.msgs, s.b.args); err != nil {
				errs[n] = fmt.Errorf("redisstream: partition %d (%s), %d message(s): %w", i, s.key, len(s.msgs), err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close makes later Publish calls fail; idempotent.
func (p *PartitionPublisher) Close() error {
	if p.closed.CompareAndSwap(false, true) && p.cfg.Publisher.CloseClient {
		return p.cfg.Publisher.Client.Close()
	}
	return nil
}

// RedisClient returns the client the publisher writes with
// (middleware.RedisClienter).
func (p *PartitionPublisher) RedisClient() redis.UniversalClient { return p.cfg.Publisher.Client }

var _ message.Publisher = (*PartitionPublisher)(nil)
