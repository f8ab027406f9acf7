package redisstream

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/arcmill/arcmill/internal/ctxsleep"
)

// readBackoff paces one consumer's read loop after Redis fails
// (ReadErrorBackoff). It belongs to the read loop's goroutine: no lock.
type readBackoff struct {
	cfg      ReadErrorBackoff
	failures int // in a row, since the last successful read
	// draw returns a uniform value in [0, n); rand.Int64N, fixed by tests.
	draw func(n int64) int64
}

func newReadBackoff(cfg ReadErrorBackoff) *readBackoff {
	return &readBackoff{cfg: cfg, draw: rand.Int64N}
}

// ceiling is the longest pause of the next failure: Base doubled for each
// failure in a row so far, capped at Max.
func (b *readBackoff) ceiling() time.Duration {
	c := b.cfg.Base
	for i := 0; i < b.failures && c < b.cfg.Max; i++ { // at most log2(Max/Base) rounds
		c *= 2
	}
	return min(c, b.cfg.Max)
}

// next counts a failure and returns its pause: uniform in [0, ceiling],
// at least Min.
func (b *readBackoff) next() time.Duration {
	d := time.Duration(b.draw(int64(b.ceiling()) + 1))
	b.failures++
	return max(d, b.cfg.Min)
}

// reset starts over at Base: Redis answered a read.
func (b *readBackoff) reset() { b.failures = 0 }

// pause logs a failure of the read loop with the pause it takes, then
// waits it out, or until ctx ends (Close). Redis is failing: asking again
// at once would spin. what says what failed: with err, an Error line; with
// none (the failure was logged where it happened, as the acker does), an
// Info line.
func (c *consumer) pause(ctx context.Context, what string, err error) {
	d := c.backoff.next()
	if ctx.Err() == nil {
		fields := watermill.LogFields{"retry_in": d.String(), "failures_in_a_row": c.backoff.failures}
		if err != nil {
			c.logger.Error(what, err, fields)
		} else {
			c.logger.Info(what, fields)
		}
	}
	ctxsleep.Sleep(ctx, d)
}
