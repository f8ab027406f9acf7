package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// settleTimeout bounds the settlement statements of a pass, which run even
// when the relay is closing so that published rows are acknowledged.
const settleTimeout = 10 * time.Second

// settler applies a pass's settlements: through the pool, checking that
// owner still holds each lease (lease mode), or inside the claiming
// transaction, whose row locks are the ownership (lock mode, owner "").
type settler struct {
	db    queryer
	owner string
}

func (s settler) owned() bool { return s.owner != "" }

// lockMode reports whether passes hold their rows by row locks in one
// transaction (claim, publish, settle, commit) rather than by leases.
func (r *Relay) lockMode() bool {
	return r.cfg.Claim == ClaimLock ||
		(r.cfg.Claim == ClaimAuto && r.o.q.e.rowLocks() && !r.cfg.KeepPartitionOrder)
}

// pass claims, publishes and settles one batch as owner.
func (r *Relay) pass(ctx context.Context, owner string) (RelayResult, error) {
	// Once (and a minute after finding an older table): does the table
	// store the Arc JSON? Without it, every row is encoded as before.
	r.o.detectArcColumns(ctx, countOnDB(r.o.db))
	if r.lockMode() {
		return r.lockedPass(ctx)
	}
	var res RelayResult
	claimed, now := time.Now(), r.o.nowMs() // the deadline runs on this host's clock
	rows, err := r.o.claim(ctx, owner, now+r.cfg.Lease.Milliseconds(), now, r.cfg.BatchSize,
		r.cfg.KeepPartitionOrder, r.cfg.Types)
	if err != nil {
		err = classify(err)
		if ctx.Err() == nil {
			r.report(RelayError{Kind: ClaimFailed, Err: err})
		}
		return res, err
	}
	res.claimed = len(rows)
	if len(rows) == 0 {
		r.finish(res)
		return res, nil
	}
	// Settle even if ctx ends now: the rows are ours until acknowledged.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	st := settler{db: r.o.db, owner: owner}
	r.relayRows(ctx, sctx, st, rows, r.deadline(claimed), &res)
	r.finish(res)
	return res, nil
}

// deadline is when a pass claimed at claimed must stop publishing: three
// quarters into its lease, leaving the rest to settle before another
// worker may take the rows (lease mode) or the session is ended (lock
// mode on PostgreSQL).
func (r *Relay) deadline(claimed time.Time) time.Time {
	return claimed.Add(r.cfg.Lease * 3 / 4)
}

// lockedPass is a pass in one transaction: SELECT … FOR UPDATE SKIP
// LOCKED, publish, settle, commit. Nothing is written to claim, and a
// relay that dies mid-batch has its transaction rolled back by the
// server, so its rows are claimable at once. On PostgreSQL the session is
// ended if the pass stalls longer than Lease
// (idle_in_transaction_session_timeout), which frees the rows and makes
// the stalled pass's commit fail: a late acknowledgement is rejected.
func (r *Relay) lockedPass(ctx context.Context) (RelayResult, error) {
	var res RelayResult
	// The transaction must outlive a Close that lands mid-pass: it ends
	// by its own commit or rollback.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Lease+settleTimeout)
	defer cancel()
	claimed := time.Now()
	// A connection of its own, so that the claim can read its rows
	// through the driver's connection (queryRows) inside the transaction.
	conn, err := r.o.db.Conn(tctx)
	if err != nil {
		err = fmt.Errorf("outbox: claiming rows: %w", classify(err))
		if ctx.Err() == nil {
			r.report(RelayError{Kind: ClaimFailed, Err: err})
		}
		return res, err
	}
	defer conn.Close()
	tx, err := conn.BeginTx(tctx, r.o.q.e.txOptions())
	if err == nil {
		err = r.o.q.e.startLockedPass(tctx, tx, r.cfg.Lease)
	}
	var rows []*row
	if err == nil {
		args := claimArgs(r.o.nowMs(), false, r.cfg.Types, r.cfg.BatchSize)
		rows, err = queryRows(tctx, conn, tx, r.o.q.lockSelect(len(r.cfg.Types)), args)
	}
	if err != nil {
		if tx != nil {
			_ = tx.Rollback()
		}
		err = fmt.Errorf("outbox: claiming rows: %w", classify(err))
		if ctx.Err() == nil {
			r.report(RelayError{Kind: ClaimFailed, Err: err})
		}
		return res, err
	}
	res.claimed = len(rows)
	if len(rows) == 0 {
		_ = tx.Rollback()
		r.finish(res)
		return res, nil
	}
	published := r.relayRows(ctx, tctx, settler{db: tx}, rows, r.deadline(claimed), &res)
	if err := tx.Commit(); err != nil {
		// Every settlement is undone: the rows are claimable again, and
		// the published ones will be published again (at least once). A
		// failed acknowledgement statement was reported already.
		if res.Relayed > 0 {
			for _, row := range published {
				r.report(RelayError{Kind: AcknowledgeFailed, Seq: row.seq, EventID: row.eventID, Err: err})
			}
		}
		res.AckFailed += res.Relayed
		res.Relayed, res.DeadLettered = 0, 0
	}
	r.finish(res)
	return res, nil
}

