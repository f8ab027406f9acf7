package inbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// Defaults of LeaseConfig.
const (
	// DefaultLeasePrefix is LeaseConfig.Prefix's default.
	DefaultLeasePrefix = "arcmill:inbox:"
	// DefaultLease is LeaseConfig.Lease's default.
	DefaultLease = 30 * time.Second
)

// ErrInProgress is returned by Lease.Process when another delivery of the
// event holds its processing lease: the delivery should be retried, and by
// then it is done, or the lease has lapsed.
//
// It matches middleware.ErrTransient (errors.Is), so the middleware treat
// it as a wait, not as the event's failure: Retry waits (OutageBackoff)
// and calls again without spending an attempt, DeadLetter nacks instead of
// dead-lettering. Otherwise a redelivery of an event that another consumer
// is still handling (an XAUTOCLAIM after min-idle) would burn its retries
// and be dead-lettered while it is being applied. The wait is bounded: it
// ends when the holder finishes (done: the retry is skipped as a
// duplicate; failed: the record is released) or, if the holder died, when
// its lease lapses, LeaseConfig.Lease later. A holder that hangs keeps
// renewing, so bound the handler itself (StackConfig.Timeout).
var ErrInProgress = middleware.Transient(errors.New("inbox: event is being processed under another lease"))

