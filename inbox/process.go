package inbox

import (
	"context"
	"fmt"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// Outcome says what Process did with a delivery.
type Outcome int

const (
	// Applied: the key was new; the handler ran and its transaction (the
	// record, its writes, its emitted events) committed.
	Applied Outcome = iota + 1
	// Duplicate: the key was already recorded; the handler did not run and
	// nothing was written. The delivery should be acked.
	Duplicate
)

// String names the outcome.
func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Duplicate:
		return "duplicate"
	}
	return "failed"
}

// Process runs fn for ev as consumer, exactly once per dedupe key, in one
// transaction:
//
//  1. it records (consumer, key) in the inbox table; a key already
//     recorded (or being recorded by a concurrent delivery, which it waits
//     for) ends here: the transaction is rolled back, fn is not called,
//     and Process returns Duplicate and no error, so the delivery is acked;
//  2. it calls fn with a context that carries the transaction (Tx, PgxTx)
//     and the event as the parent of what fn emits (Emit, EmitEntries);
//  3. it commits: the record, fn's writes and the emitted events' outbox
//     rows, all or nothing.
//
// An error from fn, or from the database, rolls everything back and is
// returned: the delivery should be retried (nacked), and its next attempt
// runs fn again. fn must not commit or roll back the transaction itself,
// and its effects outside the database (an HTTP call, an email) are not
// covered: they can happen once per attempt.
//
// Handle, HandlePgx and Middleware call Process; call it directly where
// events arrive by other means.
func (ib *Inbox) Process(ctx context.Context, consumer string, ev arc.Event, fn func(ctx context.Context) error) (Outcome, error) {
	key, err := ib.key(consumer, ev)
	if err != nil {
		return 0, err
	}
	tx, err := ib.c.begin(ctx, ib.cfg.TxOptions)
	if err != nil {
		return 0, fmt.Errorf("inbox: beginning the transaction of %s: %w", consumer, err)
	}
	// A no-op after commit; after a panic in fn, it ends the transaction
	// before the panic goes on (to the Recoverer middleware, say).
	defer func() { _ = tx.rollback(ctx) }()
	now := ib.cfg.Now()
	n, err := tx.exec(ctx, ib.recordQ, consumer, key, columnText(ev.Meta.ID), clip(columnText(ev.Type), outbox.MaxTypeLength), now.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("inbox: recording %s for %s: %w", ev.Meta.ID, consumer, err)
	}
	if n == 0 {
		if err := tx.rollback(ctx); err != nil {
			return 0, fmt.Errorf("inbox: ending the transaction of a duplicate: %w", err)
		}
		ib.cfg.Logger.Debug("inbox: duplicate skipped", watermill.LogFields{
			"consumer": consumer, "message_uuid": ev.Meta.ID, "event_type": ev.Type, "dedupe_key": key})
		if ib.cfg.OnDuplicate != nil {
			ib.cfg.OnDuplicate(ctx, consumer, ev)
		}
		return Duplicate, nil
	}
	if max := ib.cfg.RefuseOlderThan; max > 0 && !ev.Meta.Timestamp.IsZero() && now.Sub(ev.Meta.Timestamp) > max {
		return 0, fmt.Errorf("%w: %w: event %s of %s is %v old, over RefuseOlderThan (%v)",
			ErrStale, arc.ErrUnrecoverable, ev.Meta.ID, ev.Meta.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z"),
			now.Sub(ev.Meta.Timestamp).Round(1e6), max)
	}
	st := &state{ib: ib, tx: tx, parent: ev}
	if err := fn(context.WithValue(ctx, stateKey{}, st)); err != nil {
		return 0, err
	}
	st.done.Store(true)
	if err := tx.commit(ctx); err != nil {
		return 0, fmt.Errorf("inbox: committing %s for %s: %w", ev.Meta.ID, consumer, err)
	}
	return Applied, nil
}

// clip cuts s to at most n bytes on a rune boundary (event_type is for
// operators; the key, not the type, deduplicates).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
