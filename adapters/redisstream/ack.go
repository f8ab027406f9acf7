package redisstream

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/internal/testsignal"
)

// Retry pacing for a failing XACK: the batch is kept and sent again, with
// a backoff between these bounds.
const (
	ackRetryMin = 10 * time.Millisecond
	ackRetryMax = time.Second
	// closeFlushAttempts bounds the last flush of a stopping consumer.
	closeFlushAttempts = 3
)

// ackerConfig configures an acker.
type ackerConfig struct {
	Client        redis.UniversalClient
	Stream, Group string
	// MaxBatch acks trigger a flush at once.
	MaxBatch int
	// Interval is the longest an ack waits; None flushes every ack at once.
	Interval time.Duration
	// Timeout bounds each XACK attempt.
	Timeout time.Duration
	Logger  watermill.LoggerAdapter
	// OnAcked is told the entries each successful XACK settled.
	OnAcked func(ids []string)
	// Flushed is signalled with the size of each successful XACK.
	Flushed *testsignal.Signal[int]
}

// acker batches the acks of one consumer into XACKs. It owns its batch:
// ack appends under a short lock, and one goroutine (run) swaps the batch
// out and sends it with the lock released, so an XACK never stalls a
// delivery or a settle. A failed XACK puts the batch back for the next
// flush: acks are retried, never dropped (an ack lost here would only cost
// a redelivery, but the claim of a handled entry is what this prevents).
//
// A batch is sent when MaxBatch acks have gathered, when the oldest has
// waited Interval, or when the consumer asks (flush), which it does before
// every claim and every blocking read.
type acker struct {
	cfg ackerConfig

	mu      sync.Mutex
	pending []string // guarded by mu; appended by settles, swapped out by run

	kick    chan struct{}   // something was added: run looks at the batch
	flushes chan chan error // synchronous flushes, answered by run
	quit    chan struct{}   // closed by close
	done    chan struct{}   // closed when run has returned
	startMu sync.Once
}

func newAcker(cfg ackerConfig) *acker {
	if cfg.OnAcked == nil {
		cfg.OnAcked = func([]string) {}
	}
	if cfg.Flushed == nil {
		cfg.Flushed = &testsignal.Signal[int]{}
	}
	return &acker{cfg: cfg, kick: make(chan struct{}, 1), flushes: make(chan chan error),
		quit: make(chan struct{}), done: make(chan struct{})}
}

// start runs the acker's goroutine; close stops it.
func (a *acker) start() { a.startMu.Do(func() { go a.run() }) }

// ack queues entry id for the next XACK.
func (a *acker) ack(id string) {
	a.mu.Lock()
	a.pending = append(a.pending, id)
	n := len(a.pending)
	a.mu.Unlock()
	if n == 1 || n >= a.cfg.MaxBatch || a.cfg.Interval == None {
		select {
		case a.kick <- struct{}{}:
		default: // run will look anyway
		}
	}
}

// flush sends every queued ack now and reports whether they are written.
func (a *acker) flush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case a.flushes <- reply:
	case <-ctx.Done():
		return ctx.Err()
	case <-a.done:
		return ErrClosed
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close sends what is queued (a few attempts) and stops the goroutine.
// Acks it cannot send leave their entries pending: delivered again.
func (a *acker) close() {
	select {
	case <-a.quit:
	default:
		close(a.quit)
	}
	<-a.done
}

func (a *acker) run() {
	defer close(a.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	arm := func(d time.Duration) {
		if !armed {
			timer.Reset(d)
			armed = true
		}
	}
	failures := 0
	send := func() error {
		err := a.send()
		if err != nil {
			failures++
			arm(min(ackRetryMin<<min(failures, 10), ackRetryMax))
		} else {
			failures = 0
		}
		return err
	}
	for {
		select {
		case <-a.kick:
			if n := a.size(); n >= a.cfg.MaxBatch || a.cfg.Interval == None {
				_ = send()
			} else if n > 0 {
				arm(a.cfg.Interval)
			}
		case <-timer.C:
			armed = false
			_ = send()
		case reply := <-a.flushes:
			reply <- send()
		case <-a.quit:
			timer.Stop()
			for attempt := 1; attempt <= closeFlushAttempts; attempt++ {
				if a.send() == nil {
					return
				}
				time.Sleep(ackRetryMin << attempt) // the goroutine's own pacing; nothing else waits on it but close
			}
			if n := a.size(); n > 0 {
				a.cfg.Logger.Error("XACK failed while stopping; the entries stay pending and will be delivered again", nil,
					watermill.LogFields{"entries": n})
			}
			return
		}
	}
}

func (a *acker) size() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending)
}

// send writes the queued acks in one XACK, detached from any caller's
// cancellation (a stopping consumer still settles) and bounded by Timeout.
// On failure the batch goes back in front of acks queued meanwhile.
func (a *acker) send() error {
	a.mu.Lock()
	batch := a.pending
	a.pending = nil
	a.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.Timeout)
	defer cancel()
	if err := a.cfg.Client.XAck(ctx, a.cfg.Stream, a.cfg.Group, batch...).Err(); err != nil {
		a.mu.Lock()
		a.pending = append(batch, a.pending...)
		a.mu.Unlock()
		a.cfg.Logger.Error("XACK failed; the acks are kept and sent again", err, watermill.LogFields{"entries": len(batch)})
		return errors.Join(errAckFailed, err)
	}
	a.cfg.OnAcked(batch)
	a.cfg.Flushed.Signal(len(batch))
	return nil
}

var errAckFailed = errors.New("redisstream: XACK failed")
