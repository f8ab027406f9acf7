package redisstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/internal/testsignal"
)

// minHeartbeat is the shortest heartbeat period.
const minHeartbeat = 10 * time.Millisecond

// claimResult is what one claim round did.
type claimResult struct {
	// Claimed are the entries taken over, to deliver.
	Claimed []Entry
	// DeadLettered counts entries moved to the dead-letter stream.
	DeadLettered int
	// Skipped counts idle entries left alone because this process holds
	// them.
	Skipped int
	// More is true when the round was full: more idle entries may wait.
	More bool
}

// claimer takes over entries that other consumers of the group left idle
// for ClaimIdle: XPENDING … IDLE for Redis's delivery counts, then one
// XCLAIM. Entries at MaxDeliveries, and entries gone from the stream (which
// XCLAIM would silently drop), go to the dead-letter stream. It never
// claims an entry held by a consumer of this process (holds): those are
// being handled, or handled and waiting for their XACK.
type claimer struct {
	cfg         SubscriberConfig
	stream      string
	consumer    string
	logger      watermill.LoggerAdapter
	holds       func(stream, id string) bool
	hold        func(ids ...string) // marks entries as held by this consumer
	release     func(ids ...string) // forgets them
	deadLetters *deadLetterer
	claimed     *testsignal.Signal[claimResult]
	reader      *boundedReader // nil: plain XCLAIM (both byte bounds off)
}

// claimOnce runs one round. The ids about to be claimed are held before
// XCLAIM, so they are never seen unheld while this process owns them.
func (c *claimer) claimOnce(ctx context.Context) (claimResult, error) {
	var res claimResult
	pending, err := c.cfg.Client.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: c.stream, Group: c.cfg.ConsumerGroup,
		Idle: c.cfg.ClaimIdle, Start: "-", End: "+", Count: int64(c.cfg.BatchSize)}).Result()
	if err != nil {
		return res, fmt.Errorf("redisstream: XPENDING %s %s: %w", c.stream, c.cfg.ConsumerGroup, err)
	}
	res.More = len(pending) == c.cfg.BatchSize
	var ids []string
	counts := map[string]int64{}
	for _, p := range pending {
		counts[p.ID] = p.RetryCount
		if c.holds(c.stream, p.ID) {
			res.Skipped++
			continue
		}
		if c.cfg.DeadLetterStream != "" && c.cfg.MaxDeliveries != None && p.RetryCount >= int64(c.cfg.MaxDeliveries) {
			if c.deadLetters.write(ctx, p.ID, p.RetryCount, fmt.Sprintf(
				"delivered %d times without being acknowledged (its consumers died or timed out)", p.RetryCount)) {
				res.DeadLettered++
			}
			continue
		}
		ids = append(ids, p.ID)
	}
	if len(ids) > 0 {
		c.hold(ids...)
		claimed, err := c.xclaim(ctx, ids)
		if err != nil {
			// Not delivered: never held for good. If the XCLAIM ran and only its
			// reply was lost, the entries are pending to this consumer, for its
			// recovery (consumer.recoverOwn) to deliver.
			c.release(ids...)
			return res, err
		}
		got := map[string]bool{}
		for _, e := range claimed {
			got[e.ID] = true
		}
		res.Claimed = claimed
		var lost []string
		for _, id := range ids {
			if !got[id] {
				lost = append(lost, id)
			}
		}
		for _, id := range lost {
			// Not claimed: another consumer refreshed or took it (fine), or it
			// was deleted or trimmed while pending, which Redis drops from the
			// group without a word (Arc loses such an entry unseen).
			if c.gone(ctx, id) && c.deadLetters.write(ctx, id, counts[id],
				"the entry was deleted or trimmed from the stream before it was processed") {
				res.DeadLettered++
			}
		}
		c.release(lost...)
	}
	c.claimed.Signal(res)
	return res, nil
}

// xclaim takes ids over for this consumer if they are still idle, and
// returns them with their fields in order.
func (c *claimer) xclaim(ctx context.Context, ids []string) ([]Entry, error) {
	if c.reader != nil {
		claimed, err := c.reader.claim(ctx, c.cfg.ClaimIdle.Milliseconds(), ids)
		if err != nil {
			return nil, fmt.Errorf("redisstream: XCLAIM on %s: %w", c.stream, err)
		}
		return claimed, nil
	}
	args := make([]any, 0, 5+len(ids))
	args = append(args, "XCLAIM", c.stream, c.cfg.ConsumerGroup, c.consumer, c.cfg.ClaimIdle.Milliseconds())
	for _, id := range ids {
		args = append(args, id)
	}
	res, err := c.cfg.Client.Do(ctx, args...).Slice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redisstream: XCLAIM on %s: %w", c.stream, err)
	}
	return parseEntries(res)
}

// gone reports whether an entry no longer exists in the stream.
func (c *claimer) gone(ctx context.Context, id string) bool {
	entries, err := c.cfg.Client.XRange(ctx, c.stream, id, id).Result()
	return err == nil && len(entries) == 0
}

// heartbeat keeps the entries this consumer holds from looking idle: every
// ClaimIdle/3 it resets their idle time with XCLAIM … JUSTID to itself
// (which counts no delivery), so no process claims, or dead-letters, an
// entry this one is still working on or has handled and not yet XACKed.
// Only entries still pending on this consumer are refreshed: one another
// consumer took over while this one stalled stays with that one. It
// returns the function that stops it.
func (c *consumer) heartbeat() (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(max(c.cfg.ClaimIdle/3, minHeartbeat))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			n, err := c.refresh()
			if err != nil {
				c.logger.Error("Refreshing held entries failed", err, nil)
			}
			c.s.signals.Heartbeat.Signal(n)
		}
	}()
	return func() { close(done); <-finished }
}

// refresh runs one heartbeat and returns how many entries it refreshed.
func (c *consumer) refresh() (int, error) {
	held := c.s.heldBy(c)
	if len(held) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.CommandTimeout)
	defer cancel()
	lo, hi := held[0], held[0]
	want := make(map[string]bool, len(held))
	for _, id := range held {
		want[id] = true
		if lessID(id, lo) {
			lo = id
		}
		if lessID(hi, id) {
			hi = id
		}
	}
	var mine []string
	for start := lo; ; {
		page, err := c.cfg.Client.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: c.topic, Group: c.cfg.ConsumerGroup,
			Start: start, End: hi, Count: int64(len(held)) + 1, Consumer: c.name}).Result()
		if err != nil {
			return 0, err
		}
		for _, p := range page {
			if want[p.ID] {
				mine = append(mine, p.ID)
			}
		}
		if len(page) <= len(held) {
			break
		}
		start = "(" + page[len(page)-1].ID
	}
	if len(mine) == 0 {
		return 0, nil
	}
	err := c.cfg.Client.XClaimJustID(ctx, &redis.XClaimArgs{Stream: c.topic, Group: c.cfg.ConsumerGroup,
		Consumer: c.name, Messages: mine}).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, err
	}
	return len(mine), nil
}
