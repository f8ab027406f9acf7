package middleware

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
)

// Defaults of BreakerConfig: MassTransit's kill switch (TripThreshold 15,
// ActivationThreshold 10, TrackingPeriod 1 min, RestartTimeout 1 min).
const (
	// DefaultBreakerThreshold is the failure rate that trips the breaker:
	// 0.15, 15 % of the outcomes in the window.
	DefaultBreakerThreshold = 0.15
	// DefaultBreakerMinRequests is how many outcomes the window must hold
	// before the rate is judged: 10.
	DefaultBreakerMinRequests = 10
	// DefaultBreakerWindow is how far back outcomes count: 1 minute.
	DefaultBreakerWindow = time.Minute
	// DefaultBreakerCoolDown is how long the breaker stays open before it
	// lets one probe through: 1 minute.
	DefaultBreakerCoolDown = time.Minute
	// DefaultBreakerBuckets is how many slices the window is counted in:
	// the window slides by Window/10.
	DefaultBreakerBuckets = 10
	// DefaultBreakerSyncInterval is how often a held message, and a paused
	// subscription, look at the state again (and at Redis's, when shared),
	// besides being woken by a local change: 1 s.
	DefaultBreakerSyncInterval = time.Second
	// DefaultBreakerKeyPrefix prefixes the shared state's Redis keys.
	DefaultBreakerKeyPrefix = "arcmill:breaker:"
	// DefaultBreakerProbeAttempts is how many probes in a row one held
	// message may fail, with no other message's probe failing in between,
	// before its failure is taken for its own and returned (see
	// BreakerConfig.ProbeAttempts): 3.
	DefaultBreakerProbeAttempts = 3
)

// NoProbeLimit, as BreakerConfig.ProbeAttempts, holds a message that fails
// its probes until one succeeds, however many it fails: one event failing
// on its own fault then holds the subscription until it is fixed.
const NoProbeLimit = -1

// BreakerState is a breaker's state.
type BreakerState int

// The states of a breaker.
const (
	// BreakerClosed: messages flow; outcomes are counted in the window.
	BreakerClosed BreakerState = iota
	// BreakerOpen: the subscription takes nothing, and messages in hand
	// wait, until CoolDown has passed.
	BreakerOpen
	// BreakerHalfOpen: the cool-down has passed; one probe message runs
	// while the others wait. Its success closes the breaker, its failure
	// opens it again for another CoolDown.
	BreakerHalfOpen
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("BreakerState(%d)", int(s))
}

// ErrBreakerOpen is wrapped by the error a breaker returns when a message's
// context ends while the message waits for the breaker to close or to let
// it through as the probe. It also wraps the context's error, so Retry and
// DeadLetter nack the message (no attempt counted, nothing dead-lettered).
var ErrBreakerOpen = errors.New("middleware: circuit breaker open")