// relayRows screens, publishes (until deadline) and settles claimed rows,
// and returns those it published.
func (r *Relay) relayRows(ctx, sctx context.Context, st settler, rows []*row, deadline time.Time, res *RelayResult) []*row {
	valid := rows[:0:0]
	for _, row := range rows {
		row.decode()
		switch {
		case row.msg == nil:
			res.Malformed++
			err := fmt.Errorf("%w: %s", ErrMalformedRow, row.bad)
			r.report(RelayError{Kind: MalformedEvent, Seq: row.seq, EventID: row.eventID, Err: err})
			r.deadLetter(sctx, st, row, err, res)
		case st.owned() && r.cfg.MaxUnsettledClaims > 0 && row.claims-row.attempts > r.cfg.MaxUnsettledClaims:
			r.deadLetter(sctx, st, row, fmt.Errorf("outbox: claimed %d times without being settled "+
				"(a relay crashed or timed out on it each time)", row.claims-row.attempts), res)
		default:
			valid = append(valid, row)
		}
	}
	if ctx.Err() != nil {
		// Closing before publishing: give the rows back untouched.
		r.release(sctx, st, valid)
		return nil
	}
	published, failed, held, down := r.publish(ctx, valid, deadline, res)
	res.Attempted = len(published) + len(failed)
	switch {
	case down != nil:
		r.pause(down)
	case len(published)+len(failed) > 0:
		// The publisher answered (a failure here is the event's).
		r.resume()
	}
	r.ack(sctx, st, published, res)
	for _, f := range failed {
		r.fail(sctx, st, f.row, f.err, res)
	}
	r.release(sctx, st, held)
	res.released = len(held)
	return published
}

func (r *Relay) finish(res RelayResult) {
	r.mu.Lock()
	r.totals.add(res)
	r.mu.Unlock()
	if r.cfg.OnPass != nil {
		r.cfg.OnPass(res)
	}
}

type failedRow struct {
	row *row
	err error
}

// publish sends rows in sequence order, one Publish call per run of rows
// with the same topic. When a call fails, its rows are retried one by one
// so that one poison row does not fail its neighbours. With partition
// order kept, a key whose row failed holds its later rows back (held);
// rows not yet sent at deadline are held too, unpublished and uncharged.
// A transport failure (RelayConfig.TransportError) ends the pass's
// publishing: that call's rows and the rest are held, and down is the
// error.
func (r *Relay) publish(ctx context.Context, rows []*row, deadline time.Time, res *RelayResult) (published []*row, failed []failedRow, held []*row, down error) {
	blocked := map[string]bool{}
	keyed := r.cfg.KeepPartitionOrder
	for start := 0; start < len(rows); {
		end := start + 1
		for end < len(rows) && rows[end].topic == rows[start].topic {
			end++
		}
		group := rows[start:end]
		start = end
		if down != nil || !time.Now().Before(deadline) {
			held = append(held, group...)
			continue
		}
		if keyed && len(blocked) > 0 {
			kept := group[:0:0]
			for _, row := range group {
				if row.partition != "" && blocked[row.partition] {
					held = append(held, row)
				} else {
					kept = append(kept, row)
				}
			}
			group = kept
		}
		if len(group) == 0 {
			continue
		}
		err := r.publishRows(ctx, group, deadline)
		if len(group) > 1 {
			res.UsedPublishMany = true
		}
		if err == nil {
			published = append(published, group...)
			continue
		}
		if r.cfg.TransportError(err) {
			down = err
			r.transportFailed(group[0], err, res)
			held = append(held, group...)
			continue
		}
		if len(group) == 1 {
			failed = append(failed, failedRow{group[0], err})
			if keyed && group[0].partition != "" {
				blocked[group[0].partition] = true
			}
			continue
		}
		// One by one; three failures in a row mean the publisher is down,
		// not one poison row: the rest are held back, uncharged.
		streak := 0
		for i, row := range group {
			if down != nil || (keyed && row.partition != "" && blocked[row.partition]) || streak >= 3 || !time.Now().Before(deadline) {
				held = append(held, row)
				continue
			}
			rerr := r.publishRows(ctx, group[i:i+1], deadline)
			if rerr == nil {
				streak = 0
				published = append(published, row)
				continue
			}
			if r.cfg.TransportError(rerr) {
				down = rerr
				r.transportFailed(row, rerr, res)
				held = append(held, row)
				continue
			}
			streak++
			failed = append(failed, failedRow{row, rerr})
			if keyed && row.partition != "" {
				blocked[row.partition] = true
			}
		}
	}
	return published, failed, held, down
}

