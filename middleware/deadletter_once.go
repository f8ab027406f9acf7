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
	// GuardReclaimed: the caller holds the claim, taken over from a
	// delivery whose lease ended without a done mark. That delivery may
	// have published before it died: DeadLetter asks the Publisher
	// (DeadLetterFinder) before publishing again.
	GuardReclaimed
)

// GuardClaim is what DeadLetterGuard.Claim found and did.
type GuardClaim struct {
	State GuardState
	// PriorClaim is when the claim taken over was made (GuardReclaimed),
	// or, if that one took over an earlier claim, when the first claim of
	// that chain was made: a dead letter any of them wrote is no older.
	PriorClaim time.Time
}

// DeadLetterQuery names one dead letter, for DeadLetterFinder.
type DeadLetterQuery struct {
	// Topic is the dead-letter topic.
	Topic string
	// SourceTopic, OriginalID and ConsumerGroup name the message's delivery.
	SourceTopic, OriginalID, ConsumerGroup string
	// Handler is the handler that gave up; "" for any (a malformed message,
	// dead-lettered by the router before any handler).
	Handler string
	// Since bounds the search: the dead letter is no older.
	Since time.Time
}

// DeadLetterFinder is a dead-letter Publisher that can tell whether it
// stored a dead letter (arcmill's redisstream DeadLetterPublisher can).
// With it, a delivery that takes over a claim whose lease ended (its
// consumer died between publishing and marking the dead letter done)
// acknowledges the message instead of writing the dead letter again;
// without it, it writes it again (at least once, in that window only).
type DeadLetterFinder interface {
	FindDeadLetter(ctx context.Context, q DeadLetterQuery) (bool, error)
}

// findSkew widens a DeadLetterQuery's Since: the guard's clock (Redis
// TIME) and the dead-letter store's may differ by a little.
const findSkew = 5 * time.Second

// DeadLetterGuard makes dead letters once-only across crashes and
// processes. DeadLetter claims a key that names the delivery (consumer
// group, dead-letter topic, source topic, handler, transport id, message
// UUID) before publishing, marks it done after the publish, and releases
// it when the publish fails, so that:
//
//   - a crash after the publish (before the ack) brings the message back
//     to a delivery that finds the key done and acknowledges it;
//   - a crash after the claim (before the publish) leaves a claim that ends
//     with its lease, after which a delivery claims it and publishes: the
//     dead letter is late, never lost;
//   - a crash between the publish and the done mark leaves a claim too:
//     after its lease, the delivery that takes it over asks the Publisher
//     whether the dead letter is stored (DeadLetterFinder; arcmill's
//     redisstream DeadLetterPublisher answers) and acknowledges if so;
//     a Publisher that cannot tell gets it again (at least once, in that
//     window only);
//   - a failed publish releases the claim, so the next delivery takes it
//     over at once, and asks the Publisher the same question (a publish
//     whose reply was lost may have been stored).
//
// RedisGuard implements it; any store with an atomic check-and-set and
// expiry can.
type DeadLetterGuard interface {
	// Claim records key as being written by token for lease (and keeps
	// the record for ttl), unless it is written (GuardDone) or claimed by
	// another token whose lease runs (GuardBusy). A claim whose lease ended
	// is taken over (GuardReclaimed), keeping the time of the first claim
	// of the chain (GuardClaim.PriorClaim).
	Claim(ctx context.Context, key, token string, lease, ttl time.Duration) (GuardClaim, error)
	// Done records key as written, for ttl.
	Done(ctx context.Context, key string, ttl time.Duration) error
	// Release ends token's claim of key, if it still holds it: the next
	// Claim takes it over at once (GuardReclaimed, since a publish that
	// failed may have been stored after all).
	Release(ctx context.Context, key, token string) error
}

// RedisClienter is a publisher that writes to Redis through a client it
// can share (arcmill's redisstream Publisher and DeadLetterPublisher):
// DeadLetter keeps its guard on that client by default.
type RedisClienter interface {
	RedisClient() redis.UniversalClient
}

// RedisGuard is a DeadLetterGuard on Redis: one key per dead letter,
// holding "publishing:<token>:<claimed ms>:<lease end ms>" (Redis's own
// clock, TIME), then "done", each kept for the TTL. Each call is one round
// trip; Claim is a script, so check-and-set is atomic on a primary (and on
// a cluster: one key).
type RedisGuard struct {
	// Client stores the keys. Required.
	Client redis.UniversalClient
	// Prefix starts every key. Defaults to DefaultGuardPrefix.
	Prefix string
}

