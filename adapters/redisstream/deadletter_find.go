package redisstream

import (
	"context"
	"fmt"
	"strconv"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/arcmill/arcmill/middleware"
)

var _ middleware.DeadLetterFinder = (*DeadLetterPublisher)(nil)

// findPage is how many dead letters one XRANGE of FindDeadLetter reads:
// small, since a dead letter of a foreign entry can carry up to
// MaxEntryBytes of its raw fields.
const findPage = 16

// FindDeadLetter reports whether the stream q.Topic holds, since q.Since,
// a dead letter of q's delivery: the same originalStream, originalId and
// group, and (unless q.Handler is "") handlerName
// (middleware.DeadLetterFinder). middleware.DeadLetter asks it only when a
// consumer died between writing a dead letter and marking it written, so
// that the dead letter is not written twice; it reads the dead letters
// written since that consumer's claim, no others.
//
// With Durability, a dead letter found is reported only once Redis
// confirms it as Publish would (else an error wrapping ErrNotDurable): the
// one found may be the write of a Publish that failed with ErrNotDurable,
// still only in the primary's memory, and the middleware acknowledges the
// message on finding it.
func (p *DeadLetterPublisher) FindDeadLetter(ctx context.Context, q middleware.DeadLetterQuery) (bool, error) {
	if p.Client == nil {
		return false, fmt.Errorf("%w: DeadLetterPublisher.Client is required", ErrInvalidConfig)
	}
	found, err := p.find(ctx, q)
	if err != nil || !found || p.Durability == nil {
		return found, err
	}
	logger := p.Logger
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	pub, err := p.w.publisher(p.Client, p.Durability, logger)
	if err != nil {
		return false, err
	}
	if err := pub.confirmStream(ctx, q.Topic); err != nil {
		return false, fmt.Errorf("redisstream: dead letter found in %q, not confirmed durable: %w", q.Topic, err)
	}
	return true, nil
}

// find is FindDeadLetter without the confirmation.
func (p *DeadLetterPublisher) find(ctx context.Context, q middleware.DeadLetterQuery) (bool, error) {
	start := "-"
	if ms := q.Since.UnixMilli(); ms > 0 {
		start = strconv.FormatInt(ms, 10) + "-0"
	}
	for {
		entries, err := p.Client.XRangeN(ctx, q.Topic, start, "+", findPage).Result()
		if err != nil {
			return false, fmt.Errorf("redisstream: looking for a dead letter in %q: %w", q.Topic, err)
		}
		for _, e := range entries {
			str := func(k string) string { s, _ := e.Values[k].(string); return s }
			if str(FieldOriginalID) != q.OriginalID || str(FieldGroup) != q.ConsumerGroup ||
				str(FieldOriginalStream) != q.SourceTopic {
				continue
			}
			if q.Handler == "" {
				return true, nil
			}
			if dl, err := ReadDeadLetter(e); err == nil && dl.Envelope.HandlerName == q.Handler {
				return true, nil
			}
		}
		if len(entries) < findPage {
			return false, nil
		}
		start = "(" + entries[len(entries)-1].ID
	}
}