// transportFailed counts and reports a publish call that failed on the
// transport; its rows are held, uncharged.
func (r *Relay) transportFailed(first *row, err error, res *RelayResult) {
	res.TransportFailed++
	r.report(RelayError{Kind: TransportFailed, Seq: first.seq, EventID: first.eventID, Err: err})
}

// publishRows makes one Publish call, bounded by PublishTimeout and the
// pass's deadline; a closing relay lets it finish. A panicking publisher
// is an error, not a crash.
func (r *Relay) publishRows(ctx context.Context, rows []*row, deadline time.Time) (err error) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(r.cfg.PublishTimeout, time.Until(deadline)))
	defer cancel()
	msgs := make([]*message.Message, len(rows))
	for i, row := range rows {
		// Each row's message is built for this pass alone. Its context
		// keeps the values decode attached (the stored Arc JSON), and
		// takes pctx's deadline and values.
		if row.base == nil {
			row.base = row.msg.Context()
		}
		row.msg.SetContext(valuesFrom{Context: pctx, more: row.base})
		msgs[i] = row.msg
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("outbox: publisher panicked: %v", p)
		}
	}()
	return r.pub.Publish(rows[0].topic, msgs...)
}

// ack marks published rows delivered in one statement; rows another
// worker owns now are rejected and reported.
func (r *Relay) ack(ctx context.Context, st settler, rows []*row, res *RelayResult) {
	if len(rows) == 0 {
		return
	}
	args := []any{r.o.nowMs()}
	if st.owned() {
		args = append(args, st.owner)
	}
	var query string
	if r.o.q.e.idArrays() {
		query, args = r.o.q.ackArray(st.owned()), append(args, seqArray(rows))
	} else {
		query, args = r.o.q.ack(len(rows), st.owned()), seqArgs(args, rows)
	}
	out, err := st.db.ExecContext(ctx, query, args...)
	var n int64
	if err == nil {
		n, err = out.RowsAffected()
	}
	if err != nil {
		res.AckFailed += len(rows)
		for _, row := range rows {
			r.report(RelayError{Kind: AcknowledgeFailed, Seq: row.seq, EventID: row.eventID, Err: err})
		}
		return
	}
	res.Relayed += int(n)
	if int(n) == len(rows) {
		return
	}
	if !st.owned() {
		res.AckFailed += len(rows) - int(n) // cannot happen under our row locks
		return
	}
	// Some rows moved on: find which, and who has them.
	lost := r.o.notOwned(ctx, st.owner, rows)
	for _, e := range lost {
		res.AckFailed++
		res.OwnershipMismatches++
		r.report(RelayError{Kind: OwnershipMismatch, Seq: e.Seq, EventID: e.EventID, Err: e})
	}
	// Rows neither acknowledged nor found owned by another (a failed
	// lookup) are counted as failed acknowledgements.
	if missing := len(rows) - int(n) - len(lost); missing > 0 {
		res.AckFailed += missing
	}
}

