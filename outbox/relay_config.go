package outbox

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"time"

	"github.com/ThreeDotsLabs/watermill"
)

// ClaimMode is how a relay holds the rows it is publishing.
type ClaimMode int

const (
	// ClaimAuto is ClaimLock on PostgreSQL and MySQL, and ClaimLease on
	// SQLite or with KeepPartitionOrder.
	ClaimAuto ClaimMode = iota
	// ClaimLease writes a lease (owner and expiry) on each claimed row, as
	// Arc's claimPending: the claim commits at once, and a relay that dies
	// or stalls loses its rows when the lease ends. Settlements check the
	// owner, so a late one is rejected.
	ClaimLease
	// ClaimLock holds row locks in one transaction per pass (claim,
	// publish, settle, commit): no writes to claim, the fastest mode. A
	// dead relay's transaction is rolled back by the server; on PostgreSQL
	// a stalled one is ended after Lease. Not with KeepPartitionOrder.
	ClaimLock
)

// Defaults of RelayConfig, named in its field docs.
const (
	// DefaultWorkers is RelayConfig.Workers's default.
	DefaultWorkers = 1
	// DefaultBatchSize is RelayConfig.BatchSize's default. Arc's is 100;
	// 500 relays 20–40 % more per second (BENCHMARKS.md).
	DefaultBatchSize = 500
	// DefaultLease is RelayConfig.Lease's default.
	DefaultLease = 30 * time.Second
	// DefaultPublishTimeout is RelayConfig.PublishTimeout's default, capped
	// at half the Lease.
	DefaultPublishTimeout = 10 * time.Second
	// DefaultPollInterval is RelayConfig.PollInterval's default.
	DefaultPollInterval = 100 * time.Millisecond
	// DefaultBusyPollInterval is RelayConfig.BusyPollInterval's default,
	// capped at the PollInterval.
	DefaultBusyPollInterval = 5 * time.Millisecond
	// DefaultMaxUnsettledClaims is RelayConfig.MaxUnsettledClaims's default.
	DefaultMaxUnsettledClaims = 10
	// DefaultMaxAttempts is RelayConfig.MaxAttempts's default: the
	// attempt limit of Arc's documented policy, which Arc itself leaves to
	// the host.
	DefaultMaxAttempts = 5
	// NoMaxAttempts, as RelayConfig.MaxAttempts, retries a failing event
	// for ever (Arc's behaviour without a policy).
	NoMaxAttempts = -1
	// DefaultOutageBackoffBase is RelayConfig.OutageBackoff.Base's default:
	// the first pause after a transport failure.
	DefaultOutageBackoffBase = 200 * time.Millisecond
	// DefaultOutageBackoffMax is RelayConfig.OutageBackoff.Max's default: a
	// relay notices a recovered broker within this (plus jitter).
	DefaultOutageBackoffMax = 5 * time.Second
	// NoMaxUnsettledClaims, as RelayConfig.MaxUnsettledClaims, never
	// dead-letters a row for being claimed without being settled.
	NoMaxUnsettledClaims = -1
	// maxConsumerIDLength leaves room for "/worker" in lease_owner's 255
	// bytes.
	maxConsumerIDLength = 240
)

