package outbox

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
)

// redisUnavailable are the prefixes of the Redis replies that say the
// server cannot take writes now (loading its data, a replica, out of
// memory, a cluster or failover in progress), not that the command is
// wrong: the same write succeeds once the server recovers.
var redisUnavailable = []string{"LOADING", "READONLY", "OOM", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN",
	"BUSY", "NOREPLICAS", "NOTREADY", "ERR max number of clients reached"}

// IsTransportError reports whether a publish failed because the broker
// could not be reached or could not take writes at that moment, rather
// than because of the event: the same publish would succeed once the
// broker recovers. Such a failure is not charged to the row: the relay
// pauses instead (RelayConfig.TransportError, Relay.Status).
//
// The rule: an error wrapping arc.ErrUnrecoverable is never the
// transport's (an event the broker will never take). Otherwise these are:
//   - a deadline or cancellation (context.DeadlineExceeded, as from
//     RelayConfig.PublishTimeout; context.Canceled);
//   - a network failure: any net.Error (refused, reset, unreachable,
//     timeouts), an error with Timeout() true, io.EOF and
//     io.ErrUnexpectedEOF (a connection cut mid-reply), net.ErrClosed,
//     and the errnos ECONNREFUSED, ECONNRESET, ECONNABORTED, EPIPE,
//     EHOSTUNREACH, ENETUNREACH, ETIMEDOUT;
//   - a closed or exhausted client: redis.ErrClosed, redis.ErrPoolTimeout,
//     redis.ErrPoolExhausted, and a closed arcmill publisher or subscriber
//     (errors matching middleware.ErrShutdown, such as redisstream.ErrClosed);
//   - a Redis reply that the server is unavailable for writes: LOADING,
//     READONLY, OOM, CLUSTERDOWN, TRYAGAIN, MASTERDOWN, BUSY, NOREPLICAS,
//     NOTREADY, "ERR max number of clients reached".
//
// A timeout counts as the transport's, so a publisher that hangs on one
// message only (and not on others) holds the relay paused on that row
// instead of dead-lettering it: Relay.Status shows it. Where a publisher
// can do that, leave context.DeadlineExceeded out in TransportError.
//
// Every other error is the event's: it counts as an attempt and goes
// through the FailurePolicy. For another broker's client errors (NATS's
// nats.ErrTimeout, say), extend the rule with RelayConfig.TransportError.
func IsTransportError(err error) bool {
	if err == nil || errors.Is(err, arc.ErrUnrecoverable) {
		return false
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted),
		errors.Is(err, middleware.ErrShutdown):
		return true
	}
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EPIPE, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var timeout interface{ Timeout() bool }
	if errors.As(err, &timeout) && timeout.Timeout() {
		return true
	}
	var redisErr redis.Error
	if errors.As(err, &redisErr) {
		msg := redisErr.Error()
		for _, p := range redisUnavailable {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
	}
	return false
}
