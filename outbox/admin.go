package outbox

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"math"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/internal/ctxsleep"
)

// Filter selects dead letters. Empty fields select everything.
type Filter struct {
	// Types keeps rows of these event types.
	Types []string
	// EventIDs keeps rows of these event ids (meta.id).
	EventIDs []string
	// AfterSeq keeps rows with a larger sequence number (for paging).
	AfterSeq int64
	// Seqs keeps the rows with these sequence numbers (DeadLetter.Seq):
	// exact rows, where an event id may name several (one event written
	// to two topics, or written again after a purge).
	Seqs []int64
}

func (f Filter) where() (string, []any) {
	s, args := "", []any{}
	if len(f.Types) > 0 {
		s += " AND event_type IN (" + list(len(f.Types)) + ")"
		args = columnArgs(args, f.Types)
	}
	if len(f.EventIDs) > 0 {
		s += " AND event_id IN (" + list(len(f.EventIDs)) + ")"
		args = columnArgs(args, f.EventIDs)
	}
	if len(f.Seqs) > 0 {
		s += " AND id IN (" + list(len(f.Seqs)) + ")"
		for _, seq := range f.Seqs {
			args = append(args, seq)
		}
	}
	if f.AfterSeq > 0 {
		s += " AND id > ?"
		args = append(args, f.AfterSeq)
	}
	return s, args
}

// DeadLetter is one dead-lettered row, Arc's DeadLetteredEvent with the
// row's place in the table.
type DeadLetter struct {
	// Seq is the row's sequence number.
	Seq int64
	// EventID, Topic and Type identify the event and its destination.
	EventID, Topic, Type string
	// Message is the stored message; nil when the row is malformed.
	Message *message.Message
	// Error is the last error (Arc's lastError.message, or "unknown").
	Error string
	// Attempts counts failed publishes.
	Attempts int
	// FirstFailedAt, LastFailedAt and CreatedAt as Arc reports them.
	FirstFailedAt, LastFailedAt, CreatedAt time.Time
}

// DeadLetters lists up to limit dead letters matching f, oldest first
// (Arc's repository adapter lists them in random order). limit ≤ 0 is 100.
func (o *Outbox) DeadLetters(ctx context.Context, f Filter, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		limit = 100
	}
	where, args := f.where()
	rs, err := o.db.QueryContext(ctx, o.q.bind("SELECT "+o.q.cols+", last_error, first_failed_at, last_failed_at FROM "+
		o.q.table+" WHERE status = 2"+where+" ORDER BY id LIMIT ?"), append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("outbox: listing dead letters: %w", err)
	}
	defer rs.Close()
	var out []DeadLetter
	for rs.Next() {
		var (
			r           row
			partition   stdsql.NullString
			lastErr     stdsql.NullString
			first, last stdsql.NullInt64
		)
		if err := rs.Scan(&r.seq, &r.eventID, &r.topic, &r.eventType, &r.payload, &r.metadata, &partition,
			&r.claims, &r.attempts, &r.createdAt, &lastErr, &first, &last); err != nil {
			return nil, fmt.Errorf("outbox: listing dead letters: %w", err)
		}
		r.partition = partition.String
		r.fromColumns()
		r.decode()
		d := DeadLetter{Seq: r.seq, EventID: r.eventID, Topic: r.topic, Type: r.eventType, Message: r.msg,
			Error: lastErr.String, Attempts: r.attempts, CreatedAt: time.UnixMilli(r.createdAt)}
		if d.Error == "" {
			d.Error = "unknown"
		}
		// Arc: first, else last, else creation; and the reverse.
		d.FirstFailedAt, d.LastFailedAt = d.CreatedAt, d.CreatedAt
		if first.Valid {
			d.FirstFailedAt, d.LastFailedAt = time.UnixMilli(first.Int64), time.UnixMilli(first.Int64)
		}
		if last.Valid {
			d.LastFailedAt = time.UnixMilli(last.Int64)
			if !first.Valid {
				d.FirstFailedAt = d.LastFailedAt
			}
		}
		out = append(out, d)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("outbox: listing dead letters: %w", err)
	}
	return out, nil
}

// CountDeadLetters counts the dead letters matching f.
func (o *Outbox) CountDeadLetters(ctx context.Context, f Filter) (int64, error) {
	where, args := f.where()
	var n int64
	if err := o.db.QueryRowContext(ctx, o.q.bind("SELECT COUNT(*) FROM "+o.q.table+" WHERE status = 2"+where),
		args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("outbox: counting dead letters: %w", err)
	}
	return n, nil
}

// RedriveOptions selects and paces a redrive.
type RedriveOptions struct {
	Filter
	// Limit caps how many rows are redriven; negative is invalid.
	// Defaults to 0, all of them.
	Limit int
	// Rate caps redriven rows per second; negative is invalid. Defaults
	// to 0, no cap.
	Rate float64
}