// claimScript: ARGV[1] the token, ARGV[2] the lease and ARGV[3] the TTL
// in ms. Returns {state, prior claim ms}: 1 claimed, 2 done, 3 busy, 4
// reclaimed (with when the expired claim, or the first claim it took
// over, was made).
var claimScript = redis.NewScript(`
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('GET', KEYS[1])
if v == 'done' then return {2, 0} end
local prior = 0
if v then
  local at, deadline = string.match(v, '^publishing:[^:]*:(%d+):(%d+)$')
  if deadline and tonumber(deadline) > now then return {3, 0} end
  prior = tonumber(at) or 1
end
-- A claim taken over keeps the time of the first claim of the chain:
-- each delivery since may have stored the dead letter.
local at = now
if prior > 1 then at = prior end
redis.call('SET', KEYS[1], 'publishing:' .. ARGV[1] .. ':' .. at .. ':' .. (now + tonumber(ARGV[2])), 'PX', ARGV[3])
if prior > 0 then return {4, prior} end
return {1, 0}`)

// releaseScript ends the lease of token ARGV[1]'s claim of KEYS[1], if
// it still holds it: the next Claim takes it over at once, and learns when
// it was made (a publish that failed may have been stored after all).
var releaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local p = 'publishing:' .. ARGV[1] .. ':'
if string.sub(v, 1, #p) ~= p then return 0 end
local at = string.match(string.sub(v, #p + 1), '^(%d+):%d+$')
if not at then return 0 end
redis.call('SET', KEYS[1], 'publishing:' .. ARGV[1] .. ':' .. at .. ':0', 'KEEPTTL')
return 1`)

const guardDoneValue = "done"

func (g *RedisGuard) key(k string) string {
	if g.Prefix == "" {
		return DefaultGuardPrefix + k
	}
	return g.Prefix + k
}

// Claim implements DeadLetterGuard.
func (g *RedisGuard) Claim(ctx context.Context, key, token string, lease, ttl time.Duration) (GuardClaim, error) {
	res, err := claimScript.Run(ctx, g.Client, []string{g.key(key)}, token, lease.Milliseconds(), ttl.Milliseconds()).Int64Slice()
	if err != nil {
		return GuardClaim{}, err
	}
	if len(res) != 2 || res[0] < int64(GuardClaimed) || res[0] > int64(GuardReclaimed) {
		return GuardClaim{}, fmt.Errorf("middleware: RedisGuard: unexpected claim reply %v", res)
	}
	c := GuardClaim{State: GuardState(res[0])}
	if c.State == GuardReclaimed {
		c.PriorClaim = time.UnixMilli(res[1])
	}
	return c, nil
}

// Done implements DeadLetterGuard.
func (g *RedisGuard) Done(ctx context.Context, key string, ttl time.Duration) error {
	return g.Client.Set(ctx, g.key(key), guardDoneValue, ttl).Err()
}

// Release implements DeadLetterGuard.
func (g *RedisGuard) Release(ctx context.Context, key, token string) error {
	return releaseScript.Run(ctx, g.Client, []string{g.key(key)}, token).Err()
}

// ErrDeadLetterBusy is the error of a message whose dead letter another
// delivery has claimed and may still be publishing: it is nacked and comes
// back after the claim's lease.
var ErrDeadLetterBusy = errors.New("middleware: dead letter claimed by another delivery; retried after its lease")

// guardStage names a point of publishOnce, for tests that crash there.
type guardStage int

const (
	stageClaimed   guardStage = iota + 1 // claimed, not yet published
	stageUnmarked                        // published, not yet marked done
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
	if c.NoGuard {
		c.Guard = nil
		return
	}
	if c.Guard != nil {
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
	case c.GuardLease < time.Millisecond:
		return fmt.Errorf("%w: DeadLetterConfig.GuardLease must be at least 1ms (stores count in ms), got %v",
			ErrInvalidConfig, c.GuardLease)
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
// then the dead letter is written without a guard.
//
// It holds both the transport id and the message UUID. The UUID alone is
// not enough: a redriven dead letter comes back with its UUID, and must be
// dead-lettered again if it fails again; a transport id is new each time.
// The transport id alone is not enough either: transports reuse them (a
// JetStream stream deleted and recreated restarts its sequences at 1), and
// a distinct event under a reused id within GuardTTL would be acknowledged
// as "already dead-lettered", its dead letter never written.
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
		":" + strconv.Quote(handler) + ":" + strconv.Quote(id) + ":" + strconv.Quote(msg.UUID)
}

// publishOnce publishes dl unless it is written already: claim, publish,
// mark done; the claim is released if the publish fails, so the next
// delivery tries again. A nil error acknowledges the message.
func (d *DeadLetter) publishOnce(msg *message.Message, dl DeadLetteredEvent, handler string) error {
	key := d.guardKey(msg, dl, handler)
	if key == "" {
		return d.publish(msg, dl)
	}
	// One deadline for the claim, the look-up and the publish: the lease
	// (longer than PublishTimeout) outlives all three.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), d.cfg.PublishTimeout)
	defer cancel()
	token := watermill.NewUUID()
	fields := watermill.LogFields{"message_uuid": msg.UUID, "handler_name": dl.HandlerName, "original_id": dl.OriginalID}
	claimed := time.Now()
	claim, err := d.cfg.Guard.Claim(ctx, key, token, d.cfg.GuardLease, d.cfg.GuardTTL)
	if err != nil {
		d.guardFailures.Add(1)
		d.cfg.Logger.Error("Dead-letter guard not claimed; nacking", err, fields)
		return fmt.Errorf("dead-letter guard: %w", err)
	}
	switch claim.State {
	case GuardDone:
		d.repeatsSkipped.Add(1)
		d.cfg.Logger.Debug("Dead letter already written by an earlier delivery; acknowledging", fields)
		return nil
	case GuardBusy:
		d.guardBusy.Add(1)
		d.cfg.Logger.Debug("Dead letter claimed by another delivery; nacking until its lease ends", fields)
		return ErrDeadLetterBusy
	case GuardReclaimed:
		// The delivery that claimed it died before marking it done: it may
		// have published it. Ask the store, where it can tell.
		found, err := d.written(ctx, dl, handler, claim.PriorClaim)
		if err != nil {
			d.guardFailures.Add(1)
			d.release(msg, key, token, fields)
			d.cfg.Logger.Error("Could not tell whether a dead letter is written; nacking", err, fields)
			return fmt.Errorf("dead-letter guard: looking for the dead letter: %w", err)
		}
		if found {
			d.markDone(msg, key, claimed, fields)
			d.repeatsSkipped.Add(1)
			d.cfg.Logger.Info("Dead letter already written by a delivery that died before marking it; acknowledging", fields)
			return nil
		}
	}
	d.hook(stageClaimed)
	// Under the claim's deadline, not one of its own: a look-up that took
	// most of PublishTimeout followed by a fresh PublishTimeout would
	// outlive the lease, and a second delivery could then take the claim
	// over, find nothing yet and write the dead letter again.
	if err := d.publishUnder(ctx, msg, dl); err != nil {
		d.release(msg, key, token, fields)
		return err
	}
	d.hook(stageUnmarked)
	d.markDone(msg, key, claimed, fields)
	d.hook(stagePublished)
	return nil
}

// release gives token's claim of key up, so that the next delivery
// publishes at once; on its own context, as the publish may have used up
// the first.
func (d *DeadLetter) release(msg *message.Message, key, token string, fields watermill.LogFields) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), d.cfg.PublishTimeout)
	defer cancel()
	if err := d.cfg.Guard.Release(ctx, key, token); err != nil {
		d.cfg.Logger.Error("Dead-letter guard not released; the next delivery waits for its lease", err, fields)
	}
}

// written reports whether the Publisher stored dl since a claim made at
// prior; false when it cannot tell (no DeadLetterFinder).
func (d *DeadLetter) written(ctx context.Context, dl DeadLetteredEvent, handler string, prior time.Time) (bool, error) {
	f, ok := d.cfg.Publisher.(DeadLetterFinder)
	if !ok {
		return false, nil
	}
	return f.FindDeadLetter(ctx, DeadLetterQuery{Topic: d.cfg.Topic, SourceTopic: dl.SourceTopic, OriginalID: dl.OriginalID,
		ConsumerGroup: dl.ConsumerGroup, Handler: handler, Since: prior.Add(-findSkew)})
}

// markDone records the written dead letter. A store that fails here (most
// often the same Redis, gone down just after the publish) is tried again,
// with the outage wait, while the claim's lease runs: a claim left
// unmarked would let a delivery after the lease write the dead letter
// again. Then (or when the message's context ends) the message is
// acknowledged whatever happened: the dead letter is written.
func (d *DeadLetter) markDone(msg *message.Message, key string, claimed time.Time, fields watermill.LogFields) {
	ctx := context.WithoutCancel(msg.Context())
	for n := 1; ; n++ {
		dctx, cancel := context.WithTimeout(ctx, d.cfg.PublishTimeout)
		err := d.cfg.Guard.Done(dctx, key, d.cfg.GuardTTL)
		cancel()
		if err == nil {
			return
		}
		d.guardFailures.Add(1)
		wait := outageDelay(d.cfg.OutageBackoff, d.cfg.OutageMaxBackoff, DefaultJitter, n)
		if time.Since(claimed)+wait >= d.cfg.GuardLease {
			d.cfg.Logger.Error("Dead letter written but not marked done within its lease; acknowledging", err, fields)
			return
		}
		d.cfg.Logger.Error("Dead letter written but not marked done; trying again", err, fields)
		if !sleepCtx(msg.Context(), wait) {
			return // shutting down: acknowledge what is written
		}
	}
}

// hook calls the test hook at stage s; nil outside tests.
func (d *DeadLetter) hook(s guardStage) {
	if d.testHook != nil {
		d.testHook(s)
	}
}
