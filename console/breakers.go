package console

import (
	"time"

	"github.com/arcmill/arcmill/middleware"
)

// BreakerInfo is one circuit breaker's state, as the overview shows it
// (middleware.Breaker.Stats).
type BreakerInfo struct {
	// Name is the breaker's name (BreakerConfig.Name).
	Name string `json:"name"`
	// State is "closed", "open" or "half-open". While it is not closed the
	// subscription takes no new message.
	State string `json:"state"`
	// Healthy is State == "closed".
	Healthy bool `json:"healthy"`
	// Since is when it entered State; absent while closed since it was made.
	Since *time.Time `json:"since,omitempty"`
	// OpenUntil is when an open breaker lets its probe through.
	OpenUntil *time.Time `json:"openUntil,omitempty"`
	// LastError is the failure that last tripped it.
	LastError string `json:"lastError,omitempty"`
	// WindowSuccesses and WindowFailures are the outcomes in its window.
	WindowSuccesses int `json:"windowSuccesses"`
	WindowFailures  int `json:"windowFailures"`
	// Held counts the failures it held (no attempt, no dead letter);
	// Waiting the messages waiting at its gate now.
	Held    uint64 `json:"held"`
	Waiting int    `json:"waiting"`
	// Returned counts the held messages handed back to retry and dead
	// letters as poison events (BreakerConfig.ProbeAttempts).
	Returned uint64 `json:"returned"`
	// Opened counts its trips.
	Opened uint64 `json:"opened"`
	// Shared says its state is shared through Redis; SharedError why
	// Redis could not be reached (it then runs on its local state).
	Shared      bool   `json:"shared"`
	SharedError string `json:"sharedError,omitempty"`
}

// breakers reads the state of every configured breaker; it does no I/O
// beyond what Stats does (none: the shared state is read by the breaker
// itself, at most every SyncInterval).
func (c *Console) breakers() []BreakerInfo {
	out := make([]BreakerInfo, 0, len(c.cfg.Breakers))
	for _, b := range c.cfg.Breakers {
		st := b.Stats()
		info := BreakerInfo{Name: st.Name, State: st.State.String(), Healthy: st.Healthy(),
			WindowSuccesses: st.WindowSuccesses, WindowFailures: st.WindowFailures, Held: st.Held, Waiting: st.Waiting, Returned: st.Returned,
			Opened: st.Opened, Shared: st.Shared}
		if !st.Since.IsZero() {
			since := st.Since.UTC()
			info.Since = &since
		}
		if !st.OpenUntil.IsZero() {
			until := st.OpenUntil.UTC()
			info.OpenUntil = &until
		}
		if st.LastError != nil {
			info.LastError = st.LastError.Error()
		}
		if st.SharedError != nil {
			info.SharedError = st.SharedError.Error()
		}
		out = append(out, info)
	}
	return out
}

// BreakerStats is what the console reads of a circuit breaker;
// *middleware.Breaker has it.
type BreakerStats interface {
	Stats() middleware.BreakerStats
}
