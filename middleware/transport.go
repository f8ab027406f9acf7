package middleware

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
)

// ErrTransient marks a failure that is a dependency's outage, not the
// event's fault: the same call succeeds once the dependency is back.
// Wrap it (Transient does) around your own dependency's outage errors, or
// give your error type an Is method that matches it, and IsTransportError
// recognises them. A transient failure never costs an event an attempt
// (Retry waits and tries again) and is never dead-lettered (DeadLetter
// nacks).
var ErrTransient = errors.New("middleware: transient failure")

// Transient marks err as a dependency's outage (see ErrTransient), for
// failures IsTransportError cannot recognise by itself: an HTTP 503 from a
// payment API, a database client's own "not available" error. The result
// matches both ErrTransient and err under errors.Is and errors.As; its
// message is err's. Transient(nil) is nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return transientError{err}
}

type transientError struct{ err error }

func (e transientError) Error() string        { return e.err.Error() }
func (e transientError) Unwrap() error        { return e.err }
func (e transientError) Is(target error) bool { return target == ErrTransient }

// redisUnavailable are the first words (error codes) of the Redis replies
// that say the server cannot serve the command now (loading its data, a
// replica, out of memory, a cluster or failover in progress), not that the
// command is wrong: the same command succeeds once the server recovers.
// The whole first word must match: BUSYGROUP or BUSYKEY (the command's own
// fault) are not BUSY. MOVED and ASK reach a caller only when a Cluster
// client ran out of redirections while slots were moving (a reshard, a
// failover): the same command succeeds once the slot map settles.
var redisUnavailable = map[string]bool{"LOADING": true, "READONLY": true, "OOM": true, "CLUSTERDOWN": true,
	"TRYAGAIN": true, "MASTERDOWN": true, "BUSY": true, "NOREPLICAS": true, "NOTREADY": true, "MOVED": true, "ASK": true}

// redisTooManyClients is the one generic ERR reply that is an outage.
const redisTooManyClients = "ERR max number of clients reached"

// natsUnavailable are nats.go's errors for a connection that is down,
// closing, reconnecting or out of servers, or a JetStream that does not
// answer (no responders, no stream response during a leader election).
var natsUnavailable = []error{nats.ErrConnectionClosed, nats.ErrConnectionDraining,
	nats.ErrConnectionReconnecting, nats.ErrTimeout, nats.ErrNoServers, nats.ErrStaleConnection,
	nats.ErrDisconnected, nats.ErrNoResponders, nats.ErrMaxConnectionsExceeded, nats.ErrReconnectBufExceeded,
	nats.ErrNoStreamResponse, nats.ErrDrainTimeout}

// transportErrnos are the system errors of a connection that could not be
// made or was cut.
var transportErrnos = []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
	syscall.EPIPE, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT}

