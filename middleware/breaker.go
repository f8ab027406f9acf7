package middleware

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Breaker is a kill switch for one subscription (or one handler): when too
// many of the handler's calls fail within a window, it stops the
// subscription taking messages instead of burning every message's attempts
// and dead-lettering them during a downstream outage. MassTransit's kill
// switch, with the failing messages held rather than faulted.
//
// It has two parts, which share its state:
//
//   - Middleware observes each call of the handler and gates the next:
//     while the breaker is open a message in hand waits (blocks, with its
//     context) rather than running; a message that fails while the breaker
//     is open, or whose failure trips it, is held and runs again after the
//     probe, so that it costs no attempt and is never dead-lettered (a
//     poison event excepted: see ProbeAttempts below). It is never nacked: a nacking breaker is a hot redelivery loop (Watermill's
//     CircuitBreaker with redisstream's NackResendSleep).
//   - Subscriber wraps the subscription's message.Subscriber so that it
//     hands out no new message while the breaker is open: intake pauses,
//     and the broker keeps the backlog. Without it the router still takes
//     up to its in-flight bound (wildcard.Config.Workers, the redisstream
//     Subscriber's MaxInFlight), and those messages wait in Middleware.
//
// States: closed (messages flow, outcomes are counted in a sliding window
// of BreakerConfig.Window); open, when the failure rate reaches Threshold
// with at least MinRequests outcomes (nothing runs, for CoolDown); then
// half-open: one message, the probe, runs. Its success closes the breaker
// (with a fresh window); its failure opens it for another CoolDown.
//
// Which failures count is BreakerConfig.Counts (DefaultBreakerCounts): the
// handler's failures, its dependencies' outages included, but neither the
// event's own unrecoverable faults nor a shutdown; the subscription's own
// broker never reaches the breaker.
//
// With BreakerConfig.Redis the state is shared by every instance of the
// same Name, so a fleet trips together; see BreakerConfig.Redis.
//
// Only failures while the breaker is open are held. Those before the trip
// are ordinary failures, returned: Retry counts them as attempts and
// DeadLetter may dead-letter a message whose attempts run out before the
// window holds MinRequests outcomes (a quiet subscription at the start of
// an outage). A dependency's outage reported as a transport failure
// (IsTransportError, Transient) costs no attempt there either: Retry
// waits instead.
//
// The probe goes to whichever waiting message asks first, but a message
// whose probe failed leaves the next one to another waiting message, if
// any. A poison event (a fault of that one event that Counts counts, e.g.
// a handler bug or an HTTP 400, which can trip the breaker on its own
// attempts at low traffic) is not held for good: a held message that
// fails BreakerConfig.ProbeAttempts probes in a row (3 by default) is
// returned, its failure taken for its own, while the breaker stays open
// for the others; Retry counts an attempt, the message comes back to the
// gate, and each further failed probe in the same row returns it at once,
// until DeadLetter takes it. The row is broken, and no message returned,
// by the evidence of an outage: another message's failed probe, a
// transport failure, the breaker closing. With shared state another
// instance's failed probe breaks it only when this process sees the
// re-open (sync), which it may miss. So during an outage with several messages in hand
// (their probes alternate) or reported as transport failures, no attempt
// is burnt and nothing is dead-lettered, however long it lasts. An outage
// reported as ordinary errors with one message alone in hand (Workers 1,
// or its key's turn) cannot be told from a poison event: its message is
// returned, an attempt per cool-down after the first ProbeAttempts; mark
// such errors Transient, or set ProbeAttempts to NoProbeLimit to hold
// every message until a probe succeeds. A returned message is logged at
// Error and counted in BreakerStats.Returned.
//
// A Breaker starts no goroutine of its own; Subscriber starts one per
// subscription, which ends with the subscription.
type Breaker struct {
	cfg    BreakerConfig
	shared *sharedBreaker // nil without BreakerConfig.Redis

	mu       sync.Mutex
	state    BreakerState
	since    time.Time // when state was entered; zero before any transition
	openedAt time.Time // when the breaker last opened, by cfg.Now
	win      *window
	probing  bool          // a probe of this process runs
	token    string        // the running probe's token in the shared state
	changed  chan struct{} // closed and replaced at each transition
	waiting  int           // messages waiting in the gate now
	paused   int           // subscriptions whose intake waits now
	pending  []func()      // OnStateChange calls queued under mu, run by unlock
	lastErr  error         // the counted failure that last tripped or re-opened it
	suspect  suspect       // the message whose failed probes make the current row

	// sharedErr is the shared state's last error, nil while it answers;
	// lastSync is when it was last read.
	sharedErr error
	lastSync  time.Time
	// unsentOK and unsentBad are outcomes not yet added to the shared
	// window; lastFlush is when they last were.
	unsentOK, unsentBad int
	lastFlush           time.Time

	opened, halfOpened, closed uint64
	held, probes, probeFails   uint64
	returned                   uint64
	failures, successes        uint64
}

