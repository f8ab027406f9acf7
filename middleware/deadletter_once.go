package middleware

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// DefaultGuardTTL is DeadLetterConfig.GuardTTL's default: how long a
// written dead letter is remembered. A delivery of the same message that
// comes later than that (a consumer group left down for a day with the
// entry pending) writes a second dead letter: never none.
const DefaultGuardTTL = 24 * time.Hour

// DefaultGuardLeaseMargin is what DeadLetterConfig.GuardLease adds, by
// default, to PublishTimeout: a claim outlives the longest publish it
// covers, so no second delivery publishes while the first may still do so.
const DefaultGuardLeaseMargin = 5 * time.Second

// DefaultGuardPrefix starts the keys of RedisGuard.
const DefaultGuardPrefix = "arcmill:dlq-once:"

// GuardState is what DeadLetterGuard.Claim found.
type GuardState int

const (
	// GuardClaimed: nobody had written or was writing this dead letter; the
	// caller holds the claim for the lease and must publish.
	GuardClaimed GuardState = iota + 1
	// GuardDone: the dead letter is written; the message is acknowledged
	// without writing it again.
	GuardDone
	// GuardBusy: another delivery claimed it and its lease still runs (it
	// is publishing, or it crashed before it could): the message is nacked
	// and comes back; once the lease is over, a delivery claims it anew.
	GuardBusy
)

// DeadLetterGuard makes dead letters once-only across crashes and
// processes. DeadLetter claims a key that names the delivery (consumer
// group, dead-letter topic, source topic, handler, transport id) before
// publishing, marks it done after the publish, and releases it when the
// publish fails, so that:
//
//   - a crash after the publish (before the ack) brings the message back
//     to a delivery that finds the key done and acknowledges it;
//   - a crash after the claim (before the publish) leaves a claim that ends
//     with its lease, after which a delivery claims it and publishes: the
//     dead letter is late, never lost;
//   - a failed publish releases the claim, so the next delivery retries it.
//
// RedisGuard implements it; any store with an atomic check-and-set and
// expiry can.
type DeadLetterGuard interface {
	// Claim records key as being written by token for lease, unless it is
	// written (GuardDone) or claimed by another token whose lease runs
	// (GuardBusy).
	Claim(ctx context.Context, key, token string, lease time.Duration) (GuardState, error)
	// Done records key as written, for ttl.
	Done(ctx context.Context, key string, ttl time.Duration) error
	// Release removes token's claim of key, if it still holds it.
	Release(ctx context.Context, key, token string) error
}

// RedisClienter is a publisher that writes to Redis through a client it
// can share (arcmill's redisstream Publisher and DeadLetterPublisher):
// DeadLetter keeps its guard on that client by default.
type RedisClienter interface {
	RedisClient() redis.UniversalClient
}

// RedisGuard is a DeadLetterGuard on Redis: one key per dead letter,
// holding "publishing:<token>" with the lease as its expiry, then "done"
// with the TTL. Each call is one round trip; Claim is a script, so
// check-and-set is atomic on a primary (and on a cluster: one key).
type RedisGuard struct {
	// Client stores the keys. Required.
	Client redis.UniversalClient
	// Prefix starts every key. Defaults to DefaultGuardPrefix.
	Prefix string
}

