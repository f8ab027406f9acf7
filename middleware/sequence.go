package middleware

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
)

// Sequencer defaults, named in SequenceConfig's field docs.
const (
	// DefaultSequencePrefix starts the Redis keys of parked sequences.
	DefaultSequencePrefix = "arcmill:seq:"
	// DefaultSequencePollInterval is how often a Sequencer looks for
	// released sequences to drain (a release in this process is drained
	// at once; one by an operator or another instance within this).
	DefaultSequencePollInterval = time.Second
	// DefaultSequenceLease is how long one instance holds the right to
	// drain a released sequence; renewed while it drains, so it only
	// matters when the instance dies mid-release.
	DefaultSequenceLease = 30 * time.Second
	// DefaultSequenceStoreBackoff is the first wait before a message
	// whose sequence state could not be read or written (Redis down) tries
	// again, so that an outage is no hot loop.
	DefaultSequenceStoreBackoff = time.Second
	// DefaultSequenceWaitTimeout bounds the WAIT for replicas
	// (SequenceConfig.WaitReplicas).
	DefaultSequenceWaitTimeout = time.Second
)

// ErrParkNotReplicated is the error of an event parked but not confirmed
// by SequenceConfig.WaitReplicas replicas in time: the delivery WAITs
// again (StoreBackoff between), and is nacked only if its context ends
// first.
var ErrParkNotReplicated = errors.New("middleware: parked event not confirmed by enough replicas")

// ErrSequenceStore wraps a failure to read or write a parked sequence that
// lasted until the message's context ended (the delivery tries again in
// place until then): the message is nacked and comes back, never run past
// a park it cannot see.
var ErrSequenceStore = errors.New("middleware: sequence store")

// SequenceKey is the key a Sequencer orders by: the event's
// meta.partitionKey, else its aggregate id (wildcard.DefaultPartitionKey's
// first two), else "": an event with neither is not sequenced, as it has
// no "later events of the same key".
func SequenceKey(msg *message.Message) string {
	if k := msg.Metadata.Get(arc.MetadataPartitionKey); k != "" {
		return k
	}
	return msg.Metadata.Get(arc.MetadataAggregateID)
}

