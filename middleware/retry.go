package middleware

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

// NoRetries, as RetryConfig.MaxRetries, turns immediate retries off (zero
// means the default).
const NoRetries = -1

// ErrShutdown is wrapped by the error Retry returns when the message's
// context ends during a backoff: the message is nacked, never dead-lettered.
var ErrShutdown = errors.New("middleware: shutting down during retry backoff")

// Metadata keys that carry the failure history with a message, so that it
// survives delayed retries, processes and restarts.
const (
	// MetadataAttempts counts the handler's attempts on this event so far.
	MetadataAttempts = "arcmill_attempts"
	// MetadataFirstFailedAt is when the first attempt failed (RFC 3339).
	MetadataFirstFailedAt = "arcmill_first_failed_at"
	// MetadataDelayedRetries counts the delayed retries so far.
	MetadataDelayedRetries = "arcmill_delayed_retries"
)

// RetryConfig configures Retry: Arc's withRetry, by default.
type RetryConfig struct {
	// MaxRetries is how many immediate retries follow a failure. Default 3
	// (four calls in all, as Arc's withRetry); NoRetries for none.
	MaxRetries int
	// Backoff is the wait before the first retry; it doubles per retry up to
	// MaxBackoff. Defaults 1 s and 30 s.
	Backoff, MaxBackoff time.Duration
	// Jitter adds up to this fraction of the wait, after the cap (Arc's
	// additive jitter: a wait lies in [d, d·(1+Jitter))). Default 0.1; set
	// NoJitter for none.
	Jitter float64
	// Unrecoverable reports errors no retry can fix, besides those wrapping
	// arc.ErrUnrecoverable; they skip the retries.
	Unrecoverable func(error) bool
	// OnRetry is called before each wait.
	OnRetry func(RetryInfo)
	// Logger defaults to no logging.
	Logger watermill.LoggerAdapter
}

// NoJitter, as RetryConfig.Jitter, turns jitter off.
const NoJitter = -1

// NoBackoff, as RetryConfig.Backoff, retries at once (zero means the
// default).
const NoBackoff time.Duration = -1

// RetryInfo describes a retry about to happen.
type RetryInfo struct {
	Message *message.Message
	// Attempt is the attempt that failed, from 1, counted across deliveries.
	Attempt int
	Delay   time.Duration
	Err     error
}

