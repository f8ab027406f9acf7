package outbox

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
)

// Failure is what a FailurePolicy decides on: Arc's OutboxFailureContext.
type Failure struct {
	// Message is the row's message (UUID = meta.id).
	Message *message.Message
	// Topic is the row's destination topic.
	Topic string
	// Err is the publish error.
	Err error
	// Attempts counts failed publishes of this row, this one included. It
	// is stored in the table, so it survives restarts and is shared by
	// every relay (Arc keeps it in one process's memory).
	Attempts int
	// At is the relay's clock at the failure (Config.Now).
	At time.Time
}

// Decision is Arc's OutboxFailureDecision: dead-letter the row, or retry
// it at RetryAt (zero: at once).
type Decision struct {
	RetryAt    time.Time
	DeadLetter bool
}

// FailurePolicy decides what becomes of a row whose publish failed. A
// failing row waits alone: other rows keep flowing.
type FailurePolicy func(ctx context.Context, f Failure) Decision

// Backoff is the one shape of every growing wait in the outbox: Arc's
// exponentialBackoff, base·2^(attempt−1), capped at Max, then plus up to
// Jitter of itself (jitter only adds, after the cap, as in Arc). A relay
// uses it twice: RelayConfig.RetryBackoff spaces the retries of an
// event that failed (through the default FailurePolicy,
// ExponentialBackoff), and RelayConfig.OutageBackoff spaces the passes
// while the broker's transport or the database fails.
//
// Zero fields take defaults, which depend on the use: DefaultBackoffBase
// and DefaultBackoffMax standing alone and for RetryBackoff,
// DefaultOutageBackoffBase and DefaultOutageBackoffMax for
// OutageBackoff. Validate reports values that cannot work; RelayConfig's
// Validate runs it on both fields. Delay never fails: it treats a
// negative Base or Max as the default and clamps Jitter to [0, 1].
type Backoff struct {
	// Base is the first delay; not negative. Defaults to
	// DefaultBackoffBase (DefaultOutageBackoffBase as OutageBackoff).
	Base time.Duration
	// Max caps the delay before jitter; not negative, and not shorter
	// than Base. Defaults to DefaultBackoffMax (DefaultOutageBackoffMax as
	// OutageBackoff), or Base when that is longer.
	Max time.Duration
	// Jitter is the fraction added at random, within [0, 1]; NoJitter
	// adds none. Defaults to DefaultBackoffJitter.
	Jitter float64
}

// Arc's exponentialBackoff defaults, used for Backoff's zero fields.
const (
	DefaultBackoffBase   = time.Second
	DefaultBackoffMax    = time.Minute
	DefaultBackoffJitter = 0.2
)

// NoJitter as Backoff.Jitter disables jitter.
const NoJitter = -1

// Validate reports a Backoff that cannot work, naming the field; every
// error wraps ErrInvalidConfig. Zero fields are valid (they take the
// defaults).
func (b Backoff) Validate() error { return b.validate("Backoff") }

// validate is Validate with the fields named as name.Base and so on.
func (b Backoff) validate(name string) error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+name+"."+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case b.Base < 0:
		return invalid("Base (%s) must not be negative", b.Base)
	case b.Max < 0:
		return invalid("Max (%s) must not be negative", b.Max)
	case b.Max > 0 && b.Max < b.Base:
		return invalid("Max (%s) must not be shorter than %s.Base (%s)", b.Max, name, b.Base)
	case b.Jitter != NoJitter && (b.Jitter < 0 || b.Jitter > 1):
		return invalid("Jitter (%g) must be within [0, 1] or NoJitter", b.Jitter)
	}
	return nil
}

// withDefaults fills the zero Base and Max with base and max (Max is at
// least Base).
func (b Backoff) withDefaults(base, maxDefault time.Duration) Backoff {
	if b.Base == 0 {
		b.Base = base
	}
	if b.Max == 0 {
		b.Max = max(maxDefault, b.Base)
	}
	return b
}

// Delay returns the wait before retry number attempt (1-based; less than 1
// counts as 1).
func (b Backoff) Delay(attempt int) time.Duration {
	base, max, jitter := b.Base, b.Max, b.Jitter
	if base <= 0 {
		base = DefaultBackoffBase
	}
	if max <= 0 {
		max = DefaultBackoffMax
		if base > max {
			max = base
		}
	}
	switch {
	case jitter == NoJitter:
		jitter = 0
	case jitter == 0:
		jitter = DefaultBackoffJitter
	}
	jitter = math.Min(math.Max(jitter, 0), 1)
	if attempt < 1 {
		attempt = 1
	}
	d := max
	if attempt <= 62 {
		if v := float64(base) * math.Exp2(float64(attempt-1)); v < float64(max) {
			d = time.Duration(v)
		}
	}
	if jitter > 0 {
		d += time.Duration(float64(d) * jitter * rand.Float64())
	}
	return d
}

// ExponentialBackoff is Arc's documented policy: dead-letter after
// maxAttempts failures (0: never), otherwise retry after b.Delay(attempts).
// It has no error to return: check b with Backoff.Validate (RelayConfig's
// MaxAttempts and RetryBackoff build this policy, validated).
// An error wrapping arc.ErrUnrecoverable (an event the broker will never
// take, such as one over its size limit) is dead-lettered at once. It is
// the relay's default, with RelayConfig.MaxAttempts and RetryBackoff.
func ExponentialBackoff(maxAttempts int, b Backoff) FailurePolicy {
	return func(_ context.Context, f Failure) Decision {
		if errors.Is(f.Err, arc.ErrUnrecoverable) || (maxAttempts > 0 && f.Attempts >= maxAttempts) {
			return Decision{DeadLetter: true}
		}
		at := f.At
		if at.IsZero() {
			at = time.Now()
		}
		return Decision{RetryAt: at.Add(b.Delay(f.Attempts))}
	}
}
