package outbox

import (
	"errors"
	"fmt"
)

// Errors of arcmill's outbox. Every message starts with "outbox:".
var (
	// ErrInvalidConfig wraps every configuration error.
	ErrInvalidConfig = errors.New("outbox: invalid config")
	// ErrInvalidEntry is Arc's InvalidOutboxEventError: an entry without a
	// type, an id or a destination topic is refused at write time.
	ErrInvalidEntry = errors.New("outbox: invalid outbox event")
	// ErrOwnership is Arc's OutboxOwnershipError: a relay settled a row whose
	// lease it no longer holds (it expired and another worker took the row).
	// The settlement is rejected; *OwnershipError says who holds the row.
	ErrOwnership = errors.New("outbox: ownership mismatch")
	// ErrMalformedRow marks a stored row the relay cannot turn back into a
	// message (bad metadata JSON, no id or topic). It is dead-lettered.
	ErrMalformedRow = errors.New("outbox: malformed row")
	// ErrRelayClosed is returned by Run and RelayBatch after Close.
	ErrRelayClosed = errors.New("outbox: relay closed")
	// ErrNotSubscribable is returned by SchemaAdapter's subscribing methods.
	ErrNotSubscribable = errors.New("outbox: the outbox table is read by outbox.Relay, not by a watermill-sql subscriber")
)

// OwnershipError is Arc's OutboxOwnershipError for one row.
type OwnershipError struct {
	// Seq is the row's sequence number (the id column).
	Seq int64
	// EventID is the event's meta.id.
	EventID string
	// AttemptedBy is the consumer id that tried to settle the row.
	AttemptedBy string
	// CurrentOwner holds the row's lease now; "" when nobody does (the row
	// was settled by its new owner, or its lease was released).
	CurrentOwner string
}

func (e *OwnershipError) Error() string {
	owner := e.CurrentOwner
	if owner == "" {
		owner = "none"
	}
	return fmt.Sprintf("Outbox ownership mismatch for event %q: attempted by %q, current owner is %q. "+
		"The lease may have expired and been reclaimed by another worker.", e.EventID, e.AttemptedBy, owner)
}

// Is makes errors.Is(err, ErrOwnership) hold.
func (e *OwnershipError) Is(target error) bool { return target == ErrOwnership }

// RelayErrorKind is Arc's OutboxRelayErrorKind.
type RelayErrorKind string

// The kinds of RelayError.
const (
	PublishFailed     RelayErrorKind = "publish_failed"
	AcknowledgeFailed RelayErrorKind = "acknowledge_failed"
	FailFailed        RelayErrorKind = "fail_failed"
	OwnershipMismatch RelayErrorKind = "ownership_mismatch"
	MalformedEvent    RelayErrorKind = "malformed_event"
	// ClaimFailed is arcmill's: the claim query itself failed.
	ClaimFailed RelayErrorKind = "claim_failed"
	// TransportFailed is arcmill's: a publish failed on the transport
	// (RelayConfig.TransportError). Seq and EventID name the call's first
	// row; no row is charged, and the relay pauses.
	TransportFailed RelayErrorKind = "transport_failed"
)

// RelayError is one problem a pass met, for RelayConfig.OnError.
type RelayError struct {
	Kind RelayErrorKind
	// Seq and EventID identify the row; zero for ClaimFailed.
	Seq     int64
	EventID string
	Err     error
}