// claimScript: ARGV[1] the claim's value, ARGV[2] the lease in ms.
// Returns 1 claimed, 2 done, 3 busy.
var claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == 'done' then return 2 end
return 3`)

// releaseScript deletes KEYS[1] if it still holds ARGV[1].
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

const guardDoneValue = "done"

func (g *RedisGuard) key(k string) string {
	if g.Prefix == "" {
		return DefaultGuardPrefix + k
	}
	return g.Prefix + k
}

// Claim implements DeadLetterGuard.
func (g *RedisGuard) Claim(ctx context.Context, key, token string, lease time.Duration) (GuardState, error) {
	n, err := claimScript.Run(ctx, g.Client, []string{g.key(key)}, "publishing:"+token, lease.Milliseconds()).Int()
	if err != nil {
		return 0, err
	}
	if n < int(GuardClaimed) || n > int(GuardBusy) {
		return 0, fmt.Errorf("middleware: RedisGuard: unexpected claim reply %d", n)
	}
	return GuardState(n), nil
}

// Done implements DeadLetterGuard.
func (g *RedisGuard) Done(ctx context.Context, key string, ttl time.Duration) error {
	return g.Client.Set(ctx, g.key(key), guardDoneValue, ttl).Err()
}

// Release implements DeadLetterGuard.
func (g *RedisGuard) Release(ctx context.Context, key, token string) error {
	return releaseScript.Run(ctx, g.Client, []string{g.key(key)}, "publishing:"+token).Err()
}

// ErrDeadLetterBusy is the error of a message whose dead letter another
// delivery has claimed and may still be publishing: it is nacked and comes
// back after the claim's lease.
var ErrDeadLetterBusy = errors.New("middleware: dead letter claimed by another delivery; retried after its lease")

// guardStage names a point of publishOnce, for tests that crash there.
type guardStage int

const (
	stageClaimed   guardStage = iota + 1 // claimed, not yet published
	stagePublished                       // published and marked done, not yet acknowledged
)

// setGuardDefaults picks the guard: the configured one, else a RedisGuard
// on GuardClient or on the Publisher's client.
func (c *DeadLetterConfig) setGuardDefaults() {
	if c.GuardTTL == 0 {
		c.GuardTTL = DefaultGuardTTL
	}
	if c.GuardLease == 0 {
		c.GuardLease = c.PublishTimeout + DefaultGuardLeaseMargin
	}
	if c.Guard != nil || c.NoGuard {
		return
	}
	client := c.GuardClient
	if rc, ok := c.Publisher.(RedisClienter); ok && client == nil {
		client = rc.RedisClient()
	}
	if client != nil {
		c.Guard = &RedisGuard{Client: client}
	}
}

func (c *DeadLetterConfig) validateGuard() error {
	if c.Guard == nil {
		return nil
	}
	switch {
	case c.GuardTTL < 0:
		return fmt.Errorf("%w: DeadLetterConfig.GuardTTL must be positive or 0 (default), got %v", ErrInvalidConfig, c.GuardTTL)
	case c.GuardLease <= c.PublishTimeout:
		return fmt.Errorf("%w: DeadLetterConfig.GuardLease (%v) must be longer than PublishTimeout (%v): a claim must outlive its publish",
			ErrInvalidConfig, c.GuardLease, c.PublishTimeout)
	case c.GuardTTL <= c.GuardLease:
		return fmt.Errorf("%w: DeadLetterConfig.GuardTTL (%v) must be longer than GuardLease (%v)",
			ErrInvalidConfig, c.GuardTTL, c.GuardLease)
	}
	return nil
}

// Guarded reports whether dead letters are once-only: a guard is set and
// ConsumerGroup names the group. A message without a transport id
// (MetadataOriginalID) is still dead-lettered at least once.
func (d *DeadLetter) Guarded() bool { return d.cfg.Guard != nil && d.cfg.ConsumerGroup != "" }

// guardKey names msg's delivery to one handler of one consumer group: ""
// when it cannot be named (no guard, no group, or no transport id), and
// then the dead letter is written without a guard. The message UUID is not
// enough: a redriven dead letter comes back with its UUID, and must be
// dead-lettered again if it fails again; a transport id is new each time.
//
// handler is the handler's name, or "" for Malformed: the router's own
// failure, before any handler (the wildcard router's Watermill handler
// names are numbered in subscription order, not stable across processes).
func (d *DeadLetter) guardKey(msg *message.Message, dl DeadLetteredEvent, handler string) string {
	id := msg.Metadata.Get(MetadataOriginalID)
	if !d.Guarded() || id == "" {
		return ""
	}
	return strconv.Quote(d.cfg.ConsumerGroup) + ":" + strconv.Quote(d.cfg.Topic) + ":" + strconv.Quote(dl.SourceTopic) +
		":" + strconv.Quote(handler) + ":" + strconv.Quote(id)
}

// publishOnce publishes dl unless it is written already: claim, publish,
// mark done; the claim is released if the publish fails, so the next
// delivery tries again. A nil error acknowledges the message.
func (d *DeadLetter) publishOnce(msg *message.Message, dl DeadLetteredEvent, handler string) error {
	key := d.guardKey(msg, dl, handler)
	if key == "" {
		return d.publish(msg, dl)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), d.cfg.PublishTimeout)
	defer cancel()
	token := watermill.NewUUID()
	fields := watermill.LogFields{"message_uuid": msg.UUID, "handler_name": dl.HandlerName, "original_id": dl.OriginalID}
	state, err := d.cfg.Guard.Claim(ctx, key, token, d.cfg.GuardLease)
	if err != nil {
		d.guardFailures.Add(1)
		d.cfg.Logger.Error("Dead-letter guard not claimed; nacking", err, fields)
		return fmt.Errorf("dead-letter guard: %w", err)
	}
	switch state {
	case GuardDone:
		d.repeatsSkipped.Add(1)
		d.cfg.Logger.Info("Dead letter already written by an earlier delivery; acknowledging", fields)
		return nil
	case GuardBusy:
		d.guardBusy.Add(1)
		d.cfg.Logger.Debug("Dead letter claimed by another delivery; nacking until its lease ends", fields)
		return ErrDeadLetterBusy
	}
	d.hook(stageClaimed)
	if err := d.publish(msg, dl); err != nil {
		// Its own context: the publish may have used up ctx.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(msg.Context()), d.cfg.PublishTimeout)
		defer rcancel()
		if rerr := d.cfg.Guard.Release(rctx, key, token); rerr != nil {
			d.cfg.Logger.Error("Dead-letter guard not released; the next delivery waits for its lease", rerr, fields)
		}
		return err
	}
	if err := d.cfg.Guard.Done(ctx, key, d.cfg.GuardTTL); err != nil {
		// The dead letter is written: acknowledge. Only if the ack is lost
		// too does a delivery after the lease write it again.
		d.guardFailures.Add(1)
		d.cfg.Logger.Error("Dead letter written but not marked done; acknowledging", err, fields)
	}
	d.hook(stagePublished)
	return nil
}

// hook calls the test hook at stage s; nil outside tests.
func (d *DeadLetter) hook(s guardStage) {
	if d.testHook != nil {
		d.testHook(s)
	}
}
