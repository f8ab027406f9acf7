package middleware

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Subscriber returns sub with its intake gated by the breaker: while the
// breaker is open, each subscription it makes hands out no new message
// (the broker keeps them; nothing is read ahead beyond what sub itself
// buffers), and while it is half-open it hands out one only when no
// message in hand waits to be the probe. A message handed out while the
// breaker is not closed is followed by no other until it is settled or
// the breaker closes, so a paused subscription holds at most one message
// beyond those in hand when it tripped.
//
// Give every handler guarded by the breaker this subscriber (and the
// breaker's Middleware): the breaker is per subscription. With the
// wildcard router a source is a (subscriber, topic), so handlers that need
// breakers of their own need subscribers (consumer groups) of their own, as
// in Watermill. The result is a wildcard.KeyOrderedSubscriber when sub is
// one: gating delays messages, it never reorders them.
//
// What a paused subscription keeps depends on sub: arcmill's Redis Streams
// Subscriber keeps what it has read pending in the group, fresh (its
// heartbeat), without spending a delivery. arcmill's JetStream
// Subscriber (natsjs) reports every message it holds, up to MaxAckPending,
// in progress every half AckWaitTimeout, so a pause spends none of their
// deliveries either; another JetStream subscriber may let the server
// redeliver what waits longer than its ack wait.
//
// Each subscription runs one goroutine, which ends when the subscription's
// context ends or sub closes its channel; Close closes sub.
func (b *Breaker) Subscriber(sub message.Subscriber) message.Subscriber {
	g := gatedSubscriber{sub: sub, b: b}
	if ko, ok := sub.(keyOrdered); ok {
		return keyOrderedGate{gatedSubscriber: g, ko: ko}
	}
	return g
}

// keyOrdered is wildcard.KeyOrderedSubscriber's method, named here so that
// the gate passes it on.
type keyOrdered interface{ OrdersByPartitionKey() bool }

type gatedSubscriber struct {
	sub message.Subscriber
	b   *Breaker
}

type keyOrderedGate struct {
	gatedSubscriber
	ko keyOrdered
}

// OrdersByPartitionKey passes on the gated subscriber's answer.
func (g keyOrderedGate) OrdersByPartitionKey() bool { return g.ko.OrdersByPartitionKey() }

// Close closes the gated subscriber.
func (g gatedSubscriber) Close() error { return g.sub.Close() }

// Subscribe subscribes to topic, gating the messages by the breaker.
func (g gatedSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	in, err := g.sub.Subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	go g.forward(ctx, in, out)
	return out, nil
}

// forward hands out in's messages on out, pausing while the breaker says.
func (g gatedSubscriber) forward(ctx context.Context, in <-chan *message.Message, out chan<- *message.Message) {
	defer close(out)
	for {
		if g.b.intake(ctx) != nil {
			return // the subscription ends; sub gives back what it holds
		}
		var msg *message.Message
		select {
		case m, ok := <-in:
			if !ok {
				return
			}
			msg = m
		case <-ctx.Done():
			return
		}
		select {
		case out <- msg:
		case <-ctx.Done():
			msg.Nack()
			return
		}
		g.b.settledOrClosed(ctx, msg)
	}
}

// intake returns when a paused subscription may hand out its next message
// (see Subscriber), or ctx's error.
func (b *Breaker) intake(ctx context.Context) error {
	for {
		switch b.sync(ctx) {
		case BreakerClosed:
			return nil
		case BreakerHalfOpen:
			b.mu.Lock()
			free := !b.probing && b.waiting == 0
			b.unlock()
			if free {
				return nil // the next message will be the probe
			}
		}
		if err := b.wait(ctx, false); err != nil {
			return err
		}
	}
}

// settledOrClosed returns once msg, handed out while the breaker was not
// closed, is acked or nacked, or the breaker is closed; at once when it is
// closed already.
func (b *Breaker) settledOrClosed(ctx context.Context, msg *message.Message) {
	b.mu.Lock()
	if b.state == BreakerClosed {
		b.unlock()
		return
	}
	b.paused++ // holding back the next message
	b.unlock()
	defer func() {
		b.mu.Lock()
		b.paused--
		b.unlock()
	}()
	timer := time.NewTimer(b.cfg.SyncInterval)
	defer timer.Stop()
	for {
		b.mu.Lock()
		st, ch := b.state, b.changed
		b.unlock()
		if st == BreakerClosed {
			return
		}
		select {
		case <-msg.Acked():
			return
		case <-msg.Nacked():
			return
		case <-ctx.Done():
			return
		case <-ch:
		case <-timer.C:
			b.sync(ctx)
			timer.Reset(b.cfg.SyncInterval)
		}
	}
}
