package middleware

import (
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/redis/go-redis/v9"
)

// NoTimeout, as StackConfig.Timeout, leaves attempts unbounded.
const NoTimeout time.Duration = -1

// DefaultTimeout is StackConfig.Timeout's default: attempts are unbounded,
// as in Arc.
const DefaultTimeout = NoTimeout

// StackConfig configures NewStack.
type StackConfig struct {
	// DeadLetter needs a publisher and a topic. Required.
	DeadLetter DeadLetterConfig
	// Retry configures the immediate retries. Defaults to RetryConfig{}:
	// Arc's withRetry, 3 retries from 1 s, doubling to 30 s. Its
	// TransportError, OutageBackoff and OutageMaxBackoff also serve
	// DeadLetter when DeadLetter sets none of its own.
	Retry RetryConfig
	// Validator, when set, validates incoming payloads. Defaults to nil: no
	// validation.
	Validator Validator
	// OnInvalid says what happens to an invalid payload. Defaults to
	// DeadLetterInvalid: dead-letter it, without retries.
	OnInvalid InvalidAction
	// Timeout bounds each attempt; NoTimeout for none. Defaults to
	// DefaultTimeout.
	Timeout time.Duration
	// Logger is given to the parts that log and have none. Defaults to
	// watermill.NopLogger.
	Logger watermill.LoggerAdapter
	// Redis, when set, keeps the dead letters' once-only guard
	// (DeadLetterConfig.GuardClient, unless that is set), for a dead-letter
	// Publisher that does not share a Redis client of its own. Defaults to
	// nil: the guard is on only where DeadLetterConfig provides one.
	Redis redis.UniversalClient
	// Breaker, when set, is the subscription's kill switch (NewBreaker):
	// its Middleware goes inside Retry (see NewStack). Give its Subscriber
	// to the handler's subscription too, so that intake pauses while it is
	// open. Defaults to nil: no breaker.
	Breaker *Breaker
	// Sequence, when set, sequences dead letters for the one handler this
	// Stack serves (see Sequencer): its Client defaults to the dead-letter
	// Publisher's client (a RedisClienter), else to Redis; its Group to
	// DeadLetter.ConsumerGroup. Defaults to nil: not sequenced.
	Sequence *SequenceConfig
}

// Stack is the one order of recovery middleware that works. Use its
// Middleware on a message.Router handler, a wildcard.HandlerConfig, or the
// router itself, and give its DeadLetter.Malformed to wildcard.Config.
type Stack struct {
	Retry      *Retry
	DeadLetter *DeadLetter
	// Breaker is StackConfig.Breaker, nil when none.
	Breaker *Breaker
	// Sequencer is set with StackConfig.Sequence; Close stops it.
	Sequencer *Sequencer
	// Middleware is, outermost first: Sequencer (if any), Causation,
	// DeadLetter, Validation (if any), Retry, Breaker (if any), Timeout (if
	// any), Recoverer.
	Middleware []message.HandlerMiddleware
}

