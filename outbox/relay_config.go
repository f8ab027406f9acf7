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

// RelayConfig configures a Relay. Zero values take the documented defaults.
type RelayConfig struct {
	// ConsumerID names the relay as lease owner. Default "relay-" and 8
	// random base-36 characters, as Arc. With several Workers, worker i
	// owns leases as ConsumerID/i.
	ConsumerID string
	// Workers is the number of concurrent claim-publish-settle loops in
	// this process; default 1. Relays in other processes may share the
	// table: no row is ever leased to two of them at once.
	Workers int
	// BatchSize is the most rows one pass claims; default 500 (Arc's is
	// 100; 500 relays 20–40 % more per second, BENCHMARKS.md).
	BatchSize int
	// Lease is how long a claim owns its rows; default 30 s. A relay that
	// dies mid-batch loses nothing: its rows are claimable again when the
	// lease ends.
	Lease time.Duration
	// PublishTimeout bounds each Publish call (through the messages'
	// context); default 10 s, and it must be shorter than Lease.
	PublishTimeout time.Duration
	// PollInterval is the wait after a pass that found less than a full
	// batch; default 100 ms. On PostgreSQL a LISTEN/NOTIFY wake-up cuts it
	// short when a transaction commits new rows.
	PollInterval time.Duration
	// BusyPollInterval is the wait after a pass that found some rows but
	// less than a full batch: while rows keep coming, they are picked up
	// this soon. Default 5 ms (at most PollInterval).
	BusyPollInterval time.Duration
	// DisableNotify turns off LISTEN/NOTIFY on PostgreSQL (it needs the
	// pgx database/sql driver); polling alone remains.
	DisableNotify bool
	// Claim chooses leases or row locks; default ClaimAuto.
	Claim ClaimMode
	// KeepPartitionOrder relays rows that share a partition key in order,
	// across workers and relays: a key's row is not claimed while another
	// row of the key is in flight or an earlier one waits for its retry.
	// Without it, each worker relays in table order and rows of one key
	// may overtake each other between workers.
	KeepPartitionOrder bool
	// Types restricts the relay to these event types (exact match), as
	// Arc's claim option types; empty means all.
	Types []string
	// FailurePolicy decides on failed publishes; default
	// ExponentialBackoff(5, Backoff{}): Arc's documented policy, which Arc
	// itself leaves to the host (without one, Arc retries for ever).
	FailurePolicy FailurePolicy
	// MaxUnsettledClaims dead-letters a row claimed this many times
	// without being settled (a relay that crashes or times out on it each
	// time); default 10, negative disables.
	MaxUnsettledClaims int
	// OnError receives each problem a pass meets, as Arc's onError; it is
	// called from the relay's goroutines, must not block for long, and must
	// not call Close (which waits for those goroutines).
	OnError func(RelayError)
	// OnPass receives each pass's result, under OnError's rules.
	OnPass func(RelayResult)
	// Logger defaults to no logging.
	Logger watermill.LoggerAdapter
}

func (c *RelayConfig) setDefaults() {
	if c.ConsumerID == "" {
		c.ConsumerID = "relay-" + randomBase36(8)
	}
	if c.Workers <= 0 {
		c.Workers = 1
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.Lease <= 0 {
		c.Lease = 30 * time.Second
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = min(10*time.Second, c.Lease/2)
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.BusyPollInterval <= 0 {
		c.BusyPollInterval = 5 * time.Millisecond
	}
	c.BusyPollInterval = min(c.BusyPollInterval, c.PollInterval)
	if c.FailurePolicy == nil {
		c.FailurePolicy = ExponentialBackoff(5, Backoff{})
	}
	if c.MaxUnsettledClaims == 0 {
		c.MaxUnsettledClaims = 10
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate reports a configuration that cannot work.
func (c RelayConfig) Validate() error {
	if c.PublishTimeout >= c.Lease {
		return fmt.Errorf("%w: PublishTimeout (%s) must be shorter than Lease (%s)", ErrInvalidConfig, c.PublishTimeout, c.Lease)
	}
	if c.Claim == ClaimLock && c.KeepPartitionOrder {
		return fmt.Errorf("%w: KeepPartitionOrder needs leases (ClaimLease or ClaimAuto)", ErrInvalidConfig)
	}
	if len(c.ConsumerID) > 240 {
		return fmt.Errorf("%w: ConsumerID is longer than 240 bytes", ErrInvalidConfig)
	}
	return nil
}

func randomBase36(n int) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	for i := range b {
		v, _ := rand.Int(rand.Reader, big.NewInt(36))
		b[i] = digits[v.Int64()]
	}
	return string(b)
}