// SequenceConfig configures a Sequencer: sequenced dead letters for one
// handler.
type SequenceConfig struct {
	// Client is the Redis that holds parked sequences: give it the dead
	// letters' Redis, so parked events are exactly as durable as dead
	// letters (AOF with appendfsync always, or a replica acknowledged with
	// WAIT, as README's no-loss conditions say). Required.
	Client redis.UniversalClient
	// Handler names the handler whose sequences these are; one Sequencer
	// serves one handler. Required.
	Handler string
	// Group is the consumer group the handler reads in, so that two
	// groups running a handler of one name keep apart. Defaults to "".
	Group string
	// Prefix starts every key; no { or } (a hash tag follows it).
	// Defaults to DefaultSequencePrefix.
	Prefix string
	// Key gives a message's sequence key; "" leaves it unsequenced.
	// Defaults to SequenceKey.
	Key func(*message.Message) string
	// PollInterval paces the look for released sequences (by an operator
	// or another instance). Defaults to DefaultSequencePollInterval.
	PollInterval time.Duration
	// Lease is how long a draining instance holds a sequence without
	// renewing it; after a crash another instance resumes the release
	// after it. Defaults to DefaultSequenceLease.
	Lease time.Duration
	// WaitReplicas, when positive, makes each park wait (WAIT) until that
	// many replicas of the key's Redis have it before the event is
	// acknowledged from its source; fewer within WaitTimeout and it WAITs
	// again (as a store failure: StoreBackoff), nacked only when its
	// context ends. Defaults to 0: a parked
	// event is as durable as the primary's persistence (as dead letters,
	// which no WAIT follows).
	WaitReplicas int
	// WaitTimeout bounds each WAIT. Defaults to
	// DefaultSequenceWaitTimeout.
	WaitTimeout time.Duration
	// StoreBackoff is the first wait before a message whose sequence state
	// Redis could not read or write (or ErrParkNotReplicated) tries again,
	// in place (not nacked: a nack would spend one of the transport's
	// deliveries); it doubles per failure up to 30s, until the message's
	// context ends. Defaults to DefaultSequenceStoreBackoff.
	StoreBackoff time.Duration
	// Publisher and PublishTopic receive the messages a HandlerFunc returns
	// while a released sequence is drained (the router publishes them for
	// live deliveries). Default to nil: a drained event whose handler
	// returns messages fails (logged at Error), and stays first in its
	// sequence, tried again a minute later (its handler runs again).
	Publisher    message.Publisher
	PublishTopic string
	// Logger receives an Info line per park and release, and an Error
	// line per store failure. Defaults to watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

func (c *SequenceConfig) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = DefaultSequencePrefix
	}
	if c.Key == nil {
		c.Key = SequenceKey
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultSequencePollInterval
	}
	if c.Lease == 0 {
		c.Lease = DefaultSequenceLease
	}
	if c.StoreBackoff == 0 {
		c.StoreBackoff = DefaultSequenceStoreBackoff
	}
	if c.WaitTimeout == 0 {
		c.WaitTimeout = DefaultSequenceWaitTimeout
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate applies the defaults to a copy of c and reports a value that
// cannot work. Every error wraps ErrInvalidConfig.
func (c SequenceConfig) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *SequenceConfig) validate() error {
	switch {
	case c.Client == nil:
		return fmt.Errorf("%w: SequenceConfig.Client is required", ErrInvalidConfig)
	case c.Handler == "":
		return fmt.Errorf("%w: SequenceConfig.Handler is required", ErrInvalidConfig)
	case strings.ContainsAny(c.Prefix, "{}"):
		return fmt.Errorf("%w: SequenceConfig.Prefix %q must not hold { or }: the keys' hash tag follows it", ErrInvalidConfig, c.Prefix)
	case c.PollInterval < 0:
		return fmt.Errorf("%w: SequenceConfig.PollInterval must be positive or 0 (default), got %v", ErrInvalidConfig, c.PollInterval)
	case c.Lease < 3*time.Millisecond:
		return fmt.Errorf("%w: SequenceConfig.Lease must be at least 3ms, got %v", ErrInvalidConfig, c.Lease)
	case c.StoreBackoff < 0:
		return fmt.Errorf("%w: SequenceConfig.StoreBackoff must be positive or 0 (default), got %v", ErrInvalidConfig, c.StoreBackoff)
	case c.WaitReplicas < 0:
		return fmt.Errorf("%w: SequenceConfig.WaitReplicas must not be negative, got %d", ErrInvalidConfig, c.WaitReplicas)
	case c.WaitTimeout < time.Millisecond:
		return fmt.Errorf("%w: SequenceConfig.WaitTimeout must be at least 1ms, got %v", ErrInvalidConfig, c.WaitTimeout)
	case c.Publisher != nil && c.PublishTopic == "":
		return fmt.Errorf("%w: SequenceConfig.PublishTopic is required with a Publisher", ErrInvalidConfig)
	}
	return nil
}

// Sequencer is Axon's sequenced dead-letter queue for one handler: once an
// event of key K is dead-lettered (the head), the handler's later events
// of K are parked in Redis (held, not run, and acknowledged from the
// source only once stored) until the head is redriven, or an operator
// releases or discards the sequence. Then the sequence runs in order: the
// redriven head first, then the parked events as they arrived, then new
// events of K, which join the end of the sequence while it drains.
//
// Place its Middleware outside DeadLetter (StackConfig.Sequence does), so
// that it sees which deliveries ended in a dead letter. The park check and
// the append are one Lua script, so two instances cannot run an event past
// a park; parked events are drained by one instance at a time (a lease),
// each removed only after its handler succeeded, so a release interrupted
// by a crash resumes where it stopped (the event running then runs again:
// at least once, as every delivery).
//
// A delayed retry (DeadLetterConfig.Delayed) is not a dead letter: later
// events of K run meanwhile. Use no delayed tier on a sequenced handler
// whose order matters.
type Sequencer struct {
	cfg   SequenceConfig
	store *sequenceStore

	startOnce sync.Once
	closeOnce sync.Once
	h         message.HandlerFunc
	ctx       context.Context
	cancel    context.CancelFunc
	kick      chan struct{}
	done      chan struct{}
	started   atomic.Bool

	parked, heads, released, drained, reparked, storeFailures atomic.Uint64

	// retryAt puts off keys whose drained event failed (drainer only).
	retryAt map[string]drainRetry
	// scanCursor is where the next look at the released keys goes on
	// (drainer only).
	scanCursor uint64
}

// NewSequencer returns a Sequencer; its drainer starts with the first call
// of Middleware and ends with Close.
func NewSequencer(cfg SequenceConfig) (*Sequencer, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Sequencer{cfg: cfg, store: newSequenceStore(cfg.Client, cfg.Prefix, cfg.Group, cfg.Handler),
		ctx: ctx, cancel: func() { cancel(ErrShutdown) }, kick: make(chan struct{}, 1), done: make(chan struct{}),
		retryAt: map[string]drainRetry{}}, nil
}