// NewBreaker returns a closed Breaker.
func NewBreaker(cfg BreakerConfig) (*Breaker, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := &Breaker{cfg: cfg, win: newWindow(cfg.Window, cfg.Buckets), changed: make(chan struct{})}
	if cfg.Redis != nil {
		b.shared = newSharedBreaker(cfg)
	}
	return b, nil
}

// Name returns BreakerConfig.Name.
func (b *Breaker) Name() string { return b.cfg.Name }

// BreakerStats is a breaker's state and counters, for health checks,
// metrics and the console.
type BreakerStats struct {
	// Name is BreakerConfig.Name.
	Name string
	// State is the breaker's state as this process sees it.
	State BreakerState
	// Since is when the breaker entered State; zero while it has been
	// closed since NewBreaker.
	Since time.Time
	// OpenUntil is when an open breaker lets its probe through, by this
	// process's clock; zero when it is not open. With shared state another
	// instance may have opened it: OpenUntil is then when this process saw
	// it open plus CoolDown, an upper bound.
	OpenUntil time.Time
	// LastError is the failure that last tripped or re-opened the breaker.
	LastError error
	// WindowSuccesses and WindowFailures are the outcomes counted in this
	// process's window now.
	WindowSuccesses, WindowFailures int
	// Successes and Failures count the outcomes this process recorded:
	// calls that succeeded, and failures that BreakerConfig.Counts counts.
	Successes, Failures uint64
	// Opened, HalfOpened and Closed count the transitions into each state.
	Opened, HalfOpened, Closed uint64
	// Held counts the failures held instead of returned: the message
	// waited for the breaker and ran again, no attempt counted.
	Held uint64
	// Returned counts the held messages whose failure was returned after
	// they failed BreakerConfig.ProbeAttempts probes in a row (a poison
	// event, not an outage): each an attempt for Retry.
	Returned uint64
	// Waiting is how many messages wait in the gate now.
	Waiting int
	// Paused is how many subscriptions (Subscriber) hold back their next
	// message now.
	Paused int
	// Probes and ProbeFailures count the probes this process ran, and
	// those that failed.
	Probes, ProbeFailures uint64
	// Shared says the state is shared through Redis; SharedError is the
	// last error of the shared state, nil while Redis answers (the breaker
	// then runs on its local state).
	Shared      bool
	SharedError error
}

// Healthy reports whether the breaker is closed.
func (s BreakerStats) Healthy() bool { return s.State == BreakerClosed }

// State returns the breaker's state as this process sees it.
func (b *Breaker) State() BreakerState {
	b.mu.Lock()
	defer b.unlock()
	b.expire(b.cfg.Now())
	return b.state
}