func (c *RetryConfig) setDefaults() {
	if c.MaxRetries == 0 {
		c.MaxRetries = 3
	}
	if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	switch c.Backoff {
	case 0:
		c.Backoff = time.Second
	case NoBackoff:
		c.Backoff, c.MaxBackoff = 0, 0
	}
	if c.MaxBackoff == 0 && c.Backoff > 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.Jitter == 0 {
		c.Jitter = 0.1
	}
	if c.Jitter < 0 {
		c.Jitter = 0
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate reports a configuration that cannot work.
func (c RetryConfig) Validate() error {
	switch {
	case c.MaxRetries < NoRetries:
		return fmt.Errorf("middleware: MaxRetries must be >= %d, got %d", NoRetries, c.MaxRetries)
	case c.Backoff < 0 && c.Backoff != NoBackoff || c.MaxBackoff < 0:
		return errors.New("middleware: Backoff and MaxBackoff must not be negative (NoBackoff retries at once)")
	case c.Jitter > 1:
		return fmt.Errorf("middleware: Jitter must be at most 1, got %v", c.Jitter)
	}
	return nil
}

// Retry retries a failing handler in process, with Arc's backoff. Each
// attempt gets the message's original context back (so a Timeout inside
// does not leak into the next attempt). It does not dead-letter: it returns
// a *RetryError with the attempt history, which DeadLetter, outside it,
// records. A context that ends during a backoff returns ErrShutdown at once.
type Retry struct {
	cfg     RetryConfig
	retried atomic.Uint64
	// interrupted remembers the attempts of deliveries whose context ended
	// before the retries were spent (a shutdown, or a subscriber's ack
	// deadline), so that a redelivery to this process counts on instead of
	// starting over and looping for ever.
	interrupted *attemptMemory
}

// NewRetry returns a Retry.
func NewRetry(cfg RetryConfig) (*Retry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &Retry{cfg: cfg, interrupted: newAttemptMemory(10000)}, nil
}

// Retried counts the retries made so far.
func (r *Retry) Retried() uint64 { return r.retried.Load() }

// Delay returns the wait before retry n (from 1): Arc's
// min(Backoff·2^(n-1), MaxBackoff), plus jitter.
func (r *Retry) Delay(n int) time.Duration {
	d := r.cfg.Backoff
	for i := 1; i < n && d < r.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.cfg.MaxBackoff)
	if r.cfg.Jitter > 0 {
		d += time.Duration(r.cfg.Jitter * float64(d) * rand.Float64())
	}
	return d
}

// RetryError is what Retry returns when it gives up: the last error and the
// history of the attempts.
type RetryError struct {
	Err error
	// Attempts counts the handler's attempts on this event, across
	// deliveries (MetadataAttempts).
	Attempts      int
	FirstFailedAt time.Time
	LastFailedAt  time.Time
	// Unrecoverable says the retries were skipped.
	Unrecoverable bool
}

func (e *RetryError) Error() string {
	if e.Unrecoverable {
		return fmt.Sprintf("unrecoverable after %d attempt(s): %v", e.Attempts, e.Err)
	}
	return fmt.Sprintf("failed %d attempt(s): %v", e.Attempts, e.Err)
}

func (e *RetryError) Unwrap() error { return e.Err }

// Middleware is the message.HandlerMiddleware.
func (r *Retry) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx := msg.Context()
		defer msg.SetContext(ctx) // an attempt's Timeout context must not outlive it
		key := memoryKey(msg)
		prior, _ := strconv.Atoi(msg.Metadata.Get(MetadataAttempts))
		first, _ := time.Parse(time.RFC3339Nano, msg.Metadata.Get(MetadataFirstFailedAt))
		start := 0 // tries of this delivery's retry budget already spent
		if seen, ok := r.interrupted.get(key); ok && seen.attempts > prior {
			prior, first, start = seen.attempts, seen.first, seen.tries
		}
		for try := start; ; try++ {
			msg.SetContext(ctx)
			out, err := h(msg)
			if err == nil {
				r.interrupted.forget(key)
				return out, nil
			}
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			attempt := prior + try - start + 1
			unrecoverable := r.unrecoverable(err)
			exhausted := unrecoverable || try >= r.cfg.MaxRetries
			if ctx.Err() != nil && (!exhausted || isContextErr(err)) {
				// The delivery ends before its retries do (shutdown, ack
				// deadline): nack, and count on at the next delivery.
				r.interrupted.put(key, attempts{attempt, first, try + 1})
				return nil, fmt.Errorf("%w: %w (after %d attempt(s): %v)", ErrShutdown, ctx.Err(), attempt, err)
			}
			if exhausted {
				r.interrupted.forget(key)
				return nil, &RetryError{Err: err, Attempts: attempt, FirstFailedAt: first, LastFailedAt: now,
					Unrecoverable: unrecoverable}
			}
			delay := r.Delay(try + 1)
			if r.cfg.OnRetry != nil {
				r.cfg.OnRetry(RetryInfo{Message: msg, Attempt: attempt, Delay: delay, Err: err})
			}
			r.cfg.Logger.Info("Retrying handler", watermill.LogFields{
				"message_uuid": msg.UUID, "attempt": attempt, "delay": delay.String(), "err": err.Error(),
			})
			r.retried.Add(1)
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				r.interrupted.put(key, attempts{attempt, first, try + 1})
				return nil, fmt.Errorf("%w: %w (after %d attempt(s): %v)", ErrShutdown, ctx.Err(), attempt, err)
			}
		}
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// memoryKey identifies one handler's delivery of one message.
func memoryKey(msg *message.Message) string {
	if info, ok := wildcard.InfoFromContext(msg.Context()); ok {
		return msg.UUID + "\x00" + info.Handler
	}
	return msg.UUID + "\x00" + message.HandlerNameFromCtx(msg.Context())
}

func (r *Retry) unrecoverable(err error) bool {
	return errors.Is(err, arc.ErrUnrecoverable) || errors.Is(err, ErrValidation) ||
		errors.Is(err, arc.ErrMalformedEvent) || r.cfg.Unrecoverable != nil && r.cfg.Unrecoverable(err)
}
