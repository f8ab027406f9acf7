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

// ErrInvalidConfig is wrapped by every error that refuses a configuration
// of this package.
var ErrInvalidConfig = errors.New("middleware: invalid config")

// ErrShutdown means "the process is shutting down", as opposed to "the
// handler failed". It has two uses:
//
//   - A transport that cancels a message's context because it is closing
//     gives a cause that wraps ErrShutdown (context.WithCancelCause with its
//     ErrClosed, which matches ErrShutdown under errors.Is). Retry and
//     DeadLetter recognise it with IsShutdown: a handler error returned
//     while the message's context is cancelled with that cause is not an
//     attempt, and the message is nacked, never retried or dead-lettered.
//   - Retry wraps it in the error it returns when the message's context ends
//     before the retries do (a shutdown, or a subscriber's ack deadline), so
//     that DeadLetter nacks instead of dead-lettering.
var ErrShutdown = errors.New("middleware: shutting down")

// IsShutdown reports whether ctx was cancelled because its transport is
// shutting down: ctx is done and its cause (context.Cause) wraps
// ErrShutdown. A plain cancel or a deadline is not a shutdown.
func IsShutdown(ctx context.Context) bool {
	return ctx.Err() != nil && errors.Is(context.Cause(ctx), ErrShutdown)
}

// Special values of RetryConfig's fields: -1 means "none".
const (
	// NoRetries, as RetryConfig.MaxRetries, turns immediate retries off.
	NoRetries = -1
	// NoJitter, as RetryConfig.Jitter, turns jitter off.
	NoJitter = -1
	// NoBackoff, as RetryConfig.Backoff, retries at once.
	NoBackoff time.Duration = -1
)

// Defaults of RetryConfig: Arc's withRetry.
const (
	DefaultMaxRetries = 3
	DefaultBackoff    = time.Second
	DefaultMaxBackoff = 30 * time.Second
	DefaultJitter     = 0.1
)

// Defaults of the waits during a transport outage (RetryConfig and
// DeadLetterConfig OutageBackoff and OutageMaxBackoff): the outbox relay's
// (outbox.DefaultOutageBackoffBase and Max), short enough to resume soon
// after the dependency is back, long enough not to hammer it meanwhile.
const (
	DefaultOutageBackoff    = 200 * time.Millisecond
	DefaultOutageMaxBackoff = 5 * time.Second
)

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

