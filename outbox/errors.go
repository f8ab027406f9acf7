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
	// ErrRelayClosed is returned by Run and RelayBatch after Close, and by
	// a Run that Close stopped.
	ErrRelayClosed = errors.New("outbox: relay closed")
	// ErrMissingTable marks a database error that says the outbox table,
	// its lock table or one of its columns is not there: Migrate has not
	// run (or ran on another database or schema), or the table is of an
	// older arcmill. It does not pass by itself.
	ErrMissingTable = errors.New("outbox: the outbox table is missing or incomplete (run Outbox.Migrate or apply outbox.Schema)")
	// ErrAccessDenied marks a database error that says the database
	// refused the relay: bad credentials, an unknown user or database, or
	// a missing privilege. It does not pass by itself.
	ErrAccessDenied = errors.New("outbox: the database refused access (check the credentials, the database name and the grants)")
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

// RelayError is one problem a pass met, for RelayConfig.OnError. It is
// an error (a value or a pointer): errors.Is and errors.As see through it
// to Err, and Relay.Status keeps the last one that failed a pass.
type RelayError struct {
	Kind RelayErrorKind
	// Seq and EventID identify the row; zero for ClaimFailed.
	Seq     int64
	EventID string
	Err     error
}

// Error says what failed and for which row, then Err.
func (e RelayError) Error() string {
	s := "outbox: relay " + string(e.Kind)
	if e.EventID != "" || e.Seq != 0 {
		s += fmt.Sprintf(" for event %q (seq %d)", e.EventID, e.Seq)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns Err.
func (e RelayError) Unwrap() error { return e.Err }