// SequenceStats counts what a Sequencer did.
type SequenceStats struct {
	// Parked counts events held behind a dead letter.
	Parked uint64
	// Heads counts sequences started by a dead letter (and heads
	// dead-lettered again).
	Heads uint64
	// Released counts sequences released by their head's success.
	Released uint64
	// Drained counts parked events run after a release.
	Drained uint64
	// Reparked counts drained events dead-lettered, which parked the rest
	// behind them.
	Reparked uint64
	// StoreFailures counts Redis calls that failed.
	StoreFailures uint64
}

// Stats returns the counters so far.
func (s *Sequencer) Stats() SequenceStats {
	return SequenceStats{Parked: s.parked.Load(), Heads: s.heads.Load(), Released: s.released.Load(),
		Drained: s.drained.Load(), Reparked: s.reparked.Load(), StoreFailures: s.storeFailures.Load()}
}

// Close stops the drainer and waits for it: an event it is running ends
// with a cancelled context (ErrShutdown) and stays parked, first in line.
func (s *Sequencer) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		if s.started.Load() {
			<-s.done
		}
	})
	return nil
}

// seqOutcome is what DeadLetter tells the Sequencer around it about one
// delivery, through the message's context.
type seqOutcome struct {
	deadLettered atomic.Bool
	mu           sync.Mutex
	reason, err  string
}

type seqOutcomeKey struct{}

// noteDeadLettered tells a Sequencer outside DeadLetter that the delivery
// of ctx ended in a dead letter (written now or by an earlier delivery),
// and why.
func noteDeadLettered(ctx context.Context, reason, errMsg string) {
	if o, ok := ctx.Value(seqOutcomeKey{}).(*seqOutcome); ok {
		o.mu.Lock()
		o.reason, o.err = reason, errMsg
		o.mu.Unlock()
		o.deadLettered.Store(true)
	}
}

// Middleware is the message.HandlerMiddleware. The first call starts the
// drainer with h. A Sequencer serves one handler: a second call panics.
func (s *Sequencer) Middleware(h message.HandlerFunc) message.HandlerFunc {
	first := false
	s.startOnce.Do(func() {
		first = true
		s.h = h
		s.started.Store(true)
		go s.drainLoop()
	})
	if !first {
		// The drainer runs parked events through the first handler only:
		// a second one would see another handler's events run as its own.
		panic("middleware: a Sequencer serves one handler, and its Middleware was applied to a second; " +
			"build one Stack (or Sequencer) per sequenced handler")
	}
	return func(msg *message.Message) ([]*message.Message, error) {
		key := s.cfg.Key(msg)
		if key == "" || msg.Metadata.Get(MetadataDLQReason) != "" {
			return h(msg)
		}
		ctx := msg.Context()
		fields := watermill.LogFields{"message_uuid": msg.UUID, "handler_name": s.cfg.Handler, "sequence_key": key}
		var verdict int
		if err := s.storeRetry(ctx, "Sequence not checked; waiting for Redis", fields, func() (err error) {
			verdict, err = s.gate(ctx, key, msg)
			return err
		}); err != nil {
			return nil, err
		}
		switch verdict {
		case gateParked, gateDuplicate: // a duplicate: parked by an earlier delivery
			if err := s.storeRetry(ctx, "Parked event not replicated; waiting", fields, func() error {
				return s.replicated(ctx, key)
			}); err != nil {
				return nil, err
			}
			if verdict == gateParked {
				s.parked.Add(1)
				s.cfg.Logger.Debug("Event parked behind its key's dead letter", fields)
			}
			return nil, nil
		}
		out := &seqOutcome{}
		msg.SetContext(context.WithValue(ctx, seqOutcomeKey{}, out))
		res, herr := h(msg)
		if out.deadLettered.Load() {
			if err := s.parkHead(ctx, key, msg, out, fields); err != nil {
				// The next delivery finds the dead letter written (the guard)
				// and parks again.
				return nil, err
			}
			return res, herr
		}
		if herr != nil || verdict != gateHead {
			return res, herr
		}
		var n int64
		if err := s.storeRetry(ctx, "Redriven head ran but its sequence was not released; waiting for Redis", fields, func() (err error) {
			n, err = s.store.headDone(ctx, key, RedrivenEventID(msg.UUID))
			return err
		}); err != nil {
			// Nacked: it runs again, as the head still.
			return nil, err
		}
		if n >= 0 {
			s.released.Add(1)
			s.cfg.Logger.Info("Redriven head succeeded; releasing its sequence", fields.Add(watermill.LogFields{"parked": n}))
			s.wake()
		}
		return res, nil
	}
}

