package inbox

import "errors"

// Errors of the inbox. Every message starts with "inbox:".
var (
	// ErrInvalidConfig wraps every configuration error.
	ErrInvalidConfig = errors.New("inbox: invalid config")
	// ErrInvalidKey is returned when an event yields no dedupe key (no
	// meta.id and no idempotency key), or one longer than MaxKeyLength, or
	// a custom Config.Key's key that is not valid UTF-8 text without NUL
	// or a trailing space (a column would refuse it, or take it for
	// another), or the consumer name is empty or longer than
	// MaxConsumerLength. It
	// wraps arc.ErrUnrecoverable where it comes from the event: retrying
	// cannot fix it.
	ErrInvalidKey = errors.New("inbox: invalid consumer or dedupe key")
	// ErrNoTransaction is returned by Emit, EmitEntries, Tx and PgxTx
	// called with a context that no inbox handler gave.
	ErrNoTransaction = errors.New("inbox: no inbox transaction in the context")
	// ErrNoOutbox is returned by Emit and EmitEntries, and by a middleware
	// handler that returns messages, when Config.Outbox is nil.
	ErrNoOutbox = errors.New("inbox: no consumer outbox configured (Config.Outbox)")
	// ErrStale is returned for an event not yet in the inbox whose
	// meta.timestamp is older than Config.RefuseOlderThan: its record may
	// have been purged, so applying it could apply it twice. It wraps
	// arc.ErrUnrecoverable, so the retry middleware dead-letters it at once.
	ErrStale = errors.New("inbox: event older than the inbox's retention window")
)