// NewStack assembles the recovery middleware in the only order that works:
//
//  0. Sequencer (if any), outermost, so that it sees every dead letter,
//     and the parked events it runs later go through the whole stack.
//  1. Causation, so that everything inside, dead letters included, sees
//     the event being handled.
//  2. DeadLetter, outside everything that fails, so that a failure reaching
//     it is final; nothing outside it swallows errors (the mistake of
//     watermill issues #580 and #645, PoisonQueue inside Retry, cannot be
//     made).
//  3. Validation, outside Retry: an invalid payload is dead-lettered with
//     reason validation_failed at once, never retried.
//  4. Retry, outside Timeout and Recoverer, so that a timed-out or panicking
//     attempt is retried, and then dead-lettered; each attempt gets the
//     original context back, so one attempt's timeout does not end the next.
//  5. Breaker (if any), inside Retry, so that it sees every attempt (and
//     every call Retry makes during a dependency's outage) as an outcome,
//     and so that while it is open every attempt, retries included, waits
//     at its gate instead of running. A failure while it is open (or the
//     one that trips it) is held there and runs again after the probe:
//     Retry never sees it, so it costs no attempt, and DeadLetter never
//     dead-letters it. Outside Timeout and Recoverer, so that a timed-out
//     or panicking attempt is a failure it counts, and its wait is not cut
//     short by an attempt's Timeout.
//  6. Timeout, per attempt.
//  7. Recoverer, innermost, so that a panic is an error Retry can see (with
//     no stack in its message; see Recoverer).
func NewStack(cfg StackConfig) (*Stack, error) {
	if cfg.Logger != nil {
		if cfg.DeadLetter.Logger == nil {
			cfg.DeadLetter.Logger = cfg.Logger
		}
		if cfg.Retry.Logger == nil {
			cfg.Retry.Logger = cfg.Logger
		}
	}
	// One rule and one pace for outages on both sides of the retries,
	// unless the dead-letter side has its own.
	if cfg.DeadLetter.TransportError == nil {
		cfg.DeadLetter.TransportError = cfg.Retry.TransportError
	}
	if cfg.DeadLetter.OutageBackoff == 0 && cfg.DeadLetter.OutageMaxBackoff == 0 {
		cfg.DeadLetter.OutageBackoff, cfg.DeadLetter.OutageMaxBackoff = cfg.Retry.OutageBackoff, cfg.Retry.OutageMaxBackoff
	}
	if _, shares := cfg.DeadLetter.Publisher.(RedisClienter); cfg.DeadLetter.GuardClient == nil && !shares {
		cfg.DeadLetter.GuardClient = cfg.Redis // the dead letters' own Redis first: guard and stream fail together
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Timeout < 0 && cfg.Timeout != NoTimeout {
		return nil, fmt.Errorf("%w: StackConfig.Timeout must be positive, 0 (default) or NoTimeout, got %v",
			ErrInvalidConfig, cfg.Timeout)
	}
	if cfg.OnInvalid != DeadLetterInvalid && cfg.OnInvalid != SkipInvalid {
		return nil, fmt.Errorf("%w: StackConfig.OnInvalid %d is unknown", ErrInvalidConfig, cfg.OnInvalid)
	}
	dl, err := NewDeadLetter(cfg.DeadLetter)
	if err != nil {
		return nil, err
	}
	retry, err := NewRetry(cfg.Retry)
	if err != nil {
		return nil, err
	}
	s := &Stack{Retry: retry, DeadLetter: dl, Breaker: cfg.Breaker}
	if cfg.Sequence != nil {
		if s.Sequencer, err = newStackSequencer(cfg); err != nil {
			return nil, err
		}
		// Outermost: it must see every dead letter, and the parked events
		// it runs later go through the whole stack.
		s.Middleware = append(s.Middleware, s.Sequencer.Middleware)
	}
	s.Middleware = append(s.Middleware, Causation, dl.Middleware)
	if cfg.Validator != nil {
		s.Middleware = append(s.Middleware, Validation(cfg.Validator, cfg.OnInvalid, cfg.Logger))
	}
	s.Middleware = append(s.Middleware, retry.Middleware)
	if cfg.Breaker != nil {
		s.Middleware = append(s.Middleware, cfg.Breaker.Middleware)
	}
	if cfg.Timeout > 0 {
		s.Middleware = append(s.Middleware, wmiddleware.Timeout(cfg.Timeout))
	}
	s.Middleware = append(s.Middleware, Recoverer)
	return s, nil
}

// newStackSequencer builds StackConfig.Sequence's Sequencer with the
// stack's Redis, group and logger as defaults.
func newStackSequencer(cfg StackConfig) (*Sequencer, error) {
	sc := *cfg.Sequence
	if rc, ok := cfg.DeadLetter.Publisher.(RedisClienter); ok && sc.Client == nil {
		sc.Client = rc.RedisClient() // the dead letters' own Redis: parked events as durable as they are
	}
	if sc.Client == nil {
		sc.Client = cfg.Redis
	}
	if sc.Group == "" {
		sc.Group = cfg.DeadLetter.ConsumerGroup
	}
	if sc.Logger == nil {
		sc.Logger = cfg.Logger
	}
	return NewSequencer(sc)
}

// Close stops what the Stack runs in the background (a Sequencer's
// drainer); call it after the router closed. A Stack without one has
// nothing to stop.
func (s *Stack) Close() error {
	if s.Sequencer != nil {
		return s.Sequencer.Close()
	}
	return nil
}
