package middleware

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/google/uuid"
)

// This file holds the Breaker's state machine: outcomes, the probe slot,
// and the shared state's part in them. While the shared state answers it
// decides every transition, and this process follows it; while it does
// not, the local window and timers decide (and carry on from the state last
// seen in Redis).

// unlock releases b.mu and runs the OnStateChange calls queued under it.
func (b *Breaker) unlock() {
	hooks := b.pending
	b.pending = nil
	b.mu.Unlock()
	for _, h := range hooks {
		h()
	}
}

// local reports whether the local state decides: no shared state, or one
// that does not answer. Called with b.mu held.
func (b *Breaker) local() bool { return b.shared == nil || b.sharedErr != nil }

// wake wakes the waiters without a transition (the probe slot is free).
// Called with b.mu held.
func (b *Breaker) wake() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// sharedFailed records an error of the shared state: from now on the local
// state decides, until Redis answers again.
func (b *Breaker) sharedFailed(err error) {
	b.mu.Lock()
	defer b.unlock()
	if b.sharedErr == nil {
		b.cfg.Logger.Error("Circuit breaker's shared state unreachable; going on with the local state", err,
			watermill.LogFields{"breaker": b.cfg.Name})
	}
	b.sharedErr = err
}

// sharedOK records an answer of the shared state and applies its state.
// Called with b.mu held.
func (b *Breaker) sharedOK(st BreakerState, now time.Time, cause error) {
	if b.sharedErr != nil {
		b.cfg.Logger.Info("Circuit breaker's shared state reachable again", watermill.LogFields{"breaker": b.cfg.Name})
		b.sharedErr = nil
	}
	b.transition(st, now, cause)
}

// sync returns the state, after reading the shared state if SyncInterval
// has passed since it was last read, and after moving an open local
// breaker whose cool-down is over to half-open.
func (b *Breaker) sync(ctx context.Context) BreakerState {
	b.mu.Lock()
	now := b.cfg.Now()
	if b.shared == nil || now.Sub(b.lastSync) < b.cfg.SyncInterval {
		b.expire(now)
		st := b.state
		b.unlock()
		return st
	}
	b.lastSync = now // one reader at a time: the others use the state as it is
	b.unlock()
	st, err := b.shared.read(ctx)
	if err != nil {
		b.sharedFailed(err)
	}
	b.mu.Lock()
	defer b.unlock()
	if err == nil {
		b.sharedOK(st, now, nil)
	}
	b.expire(now)
	return b.state
}

// takeProbe takes the probe slot of a half-open breaker: this process's
// one, and with shared state the fleet's one.
func (b *Breaker) takeProbe(ctx context.Context) bool {
	b.mu.Lock()
	b.expire(b.cfg.Now())
	if b.probing || b.state != BreakerHalfOpen {
		b.unlock()
		return false
	}
	b.probing = true
	useShared := b.shared != nil
	b.unlock()
	if useShared {
		token := uuid.NewString()
		st, got, err := b.shared.takeProbe(ctx, token)
		if err == nil {
			b.mu.Lock()
			defer b.unlock()
			b.sharedOK(st, b.cfg.Now(), nil)
			if !got || b.state != BreakerHalfOpen {
				b.probing = false
				return false
			}
			b.token = token
			b.probes++
			return true
		}
		b.sharedFailed(err) // the local slot decides
	}
	b.mu.Lock()
	defer b.unlock()
	if b.state != BreakerHalfOpen {
		b.probing = false
		return false
	}
	b.token = ""
	b.probes++
	return true
}

// releaseProbe gives the probe slot back after a probe whose outcome was
// neither a success nor a counted failure: the next waiter probes.
func (b *Breaker) releaseProbe(ctx context.Context) {
	b.mu.Lock()
	b.probing = false
	token := b.token
	b.token = ""
	b.wake()
	b.unlock()
	if token != "" {
		if err := b.shared.releaseProbe(ctx, token); err != nil {
			b.sharedFailed(err)
		}
	}
}

// record counts one outcome (err nil for a success) of a call admitted
// as the probe or not, and moves the breaker as it says.
func (b *Breaker) record(ctx context.Context, probe bool, err error) {
	failed := err != nil
	now := b.cfg.Now()
	b.mu.Lock()
	if failed {
		b.failures++
	} else {
		b.successes++
	}
	if probe {
		token := b.token
		b.probing, b.token = false, ""
		if failed {
			b.probeFails++
		}
		b.unlock()
		if token != "" {
			st, serr := b.shared.probeDone(ctx, token, !failed)
			if serr == nil {
				b.mu.Lock()
				b.sharedOK(st, now, err)
				if st == BreakerOpen {
					b.openedAt = now // this process's view of the new cool-down
				}
				b.unlock()
				return
			}
			b.sharedFailed(serr)
		}
		b.mu.Lock()
		defer b.unlock()
		if failed {
			b.transition(BreakerOpen, now, err)
			b.openedAt, b.since = now, now // a failed probe re-opens the breaker for a whole cool-down
		} else {
			b.transition(BreakerClosed, now, nil)
		}
		return
	}
	if b.state != BreakerClosed {
		// A call admitted before the breaker tripped, ending after: its
		// outcome belongs to the window that tripped, now gone.
		b.unlock()
		return
	}
	b.win.add(now, failed)
	var ok, bad int
	flush := false
	if b.shared != nil {
		if failed {
			b.unsentBad++
		} else {
			b.unsentOK++
		}
		// Failures at once, so that the fleet trips promptly; successes in
		// batches, one call per SyncInterval.
		if failed || now.Sub(b.lastFlush) >= b.cfg.SyncInterval {
			ok, bad, flush = b.unsentOK, b.unsentBad, true
			b.unsentOK, b.unsentBad, b.lastFlush = 0, 0, now
		}
	}
	if b.shared != nil && flush {
		b.unlock()
		st, _, serr := b.shared.record(ctx, now, ok, bad)
		b.mu.Lock()
		if serr == nil {
			defer b.unlock()
			b.sharedOK(st, now, err)
			return
		}
		b.unlock()
		b.sharedFailed(serr)
		b.mu.Lock()
	}
	defer b.unlock()
	if b.local() && b.state == BreakerClosed {
		if wok, wbad := b.win.sum(now); trips(wok, wbad, b.cfg.MinRequests, b.cfg.Threshold) {
			b.transition(BreakerOpen, now, err)
		}
	}
}
