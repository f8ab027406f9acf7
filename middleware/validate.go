package middleware

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
)

// Validator checks an event's payload against the schema of (type,
// version); version 0 means the latest. The registry package implements it;
// so can any function, through ValidatorFunc. Its error should say where the
// payload is wrong (JSON Pointer paths).
type Validator interface {
	Validate(eventType string, payload json.RawMessage, version int) error
}

// ValidatorFunc adapts a function to Validator.
type ValidatorFunc func(eventType string, payload json.RawMessage, version int) error

// Validate calls f.
func (f ValidatorFunc) Validate(eventType string, payload json.RawMessage, version int) error {
	return f(eventType, payload, version)
}

// ErrValidation is wrapped by every validation failure.
var ErrValidation = errors.New("middleware: payload failed schema validation")

// ValidationError is a payload that failed its schema.
type ValidationError struct {
	Type    string
	Version int
	// Err is the validator's error, with its paths.
	Err error
}

// Error is the validator's error, which names the event (the registry's
// does), behind a fixed prefix.
func (e *ValidationError) Error() string { return "payload validation failed: " + e.Err.Error() }

// Is reports whether target is ErrValidation.
func (e *ValidationError) Is(target error) bool { return target == ErrValidation }

// Unwrap returns the validator's error.
func (e *ValidationError) Unwrap() error { return e.Err }

func validate(v Validator, ev arc.Event) error {
	if err := v.Validate(ev.Type, ev.Payload, ev.Meta.SchemaVersion); err != nil {
		return &ValidationError{Type: ev.Type, Version: ev.Meta.SchemaVersion, Err: err}
	}
	return nil
}

// Mode is Arc's validateMode for publishing.
type Mode int

const (
	// Warn logs an invalid event and publishes it anyway.
	Warn Mode = iota
	// Reject refuses to publish a batch holding an invalid event, with an
	// error wrapping ErrValidation; nothing of the batch is published.
	Reject
	// Off does not validate.
	Off
)

// ValidatingPublisher validates every Arc event published through pub
// against its own meta.schemaVersion. Messages that are not Arc events are
// refused in Reject mode and passed on in Warn mode.
func ValidatingPublisher(pub message.Publisher, v Validator, mode Mode, logger watermill.LoggerAdapter) (message.Publisher, error) {
	if pub == nil || v == nil && mode != Off {
		return nil, fmt.Errorf("%w: ValidatingPublisher needs a publisher and a validator", ErrInvalidConfig)
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	return &validatingPublisher{Publisher: pub, v: v, mode: mode, logger: logger}, nil
}

type validatingPublisher struct {
	message.Publisher
	v      Validator
	mode   Mode
	logger watermill.LoggerAdapter
}

func (p *validatingPublisher) Publish(topic string, msgs ...*message.Message) error {
	if p.mode != Off {
		for _, m := range msgs {
			ev, err := arc.FromMessage(m)
			if err == nil {
				err = validate(p.v, ev)
			}
			if err == nil {
				continue
			}
			if p.mode == Reject {
				return fmt.Errorf("middleware: not published to %q: %w", topic, err)
			}
			p.logger.Error("Publishing an event that fails validation", err, watermill.LogFields{"message_uuid": m.UUID, "topic": topic})
		}
	}
	return p.Publisher.Publish(topic, msgs...)
}

// InvalidAction says what consuming does with an invalid payload.
type InvalidAction int

const (
	// DeadLetterInvalid fails the handler with a *ValidationError, which
	// is not retried and is dead-lettered with reason validation_failed.
	DeadLetterInvalid InvalidAction = iota
	// SkipInvalid logs the event and acknowledges it without running the
	// handler (Arc's wrapWithSchema).
	SkipInvalid
)

// Validation is a message.HandlerMiddleware that validates the incoming
// event before the handler runs.
func Validation(v Validator, action InvalidAction, logger watermill.LoggerAdapter) message.HandlerMiddleware {
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ev, ok := incomingEvent(msg)
			if !ok {
				return h(msg) // not an event: the router's malformed path deals with it
			}
			if err := validate(v, ev); err != nil {
				if action == SkipInvalid {
					logger.Error("Skipping an event that fails validation", err, watermill.LogFields{"message_uuid": msg.UUID})
					return nil, nil
				}
				return nil, err
			}
			return h(msg)
		}
	}
}
