package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// ArcHealth is Arc's GET {prefix}/health.
type ArcHealth struct {
	// Pending counts outbox rows not yet delivered (due, delayed or in
	// flight).
	Pending int64 `json:"pending"`
	// DeadLetter counts dead letters: outbox rows and dead-letter stream
	// entries.
	DeadLetter int64 `json:"deadLetter"`
	// RelayLagMs is the age of the oldest undelivered outbox row.
	RelayLagMs int64 `json:"relayLagMs"`
	// Healthy is false when the relay lag passes Config.HealthyLag or a
	// source cannot be read.
	Healthy bool `json:"healthy"`
	// OpenBreakers names the circuit breakers (Config.Breakers) that are
	// not closed. They leave Healthy alone: an open breaker is the process
	// containing a dependency's outage, which restarting it (what a failing
	// health check leads to) would not fix. Absent when none is open.
	OpenBreakers []string `json:"openBreakers,omitempty"`
}

func (c *Console) arcHealth(w http.ResponseWriter, r *http.Request) {
	o := c.overview(r.Context())
	h := ArcHealth{DeadLetter: o.DeadLetters, Healthy: true}
	for _, ob := range o.Outboxes {
		h.Pending += ob.Pending + ob.Delayed + ob.InFlight
		h.RelayLagMs = max(h.RelayLagMs, ob.OldestPendingAgeMs)
		h.Healthy = h.Healthy && ob.Error == ""
	}
	for _, s := range o.Streams {
		h.Healthy = h.Healthy && s.Error == ""
	}
	h.Healthy = h.Healthy && h.RelayLagMs <= c.cfg.HealthyLag.Milliseconds()
	for _, b := range o.Breakers {
		if !b.Healthy {
			h.OpenBreakers = append(h.OpenBreakers, b.Name)
		}
	}
	status := http.StatusOK
	if !h.Healthy {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}

// arcError is Arc's DeadLetteredEvent.error.
type arcError struct {
	Message string `json:"message"`
	Code    string `json:"code,omitempty"`
	Stack   string `json:"stack,omitempty"`
}

// ArcDeadLetter is one item of Arc's GET {prefix}/dead-letter: Arc's
// DeadLetteredEvent, the payload and stack redacted unless exposed.
type ArcDeadLetter struct {
	Event         json.RawMessage `json:"event"`
	Error         arcError        `json:"error"`
	Attempts      int             `json:"attempts"`
	FirstFailedAt string          `json:"firstFailedAt"`
	LastFailedAt  string          `json:"lastFailedAt"`
	HandlerName   string          `json:"handlerName,omitempty"`
}

// defaultArcLimit and maxArcLimit bound GET {prefix}/dead-letter?limit=
// (Arc's getDeadLettered defaults to 100).
const (
	defaultArcLimit = 100
	maxArcLimit     = 1000
)

func (c *Console) arcDeadLetters(w http.ResponseWriter, r *http.Request) {
	limit := defaultArcLimit
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "limit must be a positive integer"})
			return
		}
		limit = min(n, maxArcLimit)
	}
	out := []ArcDeadLetter{}
	for _, src := range c.sources("") {
		if len(out) >= limit {
			break
		}
		// Read whole: Arc's items carry the event.
		if _, _, err := c.scanFull(r.Context(), src, func(l letter) bool {
			out = append(out, c.arcLetter(l))
			return len(out) < limit
		}); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *Console) arcLetter(l letter) ArcDeadLetter {
	expose := c.cfg.ExposePayloads
	ev := l.event
	if ev.Type == "" && ev.Meta.ID == "" {
		ev = arc.Event{Type: l.Type, Meta: arc.Meta{ID: l.EventID}}
	}
	a := ArcDeadLetter{Event: eventJSON(ev, expose), Error: arcError{Message: l.Error}, Attempts: l.Attempts,
		FirstFailedAt: arc.FormatTimestamp(l.FirstFailedAt), LastFailedAt: arc.FormatTimestamp(l.LastFailedAt),
		HandlerName: l.Handler}
	if l.src.kind == kindStream {
		a.Error.Code = l.dl.Envelope.Error.Code
		if expose {
			a.Error.Stack = l.dl.Envelope.Error.Stack
		}
	}
	return a
}

// ArcReplay is the answer of Arc's POST {prefix}/dead-letter/:id/replay.
type ArcReplay struct {
	ID       string `json:"id"`
	Replayed bool   `json:"replayed"`
}

// arcReplay puts back the dead letter of event id (meta.id): an outbox
// row becomes pending again, a stream dead letter goes back to its stream
// (409 when it cannot: see Letter.NoRedrive).
func (c *Console) arcReplay(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ok, why, err := c.replayEvent(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if why != "" {
		writeJSON(w, http.StatusConflict, apiError{Error: fmt.Sprintf("the dead letter of event %q cannot be replayed: %s", id, why)})
		return
	}
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("no dead letter of event %q", id)})
		return
	}
	p, _ := PrincipalFrom(r.Context())
	c.audit.record(AuditEntry{Time: c.cfg.Now().UTC(), Who: p.Name, Action: "replay", What: "event " + id, Count: 1})
	writeJSON(w, http.StatusOK, ArcReplay{ID: id, Replayed: true})
}

// replayEvent redrives the dead letter of event id; why says why the one
// found cannot be.
func (c *Console) replayEvent(ctx context.Context, id string) (ok bool, why string, err error) {
	for _, ob := range c.cfg.Outboxes {
		n, err := ob.Outbox.Redrive(ctx, outbox.RedriveOptions{Filter: outbox.Filter{EventIDs: []string{id}}, Limit: 1})
		if err != nil {
			return false, "", fmt.Errorf("console: %w", err)
		}
		if n == 1 {
			return true, "", nil
		}
	}
	var found *letter
	for _, src := range c.sources("") {
		if src.kind != kindStream {
			continue
		}
		if _, _, err := c.scan(ctx, src, func(l letter) bool {
			if l.EventID == id || l.ID == id {
				found = &l
				return false
			}
			return true
		}); err != nil {
			return false, "", err
		}
		if found != nil {
			break
		}
	}
	switch {
	case found == nil:
		return false, "", nil
	case !found.Redrivable:
		return false, found.NoRedrive, nil
	}
	ok, err = c.redriveOne(ctx, *found)
	return ok, "", err
}