// gate tells what to do with msg: a key with no sequence (the common
// case) costs one EXISTS; a parked key's event goes, with its bytes,
// through gateScript, which checks again and appends in one step.
func (s *Sequencer) gate(ctx context.Context, key string, msg *message.Message) (int, error) {
	parked, err := s.store.exists(ctx, key)
	if err != nil || !parked {
		return gateRun, err
	}
	entry, err := encodeParked(msg)
	if err != nil {
		return 0, err
	}
	// The head is recognised by its event id, not its UUID: a redrive over
	// JetStream gives it a new UUID (RedriveUUID).
	return s.store.gate(ctx, key, RedrivenEventID(msg.UUID), parkedID(msg), entry, parkedPosition(msg))
}

// parkHead makes msg, just dead-lettered, the head of key's sequence.
func (s *Sequencer) parkHead(ctx context.Context, key string, msg *message.Message, out *seqOutcome,
	fields watermill.LogFields) error {
	out.mu.Lock()
	info := headInfoOf(msg, out.reason, out.err)
	out.mu.Unlock()
	var ok bool
	if err := s.storeRetry(ctx, "Dead letter written but its key not parked; waiting for Redis", fields, func() (err error) {
		ok, err = s.store.park(ctx, key, RedrivenEventID(msg.UUID), info, time.Now())
		if err == nil {
			err = s.replicated(ctx, key)
		}
		return err
	}); err != nil {
		return err
	}
	if ok {
		s.heads.Add(1)
		s.cfg.Logger.Info("Key parked behind a dead letter: its later events wait for a redrive or an operator", fields)
	} else {
		// Another instance ran an event of the key concurrently (the
		// transport orders keys per consumer only) and parked it first.
		s.cfg.Logger.Error("Dead letter of a key already parked behind another head; redrive it after that one",
			nil, fields)
	}
	return nil
}

// replicated waits for WaitReplicas replicas of key's Redis to have what
// was written to it; nil at once without WaitReplicas.
func (s *Sequencer) replicated(ctx context.Context, key string) error {
	if s.cfg.WaitReplicas == 0 {
		return nil
	}
	n, err := s.store.wait(ctx, key, s.cfg.WaitReplicas, s.cfg.WaitTimeout)
	if err != nil {
		return err
	}
	if n < int64(s.cfg.WaitReplicas) {
		return fmt.Errorf("%w: %d of %d within %v", ErrParkNotReplicated, n, s.cfg.WaitReplicas, s.cfg.WaitTimeout)
	}
	return nil
}

// storeMaxBackoff caps the doubled wait of storeRetry.
const storeMaxBackoff = 30 * time.Second

// storeRetry runs op until it succeeds or ctx ends, waiting StoreBackoff,
// doubled per failure up to max(StoreBackoff, storeMaxBackoff), between
// tries. A store failure (Redis down, ErrParkNotReplicated) is an outage,
// not the event's fault: a nack would spend one of the transport's
// deliveries (JetStream's MaxDeliver would dead-letter an event that
// never ran, its key not parked), so the message waits in place, as
// Retry waits out transport errors. Only when ctx ends (shutdown) is the
// error returned, to nack with.
func (s *Sequencer) storeRetry(ctx context.Context, what string, fields watermill.LogFields, op func() error) error {
	wait := s.cfg.StoreBackoff
	for failures := 0; ; failures++ {
		err := op()
		if err == nil {
			if failures > 0 {
				s.cfg.Logger.Info("Sequence store back", fields.Add(watermill.LogFields{"failures": failures}))
			}
			return nil
		}
		s.storeFailures.Add(1)
		if failures == 0 {
			s.cfg.Logger.Error(what, err, fields)
		} else {
			s.cfg.Logger.Debug(what, fields.Add(watermill.LogFields{"err": err, "failures": failures + 1}))
		}
		if ctx.Err() != nil || !sleepCtx(ctx, wait) {
			return fmt.Errorf("%w: %w", ErrSequenceStore, err)
		}
		wait = min(2*wait, max(s.cfg.StoreBackoff, storeMaxBackoff))
	}
}

// storeFailed counts and logs a Redis failure, waits StoreBackoff (or
// until ctx ends) and returns the error to nack with.
func (s *Sequencer) storeFailed(ctx context.Context, what string, err error, fields watermill.LogFields) error {
	s.storeFailures.Add(1)
	s.cfg.Logger.Error(what, err, fields)
	sleepCtx(ctx, s.cfg.StoreBackoff)
	return fmt.Errorf("%w: %w", ErrSequenceStore, err)
}

// wake makes the drainer look for released sequences now.
func (s *Sequencer) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}
