package middleware

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
)

// This file holds the Breaker's rule for a poison event: a held message
// that fails ProbeAttempts probes in a row, with no other message's probe
// failing in between, is taken to fail on its own fault and is returned.

// suspect is the message whose failed probes make the current row: only
// one message can, since any other message's failed probe breaks it.
type suspect struct {
	id    string
	fails int // failed probes in the row
	// opened and closed are the breaker's transition counts right after
	// the row's last failed probe: the row goes on only if the next one
	// is the message's own re-open, with nothing in between.
	opened, closed uint64
}

// suspectID names msg for the row: its UUID, which stays the same across
// Retry's attempts and the broker's redeliveries.
func suspectID(msg *message.Message) string {
	if msg.UUID != "" {
		return msg.UUID
	}
	return fmt.Sprintf("%p", msg)
}

// probeFailed records that the probe of message id failed with the counted
// failure err (the breaker re-opened), and reports whether the message is
// now to be returned: its row has reached ProbeAttempts.
//
// The row is judged conservatively, so that an outage never looks like a
// poison event: a transport failure ends it; so does any transition
// besides this message's own re-open since its last failed probe (another
// message's failed probe, in this process or, seen by sync, in the fleet;
// the breaker closing and tripping again).
func (b *Breaker) probeFailed(id string, err error) bool {
	b.mu.Lock()
	defer b.unlock()
	if IsTransportError(err) {
		b.suspect = suspect{}
		return false
	}
	if b.suspect.id == id && b.opened == b.suspect.opened+1 && b.closed == b.suspect.closed {
		b.suspect.fails++
	} else {
		b.suspect = suspect{id: id, fails: 1}
	}
	b.suspect.opened, b.suspect.closed = b.opened, b.closed
	if b.cfg.ProbeAttempts == NoProbeLimit || b.suspect.fails < b.cfg.ProbeAttempts {
		return false
	}
	b.returned++
	return true
}

// isSuspect reports whether id's probes make the current row: such a
// message, coming back from Retry, leaves the next probe to another
// waiting message, if any, as a message whose probe just failed does.
func (b *Breaker) isSuspect(id string) bool {
	b.mu.Lock()
	defer b.unlock()
	return b.suspect.id == id && b.suspect.fails > 0
}