// notOwned returns an OwnershipError for each row owner no longer holds
// (after an acknowledgement that did not update it).
func (o *Outbox) notOwned(ctx context.Context, owner string, rows []*row) []*OwnershipError {
	byID := make(map[int64]*row, len(rows))
	for _, row := range rows {
		byID[row.seq] = row
	}
	rs, err := o.db.QueryContext(ctx, o.q.owners(len(rows)), seqArgs(nil, rows)...)
	if err != nil {
		return nil
	}
	defer rs.Close()
	var out []*OwnershipError
	for rs.Next() {
		var (
			id, until int64
			status    int
			holder    *string
		)
		if err := rs.Scan(&id, &status, &holder, &until); err != nil {
			return out
		}
		cur := ""
		if holder != nil {
			cur = *holder
		}
		// Ours and delivered by us is not a mismatch; anything else is.
		if cur == owner && status == statusPending {
			continue
		}
		out = append(out, &OwnershipError{Seq: id, EventID: byID[id].eventID, AttemptedBy: owner, CurrentOwner: cur})
	}
	return out
}

// fail records a failed publish through the failure policy.
func (r *Relay) fail(ctx context.Context, st settler, row *row, perr error, res *RelayResult) {
	res.PublishFailed++
	r.report(RelayError{Kind: PublishFailed, Seq: row.seq, EventID: row.eventID, Err: perr})
	d := r.decide(ctx, row, perr)
	retryAt := r.o.nowMs()
	if !d.RetryAt.IsZero() {
		retryAt = max(retryAt, d.RetryAt.UnixMilli())
	}
	status := statusPending
	if d.DeadLetter {
		status = statusDead
	}
	r.settleFailure(ctx, st, row, status, retryAt, perr, res)
}

func (r *Relay) decide(ctx context.Context, row *row, perr error) (d Decision) {
	defer func() {
		if p := recover(); p != nil {
			r.report(RelayError{Kind: FailFailed, Seq: row.seq, EventID: row.eventID,
				Err: fmt.Errorf("outbox: failure policy panicked: %v", p)})
			d = Decision{}
		}
	}()
	return r.cfg.FailurePolicy(ctx, Failure{Message: row.msg, Topic: row.topic, Err: perr, Attempts: row.attempts + 1, At: r.o.cfg.Now()})
}

// deadLetter moves a row the relay will not publish to the dead letters.
func (r *Relay) deadLetter(ctx context.Context, st settler, row *row, reason error, res *RelayResult) {
	r.settleFailure(ctx, st, row, statusDead, r.o.nowMs(), reason, res)
}

func (r *Relay) settleFailure(ctx context.Context, st settler, rw *row, status int, retryAt int64, cause error, res *RelayResult) {
	now := r.o.nowMs()
	args := []any{status, retryAt, cause.Error(), now, now, rw.seq}
	if st.owned() {
		args = append(args, st.owner)
	}
	out, err := st.db.ExecContext(ctx, r.o.q.fail(st.owned()), args...)
	var n int64
	if err == nil {
		n, err = out.RowsAffected()
	}
	switch {
	case err != nil:
		res.FailHookErrors++
		r.report(RelayError{Kind: FailFailed, Seq: rw.seq, EventID: rw.eventID, Err: err})
	case n == 0:
		res.OwnershipMismatches++
		var oe error = &OwnershipError{Seq: rw.seq, EventID: rw.eventID, AttemptedBy: st.owner}
		if lost := r.o.notOwned(ctx, st.owner, []*row{rw}); len(lost) == 1 {
			oe = lost[0]
		}
		r.report(RelayError{Kind: OwnershipMismatch, Seq: rw.seq, EventID: rw.eventID, Err: oe})
	case status == statusDead:
		res.DeadLettered++
		r.cfg.Logger.Debug("Outbox relay dead-lettered a row", watermill.LogFields{"message_uuid": rw.eventID,
			"topic": rw.topic, "outbox_seq": rw.seq, "err": cause})
	}
}

// release gives rows back without counting an attempt.
func (r *Relay) release(ctx context.Context, st settler, rows []*row) {
	if len(rows) == 0 || !st.owned() {
		return // under row locks, the rollback or commit releases them
	}
	if _, err := st.db.ExecContext(ctx, r.o.q.release(len(rows)), seqArgs([]any{st.owner}, rows)...); err != nil {
		// Harmless: the lease expires and the rows come back anyway.
		r.cfg.Logger.Info("Outbox relay could not release rows", watermill.LogFields{"consumer_uuid": st.owner,
			"count": len(rows), "err": err})
	}
}

// valuesFrom is a context that looks up values in more after its own: a
// row message's publish context (deadline, cancellation, the relay's
// values) with the values decode attached to the message.
type valuesFrom struct {
	context.Context
	more context.Context
}

// Value implements context.Context.
func (c valuesFrom) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.more.Value(key)
}
