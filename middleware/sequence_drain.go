package middleware

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

// drainBatch is how many released keys one look takes.
const drainBatch = 100

// errDrainLeaseLost stops a drain whose lease another instance took.
var errDrainLeaseLost = errors.New("middleware: sequence drain lease lost")

// errNoDrainPublisher fails a drained event whose handler returned
// messages with no SequenceConfig.Publisher to send them.
var errNoDrainPublisher = errors.New("middleware: a drained event's handler returned messages and SequenceConfig.Publisher is not set")

// maxDrainRetryWait caps the doubled wait before a key whose drained
// event failed is tried again.
const maxDrainRetryWait = time.Minute

// drainRetry is when a key whose drained event failed is tried again, and
// the wait that led there (doubled at the next failure).
type drainRetry struct {
	at   time.Time
	wait time.Duration
}

// drainFailed puts key off: PollInterval after its first failure, doubled
// per failure up to maxDrainRetryWait, so that a failing event (its side
// effects repeated at each run) is no hot loop. A handler whose returned
// messages cannot be sent (no Publisher) fails the same way every time
// until the configuration changes: it waits maxDrainRetryWait at once.
func (s *Sequencer) drainFailed(key string, err error) {
	wait := max(s.cfg.PollInterval, time.Millisecond)
	if r, ok := s.retryAt[key]; ok {
		wait = min(2*r.wait, maxDrainRetryWait)
	}
	if errors.Is(err, errNoDrainPublisher) {
		wait = maxDrainRetryWait
	}
	s.retryAt[key] = drainRetry{at: time.Now().Add(wait), wait: wait}
}

// drainLoop drains released sequences until Close: at once when this
// process released one, else every PollInterval (releases by an operator
// or another instance, and drains a crash interrupted).
func (s *Sequencer) drainLoop() {
	defer close(s.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-timer.C:
		case <-s.kick:
		}
		s.drainReleased()
		timer.Reset(s.cfg.PollInterval)
	}
}

// drainReleased drains every released key this instance can lease.
func (s *Sequencer) drainReleased() {
	keys, next, err := s.store.releasedKeys(s.ctx, s.scanCursor, drainBatch)
	if err != nil {
		if s.ctx.Err() == nil {
			s.storeFailures.Add(1)
			s.cfg.Logger.Error("Released sequences not read; trying again", err, watermill.LogFields{"handler_name": s.cfg.Handler})
		}
		return
	}
	s.scanCursor = next
	now := time.Now()
	for key, r := range s.retryAt {
		if now.Sub(r.at) > 2*maxDrainRetryWait { // discarded meanwhile, or drained elsewhere
			delete(s.retryAt, key)
		}
	}
	for _, key := range keys {
		if s.ctx.Err() != nil {
			return
		}
		if r, ok := s.retryAt[key]; ok && now.Before(r.at) {
			continue // failed lately: put off (drainFailed)
		}
		s.drainKey(key)
	}
}

// drainKey runs key's parked events in order under a lease, each removed
// once its handler succeeded; it stops at a failure (to try again later),
// at a dead letter (the event becomes the new head) or at Close.
func (s *Sequencer) drainKey(key string) {
	fields := watermill.LogFields{"handler_name": s.cfg.Handler, "sequence_key": key}
	token := watermill.NewUUID()
	held, err := s.store.lease(s.ctx, key, token, s.cfg.Lease, "take")
	if err != nil || !held {
		if err != nil && s.ctx.Err() == nil {
			s.storeFailures.Add(1)
			s.cfg.Logger.Error("Sequence drain lease not taken", err, fields)
		}
		return // another instance drains it
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), s.cfg.Lease)
		defer cancel()
		_, _ = s.store.lease(ctx, key, token, s.cfg.Lease, "drop")
	}()

	// One renewer for the whole drain, not per handler call: a drain of
	// many quick events outlives the lease, and another instance would
	// then drain the key concurrently (events twice, out of order). A
	// lease lost ends the drain as a shutdown would.
	dctx, dcancel := context.WithCancelCause(s.ctx)
	renewed := make(chan struct{})
	defer func() {
		dcancel(nil)
		<-renewed
	}()
	go func() {
		defer close(renewed)
		t := time.NewTicker(s.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-dctx.Done():
				return
			case <-t.C:
				if ok, err := s.store.lease(dctx, key, token, s.cfg.Lease, "renew"); err == nil && !ok {
					dcancel(fmt.Errorf("%w: %w", ErrShutdown, errDrainLeaseLost))
					return
				}
			}
		}
	}()
	for dctx.Err() == nil {
		// Renew (and check) before each event too: the ticker may not
		// have fired since the last one, and a lease found lost here
		// runs nothing.
		ok, err := s.store.lease(dctx, key, token, s.cfg.Lease, "renew")
		if err != nil {
			s.storeFailed(dctx, "Sequence drain lease not renewed", err, fields)
			return
		}
		if !ok {
			s.cfg.Logger.Info("Sequence drain lease lost; another instance drains the key", fields)
			return
		}
		entry, err := s.store.first(dctx, key)
		if err != nil {
			s.storeFailed(dctx, "Parked event not read", err, fields)
			return
		}
		if entry == nil {
			if err := s.store.finish(dctx, key); err != nil {
				s.storeFailed(dctx, "Drained sequence not removed", err, fields)
			} else {
				s.cfg.Logger.Info("Sequence drained", fields)
			}
			return
		}
		if !s.drainOne(dctx, key, token, entry, fields) {
			return
		}
	}
}