// LeaseConfig configures a Lease.
type LeaseConfig struct {
	// Client holds the records. Required.
	Client redis.UniversalClient
	// Prefix starts every record's key: <Prefix><consumer>:<dedupe key>.
	// Defaults to DefaultLeasePrefix.
	Prefix string
	// Lease is how long a "processing" record outlives the process that
	// wrote it: while the handler runs, the record is renewed every Lease/3;
	// after a crash it lapses Lease later, and the next delivery runs the
	// handler again. Defaults to DefaultLease.
	Lease time.Duration
	// Retention is how long a "done" record is kept; a redelivery later
	// than that runs the handler again. Defaults to DefaultRetention.
	Retention time.Duration
	// Key returns an event's dedupe key. Defaults to Key.
	Key func(arc.Event) string
	// Logger logs skipped duplicates at Debug and records that could not be
	// written at Error. Defaults to watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

func (c *LeaseConfig) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = DefaultLeasePrefix
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.Key == nil {
		c.Key = Key
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate reports a configuration that cannot work, defaults applied;
// every error wraps ErrInvalidConfig.
func (c LeaseConfig) Validate() error {
	c.setDefaults()
	switch {
	case c.Client == nil:
		return fmt.Errorf("%w: LeaseConfig.Client is required", ErrInvalidConfig)
	case c.Lease < 3*time.Millisecond:
		return fmt.Errorf("%w: LeaseConfig.Lease must be at least 3ms, got %v", ErrInvalidConfig, c.Lease)
	case c.Retention < c.Lease:
		return fmt.Errorf("%w: LeaseConfig.Retention (%v) must not be shorter than Lease (%v)", ErrInvalidConfig, c.Retention, c.Lease)
	}
	return nil
}

// Lease is the non-transactional guard, for handlers whose effect is not a
// database write (an HTTP call, an email): a Redis record per (consumer,
// dedupe key) that reads "processing" while a delivery runs the handler
// and "done" once it has succeeded.
//
// What it promises: a delivery that finds "done" is skipped (acked); one
// that finds "processing" fails with ErrInProgress and is retried later
// (without spending an attempt: it matches middleware.ErrTransient);
// a handler that fails or panics releases the record, so its retry runs
// at once. So while the process running the handler is alive, no other
// delivery runs it, and after success none does, for Retention.
//
// What it cannot promise: exactly once. The effect and the record are not
// one transaction. A process that crashes (or loses Redis) after the
// effect and before "done" is written leaves "processing", which lapses
// Lease later: the next delivery runs the handler again. A process paused
// longer than Lease (a GC pause, a frozen VM) loses its lease and another
// delivery may run concurrently. Redis itself may lose records it
// acknowledged (no persistence, a failover). It is at most once per lease
// window, at least once overall: make the remote call idempotent where
// the remote side allows (pass the dedupe key as its idempotency key), or
// use the transactional inbox with the consumer outbox.
type Lease struct {
	cfg LeaseConfig
}

// NewLease returns a Lease over cfg.Client.
func NewLease(cfg LeaseConfig) (*Lease, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Lease{cfg: cfg}, nil
}

// The records' values: "done", or "processing:<token>" of one delivery.
const (
	leaseDone       = "done"
	leaseProcessing = "processing:"
)

// acquireScript takes the record if it is free; else returns its value.
var acquireScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 'acquired'`)

// ownedScript runs one command on the record only while ARGV[1] holds it:
// ARGV[2] "done" marks it done for ARGV[3] ms, "renew" extends it by
// ARGV[3] ms, "release" deletes it.
var ownedScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'done' then redis.call('SET', KEYS[1], 'done', 'PX', ARGV[3])
elseif ARGV[2] == 'renew' then redis.call('PEXPIRE', KEYS[1], ARGV[3])
else redis.call('DEL', KEYS[1]) end
return 1`)

// Process runs fn for ev as consumer unless a record says it is done
// (Duplicate, no error) or in progress (ErrInProgress). See Lease for what
// this promises.
func (l *Lease) Process(ctx context.Context, consumer string, ev arc.Event, fn func(ctx context.Context) error) (Outcome, error) {
	if consumer == "" || len(consumer) > MaxConsumerLength {
		return 0, fmt.Errorf("%w: consumer name of %d bytes: 1 to %d are allowed", ErrInvalidKey, len(consumer), MaxConsumerLength)
	}
	dk := l.cfg.Key(ev)
	if dk == "" {
		return 0, fmt.Errorf("%w: %w: event %q has no dedupe key", ErrInvalidKey, arc.ErrUnrecoverable, ev.Type)
	}
	key := l.cfg.Prefix + consumer + ":" + dk
	var tok [12]byte
	_, _ = rand.Read(tok[:])
	mine := leaseProcessing + hex.EncodeToString(tok[:])
	got, err := acquireScript.Run(ctx, l.cfg.Client, []string{key}, mine, l.cfg.Lease.Milliseconds()).Text()
	if err != nil {
		return 0, fmt.Errorf("inbox: taking the lease of %s for %s: %w", ev.Meta.ID, consumer, err)
	}
	switch got {
	case "acquired":
	case leaseDone:
		l.cfg.Logger.Debug("inbox: duplicate skipped", watermill.LogFields{
			"consumer": consumer, "message_uuid": ev.Meta.ID, "event_type": ev.Type})
		return Duplicate, nil
	default:
		return 0, fmt.Errorf("%w: event %s, consumer %s", ErrInProgress, ev.Meta.ID, consumer)
	}

	// Renew while fn runs, so that a slow handler keeps its lease.
	owned := func(ctx context.Context, op string, ms int64) error {
		return ownedScript.Run(ctx, l.cfg.Client, []string{key}, mine, op, ms).Err()
	}
	stop := make(chan struct{})
	renewed := make(chan struct{})
	settle := context.WithoutCancel(ctx)
	// If fn panics (or calls runtime.Goexit), stop renewing and release the
	// record before the panic goes on up (to a Recoverer, say): a renewal
	// left running would hold the lease for as long as the process lives,
	// and every later delivery would find the event in progress.
	returned := false
	defer func() {
		if returned {
			return
		}
		close(stop)
		<-renewed
		if rerr := owned(settle, "release", 0); rerr != nil {
			l.cfg.Logger.Error("inbox: releasing a panicked delivery's lease (it lapses after Lease)", rerr,
				watermill.LogFields{"consumer": consumer, "message_uuid": ev.Meta.ID})
		}
	}()
	go func() {
		defer close(renewed)
		t := time.NewTicker(l.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = owned(context.WithoutCancel(ctx), "renew", l.cfg.Lease.Milliseconds())
			}
		}
	}()
	err = fn(ctx)
	returned = true
	close(stop)
	<-renewed
	if err != nil {
		if rerr := owned(settle, "release", 0); rerr != nil {
			l.cfg.Logger.Error("inbox: releasing a failed delivery's lease (it lapses after Lease)", rerr,
				watermill.LogFields{"consumer": consumer, "message_uuid": ev.Meta.ID})
		}
		return 0, err
	}
	// The effect has happened: a failure to record it is logged, not
	// returned, since a retry would repeat the effect.
	if derr := owned(settle, "done", l.cfg.Retention.Milliseconds()); derr != nil {
		l.cfg.Logger.Error("inbox: recording done (a redelivery after the lease lapses repeats the effect)", derr,
			watermill.LogFields{"consumer": consumer, "message_uuid": ev.Meta.ID})
	}
	return Applied, nil
}

// Handle returns a wildcard handler that runs h under the lease for
// consumer: a done event is acked, one in progress is retried.
func (l *Lease) Handle(consumer string, h wildcard.Handler) wildcard.Handler {
	return func(ctx context.Context, ev arc.Event) error {
		_, err := l.Process(ctx, consumer, ev, func(ctx context.Context) error { return h(ctx, ev) })
		return err
	}
}

// Middleware is Lease as a message.HandlerMiddleware, in the same position
// as Inbox.Middleware (inside Retry). consumer "" names the consumer after
// the handler. Messages the handler returns are passed on to the router
// (there is no transaction to put them in); since the record reads "done"
// before the router publishes them, a publish that fails loses them (the
// redelivery is skipped). Emit through an outbox where that matters.
func (l *Lease) Middleware(consumer string) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			name := consumer
			if name == "" {
				name = handlerName(msg.Context())
			}
			var out []*message.Message
			_, err := l.Process(msg.Context(), name, incomingEvent(msg), func(context.Context) error {
				var err error
				out, err = h(msg)
				return err
			})
			return out, err
		}
	}
}