// RetryConfig configures Retry: Arc's withRetry, by default. Zero means
// the default, -1 (the No* constants) means none, and any other negative
// value is invalid.
type RetryConfig struct {
	// MaxRetries is how many immediate retries follow a failure (four calls
	// in all by default, as Arc's withRetry); NoRetries for none. Defaults
	// to DefaultMaxRetries.
	MaxRetries int
	// Backoff is the wait before the first retry; it doubles per retry up to
	// MaxBackoff. NoBackoff retries at once. Defaults to DefaultBackoff.
	Backoff time.Duration
	// MaxBackoff caps the doubled wait; at least Backoff. Ignored with
	// NoBackoff. Defaults to DefaultMaxBackoff.
	MaxBackoff time.Duration
	// Jitter adds up to this fraction of the wait, after the cap (Arc's
	// additive jitter: a wait lies in [d, d·(1+Jitter))); at most 1;
	// NoJitter for none. Defaults to DefaultJitter.
	Jitter float64
	// Unrecoverable reports errors no retry can fix, besides those wrapping
	// arc.ErrUnrecoverable; they skip the retries. Defaults to none.
	Unrecoverable func(error) bool
	// OnRetry is called before each wait after a counted failure.
	// Defaults to none.
	OnRetry func(RetryInfo)
	// TransportError reports a failure that is a transport's or a
	// dependency's outage, not the event's fault. Such a failure is no
	// attempt: Retry waits (OutageBackoff) and calls the handler again, for
	// as long as the message's context lives, and neither the retries nor
	// the attempts counted across deliveries (MetadataAttempts) move.
	// Defaults to IsTransportError.
	TransportError func(error) bool
	// OutageBackoff is the first wait after a transport failure; it doubles
	// per consecutive transport failure up to OutageMaxBackoff, plus Jitter.
	// Defaults to DefaultOutageBackoff.
	OutageBackoff time.Duration
	// OutageMaxBackoff caps the doubled wait; at least OutageBackoff.
	// Defaults to max(DefaultOutageMaxBackoff, OutageBackoff).
	OutageMaxBackoff time.Duration
	// OnOutage is called before each wait after a transport failure.
	// Defaults to none.
	OnOutage func(RetryInfo)
	// Logger receives a Debug line per retry, an Error line when a
	// transport failure starts a wait, Debug lines while it lasts, and an
	// Info line when the handler succeeds after it. Defaults to
	// watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

// RetryInfo describes a retry about to happen.
type RetryInfo struct {
	Message *message.Message
	// Attempt is the attempt that failed, from 1, counted across deliveries.
	// For a transport failure (OnOutage) it is the attempt that will be
	// made once the transport is back: the failure did not count.
	Attempt int
	Delay   time.Duration
	Err     error
	// Outage counts the consecutive transport failures of this delivery so
	// far, from 1; 0 for a counted failure (OnRetry).
	Outage int
}

func (c *RetryConfig) setDefaults() {
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.Backoff == 0 {
		c.Backoff = DefaultBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.Backoff)
	}
	if c.Jitter == 0 {
		c.Jitter = DefaultJitter
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
	if c.TransportError == nil {
		c.TransportError = IsTransportError
	}
	if c.OutageBackoff == 0 {
		c.OutageBackoff = DefaultOutageBackoff
	}
	if c.OutageMaxBackoff == 0 {
		c.OutageMaxBackoff = max(DefaultOutageMaxBackoff, c.OutageBackoff)
	}
}

// Validate applies the defaults to a copy of c and reports, field by field,
// a value that cannot work. Every error wraps ErrInvalidConfig.
func (c RetryConfig) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *RetryConfig) validate() error {
	switch {
	case c.MaxRetries < 0 && c.MaxRetries != NoRetries:
		return fmt.Errorf("%w: RetryConfig.MaxRetries must be positive, 0 (default) or NoRetries, got %d",
			ErrInvalidConfig, c.MaxRetries)
	case c.Backoff < 0 && c.Backoff != NoBackoff:
		return fmt.Errorf("%w: RetryConfig.Backoff must be positive, 0 (default) or NoBackoff, got %v",
			ErrInvalidConfig, c.Backoff)
	case c.MaxBackoff < 0:
		return fmt.Errorf("%w: RetryConfig.MaxBackoff must not be negative, got %v", ErrInvalidConfig, c.MaxBackoff)
	case c.Backoff > 0 && c.MaxBackoff < c.Backoff:
		return fmt.Errorf("%w: RetryConfig.MaxBackoff (%v) must be at least Backoff (%v)",
			ErrInvalidConfig, c.MaxBackoff, c.Backoff)
	case c.Jitter < 0 && c.Jitter != NoJitter:
		return fmt.Errorf("%w: RetryConfig.Jitter must be positive, 0 (default) or NoJitter, got %v",
			ErrInvalidConfig, c.Jitter)
	case c.Jitter > 1:
		return fmt.Errorf("%w: RetryConfig.Jitter must be at most 1, got %v", ErrInvalidConfig, c.Jitter)
	case c.OutageBackoff < 0:
		return fmt.Errorf("%w: RetryConfig.OutageBackoff must be positive or 0 (default), got %v",
			ErrInvalidConfig, c.OutageBackoff)
	case c.OutageMaxBackoff < c.OutageBackoff:
		return fmt.Errorf("%w: RetryConfig.OutageMaxBackoff (%v) must be at least OutageBackoff (%v)",
			ErrInvalidConfig, c.OutageMaxBackoff, c.OutageBackoff)
	}
	return nil
}

// Retry retries a failing handler in process, with Arc's backoff. Each
// attempt gets the message's original context back (so a Timeout inside
// does not leak into the next attempt). It does not dead-letter: it returns
// a *RetryError with the attempt history, which DeadLetter, outside it,
// records. A context that ends during a backoff returns ErrShutdown at once,
// and a failure while the transport shuts down (IsShutdown) is not counted
// as an attempt. A transport failure (RetryConfig.TransportError) is no
// attempt either: Retry waits with jittered backoff and calls the handler
// again until it succeeds, fails for the event's own reasons, or the
// message's context ends.
type Retry struct {
	cfg     RetryConfig
	retried atomic.Uint64
	outages atomic.Uint64
	// interrupted remembers the attempts of deliveries whose context ended
	// before the retries were spent (a shutdown, or a subscriber's ack
	// deadline), so that a redelivery to this process counts on instead of
	// starting over and looping for ever.
	interrupted *attemptMemory
}

// NewRetry returns a Retry.
func NewRetry(cfg RetryConfig) (*Retry, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Retry{cfg: cfg, interrupted: newAttemptMemory(10000)}, nil
}

// Retried counts the retries made so far after counted failures.
func (r *Retry) Retried() uint64 { return r.retried.Load() }

// OutageWaits counts the waits after transport failures so far: calls
// that failed because a transport or dependency was down, and cost no
// attempt.
func (r *Retry) OutageWaits() uint64 { return r.outages.Load() }