// IsTransportError reports whether err is a transport's or a dependency's
// outage rather than the event's fault: the same call would succeed once
// the broker, database or service is reachable again. Retry and DeadLetter
// use it (RetryConfig.TransportError, DeadLetterConfig.TransportError) so
// that an outage never burns an event's attempts nor dead-letters it.
//
// The rule: an error wrapping arc.ErrUnrecoverable is never the
// transport's. Otherwise these are:
//   - an error marked with Transient (errors.Is(err, ErrTransient));
//   - a network failure: any *net.OpError (refused, reset, unreachable,
//     read and dial timeouts, whatever it wraps), any other net.Error, an
//     error with Timeout() true, net.ErrClosed, and the errnos
//     ECONNREFUSED, ECONNRESET, ECONNABORTED, EPIPE, EHOSTUNREACH,
//     ENETUNREACH, ETIMEDOUT;
//   - an HTTP client's failure (*url.Error) by what it wraps, not by
//     itself (url.Error is a net.Error whatever the cause): a connection
//     refused, reset or timed out, or cut before the reply (io.EOF inside
//     the url.Error), is; a malformed URL, an unsupported scheme, a
//     certificate that does not verify (x509, tls) and a host that does
//     not exist (DNS "no such host") are not: they are the event's own
//     URL's fault, and would loop for ever as an outage;
//   - a closed or exhausted Redis client: redis.ErrClosed,
//     redis.ErrPoolTimeout, redis.ErrPoolExhausted; a closed arcmill
//     publisher or subscriber (errors matching ErrShutdown);
//   - a Redis reply that the server cannot serve now, by its whole first
//     word: LOADING, READONLY, OOM, CLUSTERDOWN, TRYAGAIN, MASTERDOWN,
//     BUSY, NOREPLICAS, NOTREADY, MOVED, ASK (a Cluster's slots moving
//     faster than the client's redirections), and "ERR max number of
//     clients reached"
//     (BUSYGROUP, BUSYKEY and the like are the command's fault);
//   - a NATS connection that is down or a JetStream that does not answer:
//     nats.ErrConnectionClosed, ErrConnectionDraining,
//     ErrConnectionReconnecting, ErrTimeout, ErrNoServers,
//     ErrStaleConnection, ErrDisconnected, ErrNoResponders,
//     ErrMaxConnectionsExceeded, ErrReconnectBufExceeded,
//     ErrNoStreamResponse, ErrDrainTimeout, and a JetStream API error with
//     code 503 (unavailable).
//
// A bare io.EOF or io.ErrUnexpectedEOF is not: it is what decoding an
// empty or truncated payload returns (encoding/json, a gzip reader), the
// event's fault, which must count as an attempt or it is retried for
// ever. Inside a *net.OpError or a *url.Error it is a connection cut, and
// is the transport's. A client that returns a bare io.EOF for a connection
// the server closed (go-redis does, once its own MaxRetries are spent)
// is charged an attempt for it; mark such calls with Transient where that
// matters.
//
// A bare context.DeadlineExceeded or context.Canceled is not: inside a
// handler it is the attempt's own deadline (StackConfig.Timeout, or one
// the handler set), and a handler that hangs on one event would otherwise
// hold its lane for ever. A client's own network timeouts (a net.Error, as
// go-redis's read timeouts are) are the transport's. Code that publishes
// with a deadline of its own, as the outbox relay does, adds context errors
// to the rule: IsTransportError(err) || errors.Is(err,
// context.DeadlineExceeded) || errors.Is(err, context.Canceled) (see
// outbox.IsTransportError).
//
// Every other error is the event's: it counts as an attempt.
func IsTransportError(err error) bool {
	if err == nil || errors.Is(err, arc.ErrUnrecoverable) {
		return false
	}
	if errors.Is(err, ErrTransient) {
		return true
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return httpTransportError(urlErr.Err)
	}
	return transportError(err)
}

// httpTransportError classifies what an HTTP client's *url.Error wraps.
// The URL is often the event's own (a webhook, a callback): what is wrong
// with it is the event's fault, not an outage.
func httpTransportError(err error) bool {
	if err == nil {
		return false
	}
	var dnsErr *net.DNSError
	var certInvalid x509.CertificateInvalidError
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var verify *tls.CertificateVerificationError
	var alert tls.AlertError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound,
		errors.As(err, &certInvalid), errors.As(err, &unknownAuthority), errors.As(err, &hostname),
		errors.As(err, &verify), errors.As(err, &alert):
		return false
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true // the server closed the connection before its reply
	}
	return transportError(err)
}

// transportError is IsTransportError's rule past the marks and the HTTP
// client's errors.
func transportError(err error) bool {
	switch {
	case errors.Is(err, net.ErrClosed),
		errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted),
		errors.Is(err, ErrShutdown):
		return true
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return true // before the context check: a dial that hit its deadline wraps it
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false // before net.Error, which context.DeadlineExceeded satisfies
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	for _, errno := range transportErrnos {
		if errors.Is(err, errno) {
			return true
		}
	}
	for _, n := range natsUnavailable {
		if errors.Is(err, n) {
			return true
		}
	}
	var apiErr *nats.APIError
	if errors.As(err, &apiErr) && apiErr.Code == 503 {
		return true
	}
	var timeout interface{ Timeout() bool }
	if errors.As(err, &timeout) && timeout.Timeout() {
		return true
	}
	var redisErr redis.Error
	if errors.As(err, &redisErr) {
		msg := redisErr.Error()
		code, _, _ := strings.Cut(msg, " ")
		return redisUnavailable[code] || strings.HasPrefix(msg, redisTooManyClients)
	}
	return false
}