// Stats returns the breaker's state and counters.
func (b *Breaker) Stats() BreakerStats {
	b.mu.Lock()
	defer b.unlock()
	now := b.cfg.Now()
	b.expire(now)
	ok, bad := b.win.sum(now)
	st := BreakerStats{Name: b.cfg.Name, State: b.state, Since: b.since, LastError: b.lastErr,
		WindowSuccesses: ok, WindowFailures: bad, Successes: b.successes, Failures: b.failures,
		Opened: b.opened, HalfOpened: b.halfOpened, Closed: b.closed, Held: b.held, Returned: b.returned, Waiting: b.waiting, Paused: b.paused,
		Probes: b.probes, ProbeFailures: b.probeFails, Shared: b.shared != nil, SharedError: b.sharedErr}
	if b.state == BreakerOpen {
		st.OpenUntil = b.openedAt.Add(b.cfg.CoolDown)
	}
	return st
}

// Health returns nil while the breaker is closed, and otherwise an error
// wrapping ErrBreakerOpen that names it, its state and the failure that
// tripped it: a health check hook.
func (b *Breaker) Health(context.Context) error {
	st := b.Stats()
	if st.Healthy() {
		return nil
	}
	if st.LastError != nil {
		return fmt.Errorf("%w: %q is %s since %s after: %v", ErrBreakerOpen, st.Name, st.State,
			st.Since.UTC().Format(time.RFC3339), st.LastError)
	}
	return fmt.Errorf("%w: %q is %s since %s", ErrBreakerOpen, st.Name, st.State, st.Since.UTC().Format(time.RFC3339))
}

// Middleware is the message.HandlerMiddleware that observes and gates the
// handler (see Breaker). In a Stack it sits inside Retry, so it sees
// every attempt, and outside Timeout and Recoverer, so that a timed-out or
// panicking attempt is a failure it counts.
func (b *Breaker) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx := msg.Context()
		defer msg.SetContext(ctx)
		id := suspectID(msg)
		yield := b.isSuspect(id) // back from Retry after its failure was returned
		for {
			probe, err := b.admit(ctx, yield)
			if err != nil {
				return nil, err
			}
			msg.SetContext(ctx)
			out, err := b.call(h, msg, probe)
			if err == nil || !b.cfg.Counts(err) || IsShutdown(ctx) {
				return out, err
			}
			if b.State() == BreakerClosed {
				return out, err // an ordinary failure: Retry and DeadLetter deal with it
			}
			if probe && b.probeFailed(id, err) {
				// Its probes keep failing, and no other message's did
				// meanwhile: the event's own fault, not an outage. The
				// breaker stays open for the others.
				b.cfg.Logger.Error("Circuit breaker: a held message failed its probes in a row; returning its failure as the event's own",
					err, watermill.LogFields{"breaker": b.cfg.Name, "message_uuid": msg.UUID,
						"probe_attempts": b.cfg.ProbeAttempts})
				return out, err
			}
			// The breaker is open (this failure may have tripped it): the
			// failure is the outage's, not the event's. Hold the message
			// and run it again once the breaker lets it through.
			yield = probe
			b.mu.Lock()
			b.held++
			b.mu.Unlock()
			b.cfg.Logger.Debug("Circuit breaker open; holding the failed message", watermill.LogFields{
				"breaker": b.cfg.Name, "message_uuid": msg.UUID, "err": err.Error()})
		}
	}
}

// call runs h once and records its outcome; a panic (with no Recoverer
// inside) is recorded as a failure, so that a probe slot is never lost.
func (b *Breaker) call(h message.HandlerFunc, msg *message.Message, probe bool) (out []*message.Message, err error) {
	ctx := msg.Context()
	recorded := false
	defer func() {
		if !recorded {
			b.record(ctx, probe, fmt.Errorf("handler panicked"))
		}
	}()
	out, err = h(msg)
	recorded = true
	switch {
	case err == nil:
		b.record(ctx, probe, nil)
	case IsShutdown(ctx) || !b.cfg.Counts(err):
		if probe {
			b.releaseProbe(ctx) // neither success nor failure: the next waiter probes
		}
	default:
		b.record(ctx, probe, err)
	}
	return out, err
}

