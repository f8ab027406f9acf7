package outbox

import (
	"context"
	"errors"
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

// Backoff is Arc's exponentialBackoff: base·2^(attempt−1), capped at Max,
// then plus up to Jitter of itself (jitter only adds, after the cap, as in
// Arc).
//
// Backoff has no error path: Delay treats a negative Base or Max as the
// default and clamps Jitter to [0, 1].
type Backoff struct {
	// Base is the first delay. Defaults to DefaultBackoffBase.
	Base time.Duration
	// Max caps the delay before jitter. Defaults to DefaultBackoffMax.
	Max time.Duration
	// Jitter is the fraction added at random, clamped to [0, 1]; NoJitter
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

// Delay returns the wait before retry number attempt (1-based; less than 1
// counts as 1).
func (b Backoff) Delay(attempt int) time.Duration {
	base, max, jitter := b.Base, b.Max, b.Jitter
	if base <= 0 {
		base = DefaultBackoffBase
	}
	if max <= 0 {
		max = DefaultBackoffMax
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
// An error wrapping arc.ErrUnrecoverable (an event the broker will never
// take, such as one over its size limit) is dead-lettered at once. It is
// the relay's default with maxAttempts DefaultMaxAttempts and Arc's
// defaults for b.
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