// drainOne runs one parked event under dctx (ended when the lease is
// lost); true to go on with the next.
func (s *Sequencer) drainOne(dctx context.Context, key, token string, entry []byte, fields watermill.LogFields) bool {
	pe, msg, err := decodeParked(entry)
	if err != nil { // cannot happen: we wrote it
		s.cfg.Logger.Error("Parked event not readable; the sequence stays released until discarded", err, fields)
		return false
	}
	fields = fields.Add(watermill.LogFields{"message_uuid": msg.UUID})
	out := &seqOutcome{}
	ctx, cancel := context.WithCancelCause(dctx)
	defer cancel(nil)
	ctx = withDrained(context.WithValue(ctx, seqOutcomeKey{}, out), msg)
	if ev, err := arc.FromMessage(msg); err == nil {
		ctx = wildcard.ContextWithInfo(ctx, wildcard.Info{Handler: s.cfg.Handler, Pattern: msg.Metadata.Get(wildcard.MetadataPattern),
			Topic: msg.Metadata.Get(wildcard.MetadataTopic), Event: ev})
	}
	msg.SetContext(ctx)

	res, herr := s.h(msg)
	if herr == nil && len(res) > 0 {
		herr = s.publish(ctx, res)
	}
	cancel(nil)

	sctx, scancel := context.WithTimeout(context.WithoutCancel(s.ctx), s.cfg.Lease)
	defer scancel()
	if out.deadLettered.Load() {
		out.mu.Lock()
		info := headInfoOf(msg, out.reason, out.err)
		out.mu.Unlock()
		if _, err := s.store.repark(sctx, key, token, entry, pe.ID, RedrivenEventID(msg.UUID), info, time.Now()); err != nil {
			if errors.Is(err, errDrainLeaseLost) {
				s.cfg.Logger.Error("Parked event dead-lettered after the drain lease was lost; the key's new drainer runs it again", err, fields)
				return false
			}
			// It stays first: the next drain runs it again, and the guard
			// finds its dead letter written.
			s.storeFailed(s.ctx, "Dead-lettered parked event not made the new head", err, fields)
			return false
		}
		s.reparked.Add(1)
		s.cfg.Logger.Info("Parked event dead-lettered while releasing: the rest stay parked behind it", fields)
		return false
	}
	if herr != nil {
		if s.ctx.Err() == nil && context.Cause(dctx) == nil {
			s.drainFailed(key, herr)
			wait := s.retryAt[key].wait
			if errors.Is(herr, errNoDrainPublisher) {
				s.cfg.Logger.Error("Drained event's handler returned messages, and SequenceConfig.Publisher is not set to send them: "+
					"the event stays first (its handler ran), tried again later; set SequenceConfig.Publisher and PublishTopic",
					herr, fields.Add(watermill.LogFields{"retry_in": wait}))
			} else {
				s.cfg.Logger.Error("Parked event failed while releasing; it stays first, tried again later", herr,
					fields.Add(watermill.LogFields{"retry_in": wait}))
			}
		}
		return false
	}
	n, err := s.store.pop(sctx, key, token, entry, pe.ID)
	if err != nil {
		if errors.Is(err, errDrainLeaseLost) {
			s.cfg.Logger.Error("Parked event ran after the drain lease was lost; the key's new drainer runs it again", err, fields)
			return false
		}
		s.storeFailed(s.ctx, "Parked event ran but was not removed; it runs again", err, fields)
		return false
	}
	s.drained.Add(1)
	delete(s.retryAt, key)
	return n == 1
}

// publish sends what a drained event's handler returned.
func (s *Sequencer) publish(ctx context.Context, msgs []*message.Message) error {
	if s.cfg.Publisher == nil {
		return errNoDrainPublisher
	}
	for _, m := range msgs {
		m.SetContext(ctx)
	}
	return s.cfg.Publisher.Publish(s.cfg.PublishTopic, msgs...)
}
