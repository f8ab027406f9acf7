package arc

import (
	"errors"
	"fmt"
)

var (
	// ErrMalformedEvent is wrapped by every error that reports bytes or a
	// message that do not hold an Arc event: not JSON, not a JSON object, no
	// string type, no meta.id; for a message, a mapping key that does not
	// hold what ToMessage writes there. Payload content never makes an event
	// malformed. Dead-letter code uses
	// errors.Is(err, ErrMalformedEvent) to choose the reason "malformed".
	ErrMalformedEvent = errors.New(malformedPrefix)

	// ErrInvalidEvent is wrapped by every error that refuses to build or
	// write an event that Arc would reject or misread: an empty or reserved
	// type, an empty id, a payload that is not JSON; and, when NewEvent or
	// NewChild creates an event, a "timestamp" string that Node reads as
	// Invalid Date.
	ErrInvalidEvent = errors.New("arc: invalid event")

	// ErrUnrecoverable marks a handler error that no retry can fix (a payload
	// of the wrong shape, say): wrap it, and retry middleware dead-letters the
	// message at once instead of retrying.
	ErrUnrecoverable = errors.New("arc: unrecoverable")
)

// DecodeError says what is wrong with an event that could not be decoded.
// It matches ErrMalformedEvent with errors.Is.
type DecodeError struct {
	// Field is where the problem is, as a JSON path ("meta.id") or a
	// Watermill metadata key; empty for the document as a whole.
	Field string
	// Reason says what is wrong, in words.
	Reason string
	// Err is the underlying error, if any (a JSON syntax or time parse error).
	Err error
}

// malformedPrefix begins every DecodeError's message.
const malformedPrefix = "arc: malformed event"

func (e *DecodeError) Error() string {
	msg := malformedPrefix
	if e.Field != "" {
		msg += ": " + e.Field
	}
	msg += ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is ErrMalformedEvent.
func (e *DecodeError) Is(target error) bool { return target == ErrMalformedEvent }

// Unwrap returns the underlying error.
func (e *DecodeError) Unwrap() error { return e.Err }

func malformed(field, reason string, err error) error {
	return &DecodeError{Field: field, Reason: reason, Err: err}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidEvent}, args...)...)
}