// Redrive makes dead letters matching opts pending again, oldest first,
// with a fresh attempt budget, at most opts.Rate per second. It returns how
// many it moved. Interrupted (ctx ends), it stops between chunks; a re-run
// never redrives a row twice, since a redriven row is no longer dead.
func (o *Outbox) Redrive(ctx context.Context, opts RedriveOptions) (int, error) {
	switch {
	case opts.Limit < 0:
		return 0, fmt.Errorf("%w: RedriveOptions.Limit (%d) must not be negative", ErrInvalidConfig, opts.Limit)
	case opts.Rate < 0 || math.IsNaN(opts.Rate):
		return 0, fmt.Errorf("%w: RedriveOptions.Rate (%g) must not be negative", ErrInvalidConfig, opts.Rate)
	}
	chunk := 100
	if opts.Rate > 0 {
		chunk = max(1, min(100, int(opts.Rate/10)))
	}
	start := time.Now()
	total := 0
	for opts.Limit == 0 || total < opts.Limit {
		n := chunk
		if opts.Limit > 0 {
			n = min(n, opts.Limit-total)
		}
		moved, selected, err := o.redriveChunk(ctx, opts.Filter, n)
		total += moved
		if err != nil {
			return total, err
		}
		if selected < n {
			break // none left (a concurrent redrive may have taken some)
		}
		if opts.Rate > 0 {
			due := start.Add(time.Duration(float64(total) / opts.Rate * float64(time.Second)))
			if !ctxsleep.Sleep(ctx, time.Until(due)) {
				return total, ctx.Err()
			}
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
	return total, nil
}

func (o *Outbox) redriveChunk(ctx context.Context, f Filter, n int) (moved, selected int, err error) {
	where, args := f.where()
	err = o.inTx(ctx, func(tx *stdsql.Tx) error {
		ids, err := queryIDs(ctx, tx, o.q.bind("SELECT id FROM "+o.q.table+" WHERE status = 2"+where+
			" ORDER BY id LIMIT ?"), append(args, n)...)
		selected = len(ids)
		if err != nil || len(ids) == 0 {
			return err
		}
		out, err := tx.ExecContext(ctx, o.q.bind("UPDATE "+o.q.table+" SET status = 0, visible_at = ?, attempts = 0,"+
			" claims = 0, lease_owner = NULL, lease_until = 0 WHERE status + 0 = 2 AND id IN ("+list(len(ids))+")"),
			append([]any{o.nowMs()}, ids...)...)
		if err != nil {
			return err
		}
		c, err := out.RowsAffected()
		moved = int(c)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("outbox: redriving dead letters: %w", err)
	}
	return moved, selected, nil
}

// PurgeDelivered deletes rows delivered more than olderThan ago (Arc's
// purge; its default is 7 days) and returns how many. Their dedupe keys
// are free again.
func (o *Outbox) PurgeDelivered(ctx context.Context, olderThan time.Duration) (int64, error) {
	return o.purge(ctx, "status = 1 AND delivered_at < ?", []any{o.nowMs() - olderThan.Milliseconds()})
}

// PurgeDeadLetters deletes dead letters matching f and returns how many.
func (o *Outbox) PurgeDeadLetters(ctx context.Context, f Filter) (int64, error) {
	where, args := f.where()
	return o.purge(ctx, "status = 2"+where, args)
}

// purge deletes in chunks of 1,000 so that no statement holds locks long.
func (o *Outbox) purge(ctx context.Context, cond string, args []any) (int64, error) {
	const chunk = 1000
	stmt := o.q.purge(cond)
	var total int64
	for {
		out, err := o.db.ExecContext(ctx, stmt, append(args[:len(args):len(args)], chunk)...)
		if err != nil {
			return total, fmt.Errorf("outbox: purging: %w", err)
		}
		n, err := out.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("outbox: purging: %w", err)
		}
		total += n
		if n < chunk {
			return total, nil
		}
	}
}

// Status is a snapshot of the outbox's backlog.
type Status struct {
	// Pending rows are waiting to be claimed now.
	Pending int64
	// Delayed rows wait for their visible-at or retry time.
	Delayed int64
	// InFlight rows are leased to a relay.
	InFlight int64
	// Dead rows are dead letters.
	Dead int64
	// Delivered rows are kept until PurgeDelivered.
	Delivered int64
	// OldestPending is the creation time of the oldest undelivered,
	// not-dead row; zero when there is none.
	OldestPending time.Time
}

// Status counts the outbox's rows by state.
func (o *Outbox) Status(ctx context.Context) (Status, error) {
	now := o.nowMs()
	var s Status
	var oldest stdsql.NullInt64
	err := o.db.QueryRowContext(ctx, o.q.bind(`SELECT
	COALESCE(SUM(CASE WHEN status = 0 AND lease_until <= ? AND visible_at <= ? THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN status = 0 AND lease_until <= ? AND visible_at > ? THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN status = 0 AND lease_until > ? THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN status = 2 THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN status = 1 THEN 1 ELSE 0 END), 0),
	MIN(CASE WHEN status = 0 THEN created_at END)
FROM `+o.q.table), now, now, now, now, now).Scan(&s.Pending, &s.Delayed, &s.InFlight, &s.Dead, &s.Delivered, &oldest)
	if err != nil {
		return Status{}, fmt.Errorf("outbox: status: %w", err)
	}
	if oldest.Valid {
		s.OldestPending = time.UnixMilli(oldest.Int64)
	}
	return s, nil
}