// BreakerConfig configures a Breaker (NewBreaker). Zero means the default;
// negative values are invalid.
type BreakerConfig struct {
	// Name identifies the breaker in logs, metrics (label handler), the
	// console and its Redis keys: name it after the subscription or handler
	// it guards, e.g. "billing/charge" (consumer group / handler). Every
	// instance of one service gives the same name, so that they share
	// state through Redis. Required.
	Name string
	// Threshold is the failure rate, in (0, 1], at or above which the
	// breaker trips, once the window holds MinRequests outcomes. Defaults
	// to DefaultBreakerThreshold.
	Threshold float64
	// MinRequests is how many outcomes (successes and counted failures)
	// the window must hold before Threshold is judged, so that a quiet
	// subscription does not trip on one failure. Defaults to
	// DefaultBreakerMinRequests.
	MinRequests int
	// Window is how far back outcomes are counted (a sliding window, in
	// Buckets slices). Defaults to DefaultBreakerWindow.
	Window time.Duration
	// Buckets is how many slices Window is counted in; the window slides by
	// Window/Buckets. Defaults to DefaultBreakerBuckets.
	Buckets int
	// CoolDown is how long the breaker stays open before it lets one probe
	// message through (MassTransit's RestartTimeout). A probe that fails
	// opens it for another CoolDown. Defaults to DefaultBreakerCoolDown.
	CoolDown time.Duration
	// Counts reports whether a handler's failure counts against the
	// breaker; a failure it does not count is returned as it is (to Retry
	// and DeadLetter), and is no success either. Defaults to
	// DefaultBreakerCounts: every failure of the handler, its dependencies'
	// outages (IsTransportError) included, but not the event's own
	// unrecoverable faults nor a shutdown.
	Counts func(error) bool
	// ProbeAttempts is how many probes in a row one held message may fail
	// before the breaker takes the failure for the event's own (a poison
	// event, not an outage) and returns it, while it stays open for the
	// others: Retry then counts an attempt and DeadLetter eventually takes
	// the message. The row is broken, and the count starts again, by any
	// other message's failed probe seen by this process, by the breaker
	// closing, and by a failure that IsTransportError (a dependency out of
	// reach is an outage, never the event's fault): during an outage every
	// message fails, so no message's row grows while others wait, and a
	// transport failure is never returned. Once returned, the message's
	// next failed probe in the same row returns it at once (one attempt per
	// cool-down). NoProbeLimit holds it until a probe succeeds. Defaults
	// to DefaultBreakerProbeAttempts.
	ProbeAttempts int
	// SyncInterval is how often a held message and a paused subscription
	// look at the state again, besides being woken by a change in this
	// process; with Redis, also how often the shared state is read, and the
	// longest a success waits before it is counted there. Defaults to
	// DefaultBreakerSyncInterval.
	SyncInterval time.Duration

	// Redis, when set, shares the breaker's state across every instance
	// that gives the same Name: the window's counts, the open state (a key
	// whose TTL is CoolDown) and the one probe of the whole fleet (SET NX),
	// so a fleet trips, probes and closes together. When Redis cannot be
	// reached the breaker goes on with its local state (Warn log), and
	// takes up the shared state again once Redis answers. Defaults to nil:
	// the state is this process's own.
	Redis redis.UniversalClient
	// KeyPrefix prefixes the shared state's keys; they are
	// KeyPrefix + "{" + Name + "}:" + part, one hash slot per breaker.
	// Defaults to DefaultBreakerKeyPrefix.
	KeyPrefix string
	// ProbeLease is how long the fleet's probe slot is held in Redis, so
	// that a probe whose process died is replaced after it. Defaults to
	// CoolDown.
	ProbeLease time.Duration
	// CommandTimeout bounds each Redis call of the shared state. Defaults
	// to 2 s.
	CommandTimeout time.Duration

	// OnStateChange is called after each transition this process sees,
	// outside the breaker's lock. Defaults to nil.
	OnStateChange func(from, to BreakerState)
	// Logger receives a Warn line when the breaker opens (and when its
	// shared state cannot be reached), and Info lines when it goes half-open
	// and when it closes. Defaults to watermill.NopLogger.
	Logger watermill.LoggerAdapter
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// DefaultBreakerCounts is BreakerConfig.Counts' default. It counts every
// failure the handler returns, and so its own dependencies' outages: a
// database or a Redis of the handler's that is down (IsTransportError)
// is exactly the downstream outage a kill switch is for. It does not
// count:
//   - the event's own faults, which no wait can fix and which must reach
//     DeadLetter at once: errors wrapping arc.ErrUnrecoverable,
//     arc.ErrMalformedEvent or ErrValidation;
//   - a shutdown: errors wrapping ErrShutdown (a closing transport or
//     publisher, Retry's "the delivery ended") or context.Canceled (the
//     message's context cancelled under the handler). An attempt's own
//     deadline (context.DeadlineExceeded, StackConfig.Timeout) counts: a
//     dependency that hangs is down too.
//
// The subscription's own broker never reaches it: a failed read, ack or
// claim happens in the subscriber, not in the handler, so a broker outage
// leaves the window without outcomes, never with failures.
func DefaultBreakerCounts(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, arc.ErrUnrecoverable), errors.Is(err, arc.ErrMalformedEvent), errors.Is(err, ErrValidation),
		errors.Is(err, ErrShutdown), errors.Is(err, ErrBreakerOpen), errors.Is(err, context.Canceled):
		return false
	}
	return true
}

func (c *BreakerConfig) setDefaults() {
	if c.Threshold == 0 {
		c.Threshold = DefaultBreakerThreshold
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultBreakerMinRequests
	}
	if c.Window == 0 {
		c.Window = DefaultBreakerWindow
	}
	if c.Buckets == 0 {
		c.Buckets = DefaultBreakerBuckets
	}
	if c.CoolDown == 0 {
		c.CoolDown = DefaultBreakerCoolDown
	}
	if c.Counts == nil {
		c.Counts = DefaultBreakerCounts
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = DefaultBreakerSyncInterval
	}
	if c.ProbeAttempts == 0 {
		c.ProbeAttempts = DefaultBreakerProbeAttempts
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultBreakerKeyPrefix
	}
	if c.ProbeLease == 0 {
		c.ProbeLease = c.CoolDown
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate applies the defaults to a copy of c and reports, field by field,
// a value that cannot work. Every error wraps ErrInvalidConfig.
func (c BreakerConfig) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *BreakerConfig) validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: BreakerConfig.%s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Name == "":
		return bad("Name", "is required")
	case !(c.Threshold > 0 && c.Threshold <= 1):
		return bad("Threshold", "must be in (0, 1], got %v", c.Threshold)
	case c.MinRequests < 0:
		return bad("MinRequests", "must not be negative, got %d", c.MinRequests)
	case c.Window < 0:
		return bad("Window", "must not be negative, got %v", c.Window)
	case c.Buckets < 0:
		return bad("Buckets", "must not be negative, got %d", c.Buckets)
	case c.Window/time.Duration(c.Buckets) < time.Millisecond:
		return bad("Buckets", "(%d) slices Window (%v) finer than 1 ms", c.Buckets, c.Window)
	case c.CoolDown < 0:
		return bad("CoolDown", "must not be negative, got %v", c.CoolDown)
	case c.ProbeAttempts < NoProbeLimit:
		return bad("ProbeAttempts", "must be positive, or NoProbeLimit, got %d", c.ProbeAttempts)
	case c.SyncInterval < 0:
		return bad("SyncInterval", "must not be negative, got %v", c.SyncInterval)
	case c.ProbeLease < 0:
		return bad("ProbeLease", "must not be negative, got %v", c.ProbeLease)
	case c.CommandTimeout < 0:
		return bad("CommandTimeout", "must not be negative, got %v", c.CommandTimeout)
	}
	return nil
}
