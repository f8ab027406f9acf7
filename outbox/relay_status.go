package outbox

import (
	"time"

	"github.com/ThreeDotsLabs/watermill"
)

// RelayState says whether a relay's publisher and database work.
type RelayState int

const (
	// RelayHealthy: the last pass claimed from the database, and no
	// publish has failed on the transport since the last one that
	// succeeded.
	RelayHealthy RelayState = iota
	// RelayPaused: the last publish failed on the transport. The relay
	// tries again after RelayConfig.OutageBackoff, charging no row, and is
	// healthy again once a publish succeeds.
	RelayPaused
	// RelayFailing: the last pass could not claim from the database (it
	// is unreachable, or refuses the relay, or the table is missing). The
	// relay tries again after RelayConfig.OutageBackoff, and is healthy
	// again once a claim succeeds. RelayStatus.Permanent says whether an
	// operator must act.
	RelayFailing
)

// String names the state: "healthy", "paused" or "failing".
func (s RelayState) String() string {
	switch s {
	case RelayPaused:
		return "paused"
	case RelayFailing:
		return "failing"
	}
	return "healthy"
}

// RelayStatus is a relay's health, for health checks and metrics.
type RelayStatus struct {
	// State is RelayHealthy, RelayPaused or RelayFailing.
	State RelayState
	// Since is when the relay entered State; zero while it has been
	// healthy since NewRelay.
	Since time.Time
	// LastError is the error that keeps the relay out of health: the
	// transport's (paused) or the database's, as a RelayError with Kind
	// ClaimFailed (failing); nil while healthy.
	LastError error
	// Permanent is true while failing on an error that does not pass by
	// itself: LastError wraps ErrMissingTable or ErrAccessDenied. The
	// relay keeps retrying, so that fixing the database (running Migrate,
	// restoring a grant) is enough, but someone has to do it.
	Permanent bool
	// FailedPasses counts the passes in a row that failed, in the current
	// pause or failure.
	FailedPasses int
	// Pauses counts the pauses and failures since NewRelay.
	Pauses int
	// Running is true from the start of Run until it returns.
	Running bool
	// LastPass is when a pass last claimed from the database without an
	// error (whether or not it found rows); zero before the first.
	LastPass time.Time
}

// Healthy reports whether the relay is RelayHealthy.
func (s RelayStatus) Healthy() bool { return s.State == RelayHealthy }

// Status returns the relay's health: paused while its publisher fails on
// the transport, failing while its database does, healthy otherwise.
func (r *Relay) Status() RelayStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.status
	st.FailedPasses = r.down
	st.Running = r.active
	return st
}

// failing records a pass that could not claim: err is the classified
// RelayError. A permanent error is logged at Error on every pass (one
// per OutageBackoff at most) until it is fixed; another only when the
// relay starts failing or the error changes.
func (r *Relay) failing(err error) {
	r.mu.Lock()
	r.down++
	first := r.status.State != RelayFailing
	changed := first || r.status.LastError == nil || r.status.LastError.Error() != err.Error()
	if first {
		r.status.State, r.status.Since = RelayFailing, time.Now()
		r.status.Pauses++
	}
	r.status.LastError, r.status.Permanent = err, permanent(err)
	n := r.down
	r.mu.Unlock()
	switch {
	case permanent(err):
		r.cfg.Logger.Error("Outbox relay cannot work until the database is fixed; retrying", err,
			watermill.LogFields{"failed_passes": n})
	case changed:
		r.cfg.Logger.Error("Outbox relay cannot claim from the database; retrying", err, nil)
	}
}

// claimed records a pass that claimed without an error: the database
// works again if it was failing.
func (r *Relay) claimed() {
	r.mu.Lock()
	was := r.status
	r.status.LastPass = time.Now()
	if was.State == RelayFailing {
		r.status = RelayStatus{State: RelayHealthy, Since: time.Now(), Pauses: was.Pauses, LastPass: r.status.LastPass}
		r.down = 0
	}
	r.mu.Unlock()
	if was.State == RelayFailing {
		r.cfg.Logger.Info("Outbox relay claims again: the database works", watermill.LogFields{
			"failed_for": time.Since(was.Since).Round(time.Millisecond).String()})
	}
}

// pause records a pass whose publishing ended on a transport failure.
func (r *Relay) pause(err error) {
	r.mu.Lock()
	r.down++
	first := r.status.State != RelayPaused
	if first {
		r.status.State, r.status.Since = RelayPaused, time.Now()
		r.status.Pauses++
	}
	r.status.LastError = err
	r.mu.Unlock()
	if first {
		r.cfg.Logger.Error("Outbox relay paused: the publisher's transport failed; no row is charged while it lasts", err, nil)
	}
}

// resume records a pass that published: the transport works.
func (r *Relay) resume() {
	r.mu.Lock()
	was := r.status
	if was.State == RelayPaused {
		r.status = RelayStatus{State: RelayHealthy, Since: time.Now(), Pauses: was.Pauses, LastPass: was.LastPass}
		r.down = 0
	}
	r.mu.Unlock()
	if was.State == RelayPaused {
		r.cfg.Logger.Info("Outbox relay resumed: the publisher works again", watermill.LogFields{
			"paused_for": time.Since(was.Since).Round(time.Millisecond).String()})
	}
}

// outageDelay is the wait after a pass that failed on the transport or
// the database.
func (r *Relay) outageDelay() time.Duration {
	r.mu.Lock()
	n := r.down
	r.mu.Unlock()
	return r.cfg.OutageBackoff.Delay(n)
}
