package console

import (
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
)

// AuditEntry records one mutation: who, what, how many.
type AuditEntry struct {
	// Time is when it happened.
	Time time.Time `json:"time"`
	// Who is the caller's name.
	Who string `json:"who"`
	// Action is "redrive", "purge", "replay" or "cancel", with
	// ".started"/".finished" for tasks.
	Action string `json:"action"`
	// What describes the selection.
	What string `json:"what"`
	// Count is how many dead letters it touched (or, at a task's start,
	// selected).
	Count int64 `json:"count"`
	// Task is the task's id, for task actions.
	Task string `json:"task,omitempty"`
}

// audit keeps the last mutations in memory; every one is also logged.
type audit struct {
	mu      sync.Mutex
	entries []AuditEntry // ring, oldest first once full
	next    int
	size    int
	logger  watermill.LoggerAdapter
}

func (a *audit) record(e AuditEntry) {
	a.logger.Info("Console mutation", watermill.LogFields{"who": e.Who, "action": e.Action, "what": e.What,
		"count": e.Count, "task": e.Task})
	if a.size == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.entries) < a.size {
		a.entries = append(a.entries, e)
		return
	}
	a.entries[a.next] = e
	a.next = (a.next + 1) % a.size
}

// list returns the entries newest first.
func (a *audit) list() []AuditEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]AuditEntry, 0, len(a.entries))
	for i := len(a.entries) - 1; i >= 0; i-- {
		out = append(out, a.entries[(a.next+i)%len(a.entries)])
	}
	return out
}