// RelayConfig configures a Relay. For numbers and durations, 0 takes the
// default, a named constant of -1 (where there is one) means none, and any
// other negative value is invalid.
type RelayConfig struct {
	// ConsumerID names the relay as lease owner, in at most 240 bytes.
	// With several Workers, worker i owns leases as ConsumerID/i. Defaults
	// to "relay-" and 8 random base-36 characters, as Arc.
	ConsumerID string
	// Workers is the number of concurrent claim-publish-settle loops in
	// this process. Relays in other processes may share the table: no row
	// is ever leased to two of them at once. Defaults to DefaultWorkers.
	Workers int
	// BatchSize is the most rows one pass claims. Defaults to
	// DefaultBatchSize.
	BatchSize int
	// Lease is how long a claim owns its rows. A relay that dies mid-batch
	// loses nothing: its rows are claimable again when the lease ends.
	// Defaults to DefaultLease.
	Lease time.Duration
	// PublishTimeout bounds each Publish call (through the messages'
	// context); it must be shorter than Lease. Defaults to
	// DefaultPublishTimeout or half the Lease, whichever is shorter.
	PublishTimeout time.Duration
	// PollInterval is the wait after a pass that found no rows, or settled
	// none. On PostgreSQL a LISTEN/NOTIFY wake-up cuts it short when a
	// transaction commits new rows. Defaults to DefaultPollInterval.
	PollInterval time.Duration
	// BusyPollInterval is the wait after a pass that found some rows but
	// less than a full batch: while rows keep coming, they are picked up
	// this soon. It must not be longer than PollInterval. Defaults to
	// DefaultBusyPollInterval or PollInterval, whichever is shorter.
	BusyPollInterval time.Duration
	// DisableNotify turns off LISTEN/NOTIFY on PostgreSQL (it needs the
	// pgx database/sql driver); polling alone remains. Defaults to false.
	DisableNotify bool
	// Claim chooses leases or row locks. Defaults to ClaimAuto.
	Claim ClaimMode
	// KeepPartitionOrder relays rows that share a partition key in order,
	// across workers and relays: a key's row is not claimed while another
	// row of the key is in flight or an earlier one waits for its retry.
	// Without it, each worker relays in table order and rows of one key
	// may overtake each other between workers. It needs leases (not
	// ClaimLock). Defaults to false.
	KeepPartitionOrder bool
	// Types restricts the relay to these event types (exact match), as
	// Arc's claim option types. Defaults to all types.
	Types []string
	// MaxAttempts dead-letters an event after this many failed publishes
	// (its own failures, not the transport's); NoMaxAttempts never does.
	// Unused with a FailurePolicy. Defaults to DefaultMaxAttempts.
	MaxAttempts int
	// RetryBackoff spaces the retries of an event that failed: its Delay
	// of the event's attempts. Unused with a FailurePolicy. Defaults to
	// Backoff{Base: DefaultBackoffBase, Max: DefaultBackoffMax} with
	// DefaultBackoffJitter.
	RetryBackoff Backoff
	// FailurePolicy decides on failed publishes, replacing MaxAttempts and
	// RetryBackoff (setting both is an error). Defaults to
	// ExponentialBackoff(MaxAttempts, RetryBackoff): Arc's documented
	// policy, which Arc itself leaves to the host (without one, Arc
	// retries for ever).
	FailurePolicy FailurePolicy
	// TransportError tells a publish error that is the transport's (the
	// broker unreachable or unable to take writes) from one that is the
	// event's. A transport failure counts no attempt and dead-letters
	// nothing: the rows go back unpublished, the relay pauses
	// (OutageBackoff) and reports it (Relay.Status, OnError with
	// TransportFailed, RelayResult.TransportFailed), and resumes when a
	// publish succeeds again. Only the event's failures reach the
	// FailurePolicy. To extend the rule, wrap IsTransportError:
	// func(err error) bool { return outbox.IsTransportError(err) || … }.
	// Defaults to IsTransportError.
	TransportError func(error) bool
	// OutageBackoff spaces the passes while the publisher's transport or
	// the database fails: its Delay of the number of failed passes in a
	// row, jitter included. Defaults to Backoff{Base:
	// DefaultOutageBackoffBase, Max: DefaultOutageBackoffMax} with
	// DefaultBackoffJitter.
	OutageBackoff Backoff
	// MaxUnsettledClaims dead-letters a row claimed this many times
	// without being settled (a relay that crashes or times out on it each
	// time); NoMaxUnsettledClaims never does. Defaults to
	// DefaultMaxUnsettledClaims.
	MaxUnsettledClaims int
	// OnError receives each problem a pass meets, as Arc's onError; it is
	// called from the relay's goroutines, must not block for long, and must
	// not call Close (which waits for those goroutines). Defaults to none.
	OnError func(RelayError)
	// OnPass receives each pass's result, under OnError's rules. Defaults
	// to none.
	OnPass func(RelayResult)
	// Logger receives the relay's log lines, with Watermill's field names;
	// events about one row are logged at Debug. Defaults to
	// watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

// setDefaults replaces zero values with the defaults; it leaves negative
// values for Validate to judge.
func (c *RelayConfig) setDefaults() {
	if c.ConsumerID == "" {
		c.ConsumerID = "relay-" + randomBase36(8)
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = min(DefaultPublishTimeout, c.Lease/2)
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.BusyPollInterval == 0 {
		c.BusyPollInterval = min(DefaultBusyPollInterval, c.PollInterval)
	}
	if c.FailurePolicy == nil {
		// Only then are they used; left zero beside a FailurePolicy,
		// Validate can tell a conflict after the defaults too.
		if c.MaxAttempts == 0 {
			c.MaxAttempts = DefaultMaxAttempts
		}
		c.RetryBackoff = c.RetryBackoff.withDefaults(DefaultBackoffBase, DefaultBackoffMax)
	}
	if c.TransportError == nil {
		c.TransportError = IsTransportError
	}
	c.OutageBackoff = c.OutageBackoff.withDefaults(DefaultOutageBackoffBase, DefaultOutageBackoffMax)
	if c.MaxUnsettledClaims == 0 {
		c.MaxUnsettledClaims = DefaultMaxUnsettledClaims
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate reports a configuration that cannot work, naming the field.
// It judges the configuration as NewRelay would use it, defaults applied;
// every error wraps ErrInvalidConfig.
func (c RelayConfig) Validate() error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	if c.FailurePolicy != nil && (c.MaxAttempts != 0 || c.RetryBackoff != (Backoff{})) {
		return invalid("FailurePolicy replaces MaxAttempts and RetryBackoff: set one or the others")
	}
	if err := c.RetryBackoff.validate("RetryBackoff"); err != nil {
		return err
	}
	if err := c.OutageBackoff.validate("OutageBackoff"); err != nil {
		return err
	}
	c.setDefaults()
	switch {
	case len(c.ConsumerID) > maxConsumerIDLength:
		return invalid("ConsumerID is longer than %d bytes", maxConsumerIDLength)
	case c.Workers < 0:
		return invalid("Workers (%d) must not be negative", c.Workers)
	case c.BatchSize < 0:
		return invalid("BatchSize (%d) must not be negative", c.BatchSize)
	case c.Lease < 0:
		return invalid("Lease (%s) must not be negative", c.Lease)
	case c.PublishTimeout < 0:
		return invalid("PublishTimeout (%s) must not be negative", c.PublishTimeout)
	case c.PublishTimeout >= c.Lease:
		return invalid("PublishTimeout (%s) must be shorter than Lease (%s)", c.PublishTimeout, c.Lease)
	case c.PollInterval < 0:
		return invalid("PollInterval (%s) must not be negative", c.PollInterval)
	case c.BusyPollInterval < 0:
		return invalid("BusyPollInterval (%s) must not be negative", c.BusyPollInterval)
	case c.BusyPollInterval > c.PollInterval:
		return invalid("BusyPollInterval (%s) must not be longer than PollInterval (%s)", c.BusyPollInterval, c.PollInterval)
	case c.Claim < ClaimAuto || c.Claim > ClaimLock:
		return invalid("unknown Claim mode %d", c.Claim)
	case c.Claim == ClaimLock && c.KeepPartitionOrder:
		return invalid("KeepPartitionOrder needs leases (ClaimLease or ClaimAuto)")
	case c.MaxAttempts < 0 && c.MaxAttempts != NoMaxAttempts:
		return invalid("MaxAttempts (%d) must be positive or NoMaxAttempts", c.MaxAttempts)
	case c.MaxUnsettledClaims < 0 && c.MaxUnsettledClaims != NoMaxUnsettledClaims:
		return invalid("MaxUnsettledClaims (%d) must be positive or NoMaxUnsettledClaims", c.MaxUnsettledClaims)
	}
	return nil
}

func randomBase36(n int) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	for i := range b {
		v, err := rand.Int(rand.Reader, big.NewInt(36))
		if err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
		b[i] = digits[v.Int64()]
	}
	return string(b)
}