// OutageDelay returns the wait after the n-th consecutive transport
// failure (from 1): min(OutageBackoff·2^(n-1), OutageMaxBackoff), plus
// jitter.
func (r *Retry) OutageDelay(n int) time.Duration {
	return outageDelay(r.cfg.OutageBackoff, r.cfg.OutageMaxBackoff, r.cfg.Jitter, n)
}

func outageDelay(base, ceiling time.Duration, jitter float64, n int) time.Duration {
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	if jitter > 0 {
		d += time.Duration(jitter * float64(d) * rand.Float64())
	}
	return d
}

// Delay returns the wait before retry n (from 1): Arc's
// min(Backoff·2^(n-1), MaxBackoff), plus jitter.
func (r *Retry) Delay(n int) time.Duration {
	if r.cfg.Backoff == NoBackoff {
		return 0
	}
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
		outage := 0 // consecutive transport failures of this delivery
		for try := start; ; {
			msg.SetContext(ctx)
			out, err := h(msg)
			if err == nil {
				r.interrupted.forget(key)
				if outage > 0 {
					r.cfg.Logger.Info("Handler succeeded after a transport outage", watermill.LogFields{
						"message_uuid": msg.UUID, "outage_waits": outage})
				}
				return out, nil
			}
			if IsShutdown(ctx) {
				// The transport is closing: this failure is the shutdown's, not
				// the handler's, so it is no attempt. Nack; the next delivery
				// counts on from the attempts before it.
				if try > start {
					r.interrupted.put(key, attempts{prior + try - start, first, try})
				}
				return nil, fmt.Errorf("%w: %w (attempt not counted: %v)", ErrShutdown, context.Cause(ctx), err)
			}
			unrecoverable := r.unrecoverable(err)
			if !unrecoverable && r.cfg.TransportError(err) {
				// A dependency is down: no fault of the event. Wait and call
				// again, without counting, for as long as the delivery lives.
				outage++
				if !r.waitOutage(ctx, msg, err, prior+try-start+1, outage) {
					if try > start {
						r.interrupted.put(key, attempts{prior + try - start, first, try})
					}
					return nil, fmt.Errorf("%w: %w (transport failure, attempt not counted: %v)", ErrShutdown, context.Cause(ctx), err)
				}
				continue
			}
			outage = 0
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			attempt := prior + try - start + 1
			exhausted := unrecoverable || try >= max(r.cfg.MaxRetries, 0)
			if ctx.Err() != nil && (!exhausted || isContextErr(err)) {
				// The delivery ends before its retries do (ack deadline, or a
				// cancel without a shutdown cause): nack, and count on at the
				// next delivery.
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
			r.cfg.Logger.Debug("Retrying handler", watermill.LogFields{
				"message_uuid": msg.UUID, "attempt": attempt, "delay": delay.String(), "err": err.Error(),
			})
			r.retried.Add(1)
			try++
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				r.interrupted.put(key, attempts{attempt, first, try})
				return nil, fmt.Errorf("%w: %w (after %d attempt(s): %v)", ErrShutdown, ctx.Err(), attempt, err)
			}
		}
	}
}

// waitOutage waits after the n-th consecutive transport failure of a
// delivery, logging and counting it; false when ctx ended first. next is
// the attempt the next call will be.
func (r *Retry) waitOutage(ctx context.Context, msg *message.Message, err error, next, n int) bool {
	delay := r.OutageDelay(n)
	r.outages.Add(1)
	if r.cfg.OnOutage != nil {
		r.cfg.OnOutage(RetryInfo{Message: msg, Attempt: next, Delay: delay, Err: err, Outage: n})
	}
	fields := watermill.LogFields{"message_uuid": msg.UUID, "attempt": next, "outage_waits": n, "delay": delay.String()}
	if n == 1 {
		r.cfg.Logger.Error("Transport failure; waiting without counting an attempt", err, fields)
	} else {
		r.cfg.Logger.Debug("Transport still failing; waiting", fields.Add(watermill.LogFields{"err": err.Error()}))
	}
	return sleepCtx(ctx, delay)
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// memoryKey identifies one handler's delivery of one message.
func memoryKey(msg *message.Message) string { return memoryKeyIn(msg.Context(), msg.UUID) }

// memoryKeyIn is memoryKey for a message whose context was ctx.
func memoryKeyIn(ctx context.Context, uuid string) string {
	if info, ok := wildcard.InfoFromContext(ctx); ok {
		return uuid + "\x00" + info.Handler
	}
	return uuid + "\x00" + message.HandlerNameFromCtx(ctx)
}

func (r *Retry) unrecoverable(err error) bool {
	return errors.Is(err, arc.ErrUnrecoverable) || errors.Is(err, ErrValidation) ||
		errors.Is(err, arc.ErrMalformedEvent) || r.cfg.Unrecoverable != nil && r.cfg.Unrecoverable(err)
}
