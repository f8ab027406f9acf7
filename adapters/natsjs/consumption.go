package natsjs

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/delay"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
)

// consumption is one subscription. nats.go's callback (receive) only
// queues what the server pushes; one goroutine (run) hands the messages to
// the handler one at a time and, every half AckWaitTimeout, tells the
// server that each message it holds is in progress: the one in the handler
// and every one waiting behind it. The server pushes up to MaxAckPending
// messages at once, and each one's ack wait runs from its delivery: were
// only the one in hand reported, a handler slower than the ack wait (a
// downstream outage, an open breaker) would have the waiting messages
// redelivered, each redelivery spending one of MaxDeliver, until JetStream
// gave up on messages that were never attempted.
type consumption struct {
	s                      *Subscriber
	ctx                    context.Context
	stream, durable, topic string
	out                    chan *message.Message
	queue                  *waiting
	logFields              watermill.LogFields

	// Set before run starts, then owned by run's goroutine.
	sub, adv *nats.Subscription
	progress <-chan time.Time // run's ticker: report what is held
	stopped  bool
}

// receive is the subscription's nats.go callback. It never blocks, so
// nats.go's own queue, which drops messages past its limits, stays empty.
func (c *consumption) receive(m *nats.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		c.s.cfg.Logger.Error("Not a JetStream message; terminated", err, c.logFields)
		_ = m.Term()
		return
	}
	msg := toMessage(m.Header, m.Data, meta.Sequence.Stream)
	msg.Metadata.Set(MetadataDelivered, strconv.FormatUint(meta.NumDelivered, 10))
	r := &received{raw: m, msg: msg, delivered: meta.NumDelivered}
	if until, err := time.Parse(time.RFC3339, msg.Metadata.Get(delay.DelayedUntilKey)); err == nil {
		if wait := time.Until(until); wait > 0 {
			c.nak(m, wait, c.fields(r)) // a delayed retry, early: held back by the server
			return
		}
	}
	if !c.queue.push(r) {
		c.nak(m, 0, c.fields(r)) // stopped: to another member of the group, now
	}
}

// run hands the waiting messages to the handler until the subscription's
// context ends or the Subscriber closes, then stops the intake, nacks what
// waits, and closes out once the message in hand is settled.
func (c *consumption) run() {
	defer c.s.wg.Done()
	defer close(c.out)
	defer c.stop(nil) // first of the three: nothing waits when out closes
	// Half the ack wait leaves the other half for the report to arrive.
	// The floor only keeps a nonsensical AckWaitTimeout from panicking.
	progress := time.NewTicker(max(c.s.cfg.AckWaitTimeout/2, time.Millisecond))
	defer progress.Stop()
	c.progress = progress.C
	for {
		select {
		case <-c.queue.ready:
			for r := c.queue.pop(); r != nil; r = c.queue.pop() {
				if !c.handle(r) {
					return
				}
			}
		case <-c.progress:
			c.reportProgress(nil)
		case <-c.s.closing:
			return
		case <-c.ctx.Done():
			return
		}
	}
}