// admit returns when a call may run: at once while the breaker is closed;
// as the probe (probe true) when it is half-open and the probe slot is
// free; otherwise after waiting for one of those, or with an error
// wrapping ErrBreakerOpen and ctx's error when ctx ends first. yield is
// set for a message whose probe just failed: at the next half-open it
// leaves the probe to another waiting message, if there is one, so that a
// message failing on its own fault cannot hold every probe.
func (b *Breaker) admit(ctx context.Context, yield bool) (probe bool, err error) {
	counted := false // in Waiting
	defer func() {
		if counted {
			b.mu.Lock()
			b.waiting--
			b.unlock()
		}
	}()
	for {
		st := b.sync(ctx)
		if st == BreakerClosed {
			return false, nil
		}
		if !counted {
			counted = true
			b.mu.Lock()
			b.waiting++
			b.unlock()
		}
		if st == BreakerHalfOpen {
			if yield && b.othersWaiting() {
				yield = false // once: the others have had their turn
			} else if b.takeProbe(ctx) {
				return true, nil
			}
		}
		if err := b.wait(ctx, true); err != nil {
			return false, err
		}
	}
}

// othersWaiting reports whether another message than the caller waits in
// admit.
func (b *Breaker) othersWaiting() bool {
	b.mu.Lock()
	defer b.unlock()
	return b.waiting > 1
}

// wait waits for a transition in this process, the end of the cool-down,
// or SyncInterval; an error when ctx ends first. gate says the caller is a
// message in hand (counted in Waiting by admit), not a paused subscription
// (counted in Paused here).
func (b *Breaker) wait(ctx context.Context, gate bool) error {
	b.mu.Lock()
	ch := b.changed
	d := b.cfg.SyncInterval
	if b.state == BreakerOpen {
		if left := b.openedAt.Add(b.cfg.CoolDown).Sub(b.cfg.Now()); left < d {
			d = max(left, time.Millisecond)
		}
	}
	if !gate {
		b.paused++
	}
	b.mu.Unlock()
	if !gate {
		defer func() {
			b.mu.Lock()
			b.paused--
			b.mu.Unlock()
		}()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ch:
	case <-timer.C:
	case <-ctx.Done():
		return fmt.Errorf("%w: %q: %w (%v)", ErrBreakerOpen, b.cfg.Name, ctx.Err(), context.Cause(ctx))
	}
	return nil
}

// expire moves an open breaker whose cool-down has passed to half-open.
// Local state only: with shared state, sync reads Redis's. Called with
// b.mu held.
func (b *Breaker) expire(now time.Time) {
	if b.state == BreakerOpen && !now.Before(b.openedAt.Add(b.cfg.CoolDown)) && (b.shared == nil || b.sharedErr != nil) {
		b.transition(BreakerHalfOpen, now, nil)
	}
}

// transition moves the breaker to state to, logging it and waking the
// waiters; nothing when it is there already. Called with b.mu held; the
// OnStateChange hook is queued for unlock to run.
func (b *Breaker) transition(to BreakerState, now time.Time, cause error) {
	from := b.state
	if from == to {
		return
	}
	b.state, b.since = to, now
	close(b.changed)
	b.changed = make(chan struct{})
	fields := watermill.LogFields{"breaker": b.cfg.Name, "from": from.String(), "to": to.String()}
	switch to {
	case BreakerOpen:
		b.opened++
		b.openedAt = now
		if cause != nil {
			b.lastErr = cause
			fields["err"] = cause.Error()
		}
		fields["cool_down"] = b.cfg.CoolDown.String()
		// Watermill's logger has no Warn level; an open breaker is an outage
		// someone must look at, as a dead letter is.
		b.cfg.Logger.Error("Circuit breaker open: the subscription takes no message until a probe succeeds", cause, fields)
	case BreakerHalfOpen:
		b.halfOpened++
		b.cfg.Logger.Info("Circuit breaker half-open: one probe message may run", fields)
	case BreakerClosed:
		b.closed++
		b.win.reset()
		b.unsentOK, b.unsentBad = 0, 0
		b.cfg.Logger.Info("Circuit breaker closed: the subscription takes messages again", fields)
	}
	if b.cfg.OnStateChange != nil {
		hook := b.cfg.OnStateChange
		b.pending = append(b.pending, func() { hook(from, to) })
	}
}
