package outbox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
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

// RelayResult is Arc's RelayResult: the counters of one pass (or, from
// Relay.Totals, of every pass so far).
type RelayResult struct {
	// Relayed rows were published and acknowledged.
	Relayed int
	// Attempted rows were handed to the publisher.
	Attempted int
	// PublishFailed rows failed to publish.
	PublishFailed int
	// AckFailed rows were published but not acknowledged (at least once:
	// they may be published again).
	AckFailed int
	// OwnershipMismatches counts settlements rejected because another
	// worker owns the row now.
	OwnershipMismatches int
	// Malformed rows could not be read back as messages (dead-lettered).
	Malformed int
	// FailHookErrors counts failures to record a failure.
	FailHookErrors int
	// DeadLettered rows were moved to dead letters.
	DeadLettered int
	// UsedPublishMany is true when rows went out in batch Publish calls.
	UsedPublishMany bool

	claimed  int
	released int
}

func (r *RelayResult) add(o RelayResult) {
	r.Relayed += o.Relayed
	r.Attempted += o.Attempted
	r.PublishFailed += o.PublishFailed
	r.AckFailed += o.AckFailed
	r.OwnershipMismatches += o.OwnershipMismatches
	r.Malformed += o.Malformed
	r.FailHookErrors += o.FailHookErrors
	r.DeadLettered += o.DeadLettered
	r.UsedPublishMany = r.UsedPublishMany || o.UsedPublishMany
}

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
)

// RelayError is one problem a pass met, for RelayConfig.OnError.
type RelayError struct {
	Kind RelayErrorKind
	// Seq and EventID identify the row; zero for ClaimFailed.
	Seq     int64
	EventID string
	Err     error
}

// Relay moves committed outbox rows to a Watermill publisher, at least
// once. Run starts its workers; RelayBatch runs one pass by hand.
type Relay struct {
	o   *Outbox
	pub message.Publisher
	cfg RelayConfig

	wake []chan struct{}

	mu      sync.Mutex
	totals  RelayResult
	closed  bool
	running bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewRelay returns a relay from this outbox to pub.
func (o *Outbox) NewRelay(pub message.Publisher, cfg RelayConfig) (*Relay, error) {
	if pub == nil {
		return nil, fmt.Errorf("%w: nil publisher", ErrInvalidConfig)
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Claim == ClaimLock && !o.q.e.rowLocks() {
		return nil, fmt.Errorf("%w: %s has no row locks; use ClaimLease", ErrInvalidConfig, o.cfg.Dialect)
	}
	r := &Relay{o: o, pub: pub, cfg: cfg, wake: make([]chan struct{}, cfg.Workers)}
	for i := range r.wake {
		r.wake[i] = make(chan struct{}, 1)
	}
	return r, nil
}

// ConsumerID returns the relay's lease owner name (worker 0's).
func (r *Relay) ConsumerID() string { return r.owner(0) }

func (r *Relay) owner(worker int) string {
	if r.cfg.Workers == 1 {
		return r.cfg.ConsumerID
	}
	return r.cfg.ConsumerID + "/" + strconv.Itoa(worker)
}

// Totals returns the sum of every pass's counters so far.
func (r *Relay) Totals() RelayResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.totals
}

// Wake makes idle workers claim at once, as after a commit this process
// made (PostgreSQL's LISTEN/NOTIFY does it across processes).
func (r *Relay) Wake() {
	for _, c := range r.wake {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// Run relays until ctx ends or Close is called, then returns nil; the
// relay is closed then. It returns ErrRelayClosed when the relay was
// closed before (a relay runs once).
func (r *Relay) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrRelayClosed
	}
	if r.running {
		r.mu.Unlock()
		return errors.New("outbox: relay is already running")
	}
	ctx, cancel := context.WithCancel(ctx)
	r.running, r.cancel, r.done = true, cancel, make(chan struct{})
	r.mu.Unlock()
	defer close(r.done)
	defer cancel()
	defer func() { r.mu.Lock(); r.closed = true; r.mu.Unlock() }()

	var wg sync.WaitGroup
	if r.o.q.e.notifies() && !r.cfg.DisableNotify {
		wg.Add(1)
		go func() { defer wg.Done(); r.listen(ctx) }()
	}
	for i := 0; i < r.cfg.Workers; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); r.work(ctx, i) }(i)
	}
	wg.Wait()
	return nil
}

// Close stops Run and waits for its workers; a pass in progress finishes
// its settlements first. It is safe to call more than once.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

func (r *Relay) work(ctx context.Context, worker int) {
	owner := r.owner(worker)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		res, err := r.pass(ctx, owner)
		if ctx.Err() != nil {
			return
		}
		wait := time.Duration(0)
		switch {
		case err != nil:
			r.cfg.Logger.Error("Outbox relay pass failed", err, watermill.LogFields{"consumer": owner})
			wait = r.cfg.PollInterval
		case res.claimed == 0:
			wait = r.cfg.PollInterval
		case res.Relayed+res.DeadLettered == 0:
			// Rows were claimed but none settled: the publisher or the
			// database is failing. Claiming again at once would publish
			// the same rows in a tight loop.
			wait = r.cfg.PollInterval
		case res.claimed < r.cfg.BatchSize:
			wait = r.cfg.BusyPollInterval
		}
		if wait == 0 {
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-r.wake[worker]:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

// RelayBatch runs one pass as worker 0: claim a batch, publish it, settle
// each row. It returns the pass's counters; an error means the claim
// itself failed (nothing was published).
func (r *Relay) RelayBatch(ctx context.Context) (RelayResult, error) {
	r.mu.Lock()
	closed, running := r.closed, r.running
	r.mu.Unlock()
	if closed {
		return RelayResult{}, ErrRelayClosed
	}
	if running {
		// Its worker 0 owns leases under the same name.
		return RelayResult{}, errors.New("outbox: RelayBatch while Run is running; use another Relay")
	}
	return r.pass(ctx, r.owner(0))
}

func (r *Relay) report(e RelayError) {
	if r.cfg.OnError == nil {
		return
	}
	defer func() { _ = recover() }() // Arc swallows a throwing onError
	r.cfg.OnError(e)
}
