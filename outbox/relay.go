package outbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

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
	// TransportFailed counts publish calls that failed on the transport
	// (RelayConfig.TransportError): their rows were given back uncharged.
	TransportFailed int
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
	r.TransportFailed += o.TransportFailed
	r.UsedPublishMany = r.UsedPublishMany || o.UsedPublishMany
}

// Relay moves committed outbox rows to a Watermill publisher, at least
// once. Run starts its workers; RelayBatch runs one pass by hand.
//
// Its lifecycle is the one arcmill's long-lived objects share: Run once,
// Running to wait until it works, and Close (or the end of Run's
// context) to stop it. Close is safe to call more than once, before Run,
// during it and after it, from any goroutine but the relay's own (it
// waits for them: not from OnError or OnPass).
type Relay struct {
	o   *Outbox
	pub message.Publisher
	cfg RelayConfig

	wake    []chan struct{} // one per worker; buffered, so Wake never blocks
	started chan struct{}   // closed by Run once its workers are started

	// testListening, when a test sets it before Run, is called each time
	// the LISTEN connection is in place. Nil outside tests.
	testListening func()

	mu      sync.Mutex
	totals  RelayResult
	status  RelayStatus
	down    int                     // passes in a row that failed (transport or database)
	closed  bool                    // no Run may start (Close was called, or Run returned)
	running bool                    // Run has claimed the relay
	active  bool                    // Run is running: from its start to its return
	cancel  context.CancelCauseFunc // stops Run's workers; set by Run
	done    chan struct{}           // closed when Run returns; set by Run
}

// NewRelay returns a relay from this outbox to pub.
func (o *Outbox) NewRelay(pub message.Publisher, cfg RelayConfig) (*Relay, error) {
	if pub == nil {
		return nil, fmt.Errorf("%w: nil publisher", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if cfg.FailurePolicy == nil {
		cfg.FailurePolicy = ExponentialBackoff(max(cfg.MaxAttempts, 0), cfg.RetryBackoff) // NoMaxAttempts: 0, never
	}
	if cfg.Claim == ClaimLock && !o.q.e.rowLocks() {
		return nil, fmt.Errorf("%w: %s has no row locks; use ClaimLease", ErrInvalidConfig, o.cfg.Dialect)
	}
	cfg.Logger = cfg.Logger.With(watermill.LogFields{"consumer_uuid": cfg.ConsumerID, "table": o.cfg.Table})
	r := &Relay{o: o, pub: pub, cfg: cfg, wake: make([]chan struct{}, cfg.Workers), started: make(chan struct{})}
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

// Run relays until ctx ends or Close is called, and returns why once its
// workers have stopped: context.Cause(ctx) when ctx ended (so
// context.Canceled for a plain cancel), ErrRelayClosed when Close stopped
// it. The relay is closed then. Run returns ErrRelayClosed at once when
// the relay was closed before (a relay runs once), and an error when
// another Run holds the relay.
//
// Before it starts its workers, Run checks that it can read and update
// the outbox table (and its lock table): an error that will not pass by
// itself (ErrMissingTable, ErrAccessDenied: bad credentials, a missing
// grant, Migrate not run) is returned at once, wrapped. A database that
// cannot be reached is an outage, not a mistake: Run starts, and its
// workers retry with OutageBackoff. While it runs, every failure is
// reported (Status, OnError, the Logger) and retried, permanent ones too,
// so that a table restored or a grant given back needs no restart;
// Status().Permanent tells a health check that someone must act.
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
	ctx, cancel := context.WithCancelCause(ctx)
	r.running, r.active, r.cancel, r.done = true, true, cancel, make(chan struct{})
	r.mu.Unlock()
	defer close(r.done)
	defer cancel(nil)
	defer func() { r.mu.Lock(); r.closed, r.active = true, false; r.mu.Unlock() }()
	started := false
	defer func() {
		if !started {
			close(r.started) // nobody waiting on Running may hang on a Run that returned
		}
	}()

	if err := r.preflight(ctx); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if permanent(err) {
			return fmt.Errorf("outbox: relay cannot start: %w", err)
		}
		r.failing(RelayError{Kind: ClaimFailed, Err: err})
	}

	var wg sync.WaitGroup
	if r.o.q.e.notifies() && !r.cfg.DisableNotify {
		wg.Add(1)
		go func() { defer wg.Done(); r.listen(ctx) }()
	}
	for i := 0; i < r.cfg.Workers; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); r.work(ctx, i) }(i)
	}
	close(r.started)
	started = true
	wg.Wait()
	return context.Cause(ctx)
}

// Running returns a channel that is closed once Run has started the
// relay's workers (and, on PostgreSQL, its LISTEN connection's
// goroutine): rows committed from then on are relayed without a further
// call. The first pass of each worker starts at once, so rows committed
// before are relayed too. It is closed too when Run returns without
// starting them (its start-up check failed, or Close came first), so
// wait on it together with Run's result. It stays closed after Run
// returns, and is never closed if the relay was closed before Run
// started.
func (r *Relay) Running() <-chan struct{} { return r.started }

// Close stops Run and waits for its workers; a pass in progress finishes
// its settlements first. It is safe to call more than once.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel != nil {
		cancel(ErrRelayClosed)
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
		wait, paused := time.Duration(0), false
		if err != nil {
			r.failing(RelayError{Kind: ClaimFailed, Err: err})
		} else {
			r.claimed()
		}
		switch {
		case err != nil:
			// The database fails: back off, deaf to wake-ups (which a
			// commit sends, and which would only fail again).
			wait, paused = r.outageDelay(), true
		case res.TransportFailed > 0:
			// The broker is down: wait it out, deaf to wake-ups, which
			// would only fail again.
			wait, paused = r.outageDelay(), true
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
		wake := r.wake[worker]
		if paused {
			wake = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

// RelayBatch runs one pass as worker 0: claim a batch, publish it, settle
// each row. It returns the pass's counters; an error means the claim
// itself failed (nothing was published), and wraps ErrMissingTable or
// ErrAccessDenied when it will not pass by itself. Status follows it as
// it follows Run's passes.
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
	res, err := r.pass(ctx, r.owner(0))
	// Status follows hand-run passes too, for hosts that relay on a timer.
	switch {
	case err != nil && ctx.Err() == nil:
		r.failing(RelayError{Kind: ClaimFailed, Err: err})
	case err == nil:
		r.claimed()
	}
	return res, err
}

func (r *Relay) report(e RelayError) {
	if e.EventID != "" || e.Seq != 0 {
		// One row's trouble: Debug, as Watermill logs per-message events.
		// A failed claim is logged by the worker.
		r.cfg.Logger.Debug("Outbox relay row "+string(e.Kind), watermill.LogFields{
			"message_uuid": e.EventID, "outbox_seq": e.Seq, "err": e.Err})
	}
	if r.cfg.OnError == nil {
		return
	}
	defer func() { _ = recover() }() // Arc swallows a throwing onError
	r.cfg.OnError(e)
}