// handle hands r to the handler and settles it as the handler says. It
// reports false once the intake is stopped: the Subscriber closed or the
// subscription's context ended, and r is settled or nacked.
func (c *consumption) handle(r *received) bool {
	fields := c.fields(r)
	if c.stopping() { // before a handler, which may be ready too, can take it
		c.stop(r)
		return false
	}
	ctx, cancel := context.WithCancelCause(c.ctx)
	defer cancel(nil)
	r.msg.SetContext(ctx)
	for handed := false; !handed; {
		select {
		case c.out <- r.msg:
			handed = true
		case <-c.progress:
			c.reportProgress(r)
		case <-c.s.closing:
			c.stop(r) // to another member of the group, now
			return false
		case <-c.ctx.Done():
			c.stop(r)
			return false
		}
	}
	closing, ctxDone := c.s.closing, c.ctx.Done()
	var deadline <-chan time.Time
	for {
		select {
		case <-c.progress:
			// Still working: the ack wait is for crashed processes.
			c.reportProgress(r)
		case <-r.msg.Acked():
			if err := r.raw.AckSync(); err != nil {
				c.s.cfg.Logger.Error("Ack failed; JetStream will redeliver", err, fields)
			} else {
				c.s.cfg.Logger.Trace("Message acked", fields)
			}
			return !c.stopped
		case <-r.msg.Nacked():
			c.nak(r.raw, c.s.cfg.nakDelay(r.delivered), fields)
			return !c.stopped
		case <-closing:
			closing, ctxDone = nil, nil
			c.stop(nil) // the waiting messages go to another member now
			deadline = time.After(c.s.cfg.CloseTimeout)
		case <-ctxDone:
			closing, ctxDone = nil, nil
			c.stop(nil)
			deadline = time.After(c.s.cfg.CloseTimeout)
		case <-deadline:
			cancel(ErrClosed)
			c.s.cfg.Logger.Info("Handler did not settle the message within CloseTimeout; nacked", fields)
			c.nak(r.raw, 0, fields)
			return false
		}
	}
}

// stopping reports whether the Subscriber is closing or the
// subscription's context has ended.
func (c *consumption) stopping() bool {
	select {
	case <-c.s.closing:
		return true
	case <-c.ctx.Done():
		return true
	default:
		return false
	}
}

// reportProgress tells the server that every message held is still being
// worked on (+WPI), which restarts its ack wait without counting a
// delivery: inHand (nil when the handler is idle) and each one waiting.
func (c *consumption) reportProgress(inHand *received) {
	held := c.queue.snapshot()
	if inHand != nil {
		held = append(held, inHand)
	}
	var failed int
	var first error
	for _, r := range held {
		if err := r.raw.InProgress(); err != nil {
			if failed == 0 {
				first = err
			}
			failed++
		}
	}
	if failed > 0 {
		// One line per round, not per message: a disconnection fails them all.
		c.s.cfg.Logger.Error("Telling the server the held messages are in progress failed; it redelivers those past their ack wait",
			first, c.logFields.Add(watermill.LogFields{"failed": failed, "held": len(held)}))
	}
}

// stop stops the intake once: it unsubscribes (the consumer stays on the
// server) and nacks first, the message about to be handed out if any, then
// every waiting message, so that another member of the group receives
// them now, in order, rather than after their ack wait. The unsubscription
// goes out first on the connection, so the server sends none of them back
// here. A callback still running nacks its message itself (the queue
// refuses it).
func (c *consumption) stop(first *received) {
	var left []*received
	if first != nil {
		left = append(left, first)
	}
	if !c.stopped {
		c.stopped = true
		if err := c.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			c.s.cfg.Logger.Error("Unsubscribe failed", err, c.logFields)
		}
		_ = c.adv.Unsubscribe()
		left = append(left, c.queue.stop()...)
	}
	for _, r := range left {
		c.nak(r.raw, 0, c.fields(r))
	}
	if len(left) > 0 {
		c.s.cfg.Logger.Debug("Waiting messages nacked on stop", c.logFields.Add(watermill.LogFields{"nacked": len(left)}))
	}
}

// fields are the log fields of r.
func (c *consumption) fields(r *received) watermill.LogFields {
	return c.logFields.Add(watermill.LogFields{"message_uuid": r.msg.UUID, "delivered": r.delivered})
}

// nak asks for a redelivery after wait (at once when 0).
func (c *consumption) nak(m *nats.Msg, wait time.Duration, fields watermill.LogFields) {
	var err error
	if wait > 0 {
		err = m.NakWithDelay(wait)
	} else {
		err = m.Nak()
	}
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		c.s.cfg.Logger.Error("Nak failed; JetStream redelivers after the ack wait", err, fields)
		return
	}
	c.s.cfg.Logger.Trace("Message nacked", fields.Add(watermill.LogFields{"delay": wait.String()}))
}
