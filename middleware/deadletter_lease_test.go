package middleware

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

// gatedFinder stores dead letters like findingPublisher, but its look-ups
// are slow (a reply that takes delay) and its publishes wait for proceed:
// a store that honours its context, as a real client does, never stores
// a message whose context ended.
type gatedFinder struct {
	findingPublisher
	delay    time.Duration
	finds    chan struct{} // one per look-up, once it has read the store
	started  chan struct{} // one per publish, once it has begun
	proceeds chan struct{} // closed: publishes go on
}

func (p gatedFinder) FindDeadLetter(ctx context.Context, q DeadLetterQuery) (bool, error) {
	found, err := p.findingPublisher.FindDeadLetter(ctx, q)
	p.finds <- struct{}{}
	select {
	case <-time.After(p.delay): // the slow reply
		return found, err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

func (p gatedFinder) Publish(topic string, msgs ...*message.Message) error {
	ctx := msgs[0].Context()
	p.started <- struct{}{}
	select {
	case <-p.proceeds:
		if err := ctx.Err(); err != nil {
			return err
		}
		return p.findingPublisher.Publish(topic, msgs...)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A guarded dead-letter write that takes over a claim (and so looks for
// the dead letter first) publishes under the claim's deadline: however
// long the look-up took, the publish cannot outlive the lease. Otherwise a
// second delivery, after the lease, takes the claim over, finds nothing
// yet, and both publish: two dead letters for one message.
func TestDeadLetterOnce_PublishEndsWithinTheClaimLease(t *testing.T) {
	t.Parallel()
	f := newOnceFixture(t)
	pub := gatedFinder{findingPublisher: findingPublisher{f.pub, f.client}, delay: 1500 * time.Millisecond,
		finds: make(chan struct{}, 4), started: make(chan struct{}, 4), proceeds: make(chan struct{})}
	cfg := f.config(pub)
	// The look-up (delay) plus a fresh PublishTimeout would outlive the
	// lease by a second; the second delivery's claim, look-up and publish
	// have 1.5 s to spare within its PublishTimeout, for a loaded machine.
	cfg.PublishTimeout, cfg.GuardLease = 3*time.Second, 3500*time.Millisecond
	d, err := NewDeadLetter(cfg)
	require.NoError(t, err)
	ev, err := arc.NewEvent("billing.charge", map[string]int{"n": 1}, arc.Meta{})
	require.NoError(t, err)
	delivered := func() *message.Message {
		m, err := arc.ToMessage(ev)
		require.NoError(t, err)
		m.Metadata.Set(MetadataOriginalID, "9-1")
		m.SetContext(wildcard.ContextWithInfo(context.Background(), wildcard.Info{Handler: "charge", Topic: "orders",
			Pattern: "billing.*", Event: ev}))
		return m
	}
	deliver := func(done chan<- error) {
		_, err := d.Middleware(func(*message.Message) ([]*message.Message, error) {
			return nil, errors.Join(arc.ErrUnrecoverable, errors.New("card declined"))
		})(delivered())
		done <- err
	}
	wait := func(c <-chan struct{}, what string) {
		select {
		case <-c:
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s", what)
		}
	}

	// A delivery that claimed and released (its publish failed) before:
	// the first delivery takes the claim over, and so looks first.
	key := d.guardKey(delivered(), DeadLetteredEvent{SourceTopic: "orders"}, "charge")
	ctx := context.Background()
	_, err = cfg.Guard.Claim(ctx, key, "earlier", time.Minute, time.Minute)
	require.NoError(t, err)
	require.NoError(t, cfg.Guard.Release(ctx, key, "earlier"))

	first, second := make(chan error, 1), make(chan error, 1)
	go deliver(first)
	wait(pub.finds, "look-up by the first delivery")
	wait(pub.started, "publish by the first delivery")
	// Until the first delivery's lease is over, by the guard's clock.
	rkey := cfg.Guard.(*RedisGuard).key(key)
	require.Eventually(t, func() bool {
		v, err := f.client.Get(ctx, rkey).Result()
		if err != nil {
			return false
		}
		parts := strings.Split(v, ":")
		end, _ := strconv.ParseInt(parts[len(parts)-1], 10, 64)
		now, err := f.client.Time(ctx).Result()
		return err == nil && now.UnixMilli() > end
	}, 10*time.Second, 5*time.Millisecond, "the first delivery's lease ends")
	go deliver(second)
	wait(pub.finds, "look-up by the second delivery") // it found nothing: the first has not stored yet
	close(pub.proceeds)                               // now a publish still under way stores
	err1, err2 := <-first, <-second
	t.Logf("first delivery: %v; second: %v", err1, err2)
	require.NoError(t, err2, "the second delivery writes the dead letter")
	require.EqualValues(t, 1, f.deadLetters(), "one dead letter for one message")
}
