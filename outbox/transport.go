package outbox

import (
	"context"
	"errors"
	"io"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
)

// IsTransportError reports whether a publish failed because the broker
// could not be reached or could not take writes at that moment, rather
// than because of the event: the same publish would succeed once the
// broker recovers. Such a failure is not charged to the row: the relay
// pauses instead (RelayConfig.TransportError, Relay.Status).
//
// The rule is middleware.IsTransportError's (see its doc for the list:
// network failures, closed clients, Redis replies such as LOADING or
// READONLY, NATS connections that are down, errors marked with
// middleware.Transient), so the relay and the handler middleware agree on
// what an outage is. An error wrapping arc.ErrUnrecoverable is never the
// transport's.
//
// It differs in two places, on purpose. A bare io.EOF or io.ErrUnexpectedEOF
// is the transport's here: the relay decodes nothing of the event's while
// publishing, so an end of stream comes from the broker's connection
// (go-redis returns a bare io.EOF for a connection the server cut, once its
// own retries are spent); inside a handler it is more often a truncated
// payload. And a bare context.DeadlineExceeded or context.Canceled is the
// transport's here. The relay publishes under its
// own deadline (RelayConfig.PublishTimeout), so a deadline means the broker
// did not answer in time, and a cancellation means the relay is stopping;
// neither says anything about the row. Inside a handler the same errors are
// the attempt's own deadline, which is why middleware.IsTransportError
// charges them to the event there. The cost of the relay's choice: a
// publisher that hangs on one message only (and not on others) holds the
// relay paused on that row instead of dead-lettering it; Relay.Status
// shows it. Where a publisher can do that, use middleware.IsTransportError
// as RelayConfig.TransportError instead.
//
// Every other error is the event's: it counts as an attempt and goes
// through the FailurePolicy. To recognise another client's outage errors,
// extend the rule with RelayConfig.TransportError or mark them with
// middleware.Transient.
func IsTransportError(err error) bool {
	return middleware.IsTransportError(err) ||
		!errors.Is(err, arc.ErrUnrecoverable) && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
			errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF))
}
