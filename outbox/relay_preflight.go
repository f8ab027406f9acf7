package outbox

import (
	"context"
	"fmt"
)

// tableColumns are every column of the outbox table, as Schema creates
// them: the relay reads or writes each.
const tableColumns = "id, event_id, topic, event_type, payload, metadata, dedupe_key, partition_key, status, visible_at, " +
	"lease_owner, lease_until, claims, attempts, created_at, delivered_at, first_failed_at, last_failed_at, last_error"

// preflight checks, before Run starts its workers, what a relay needs
// and a mistake would take away for good: a connection the database
// accepts, every column of the table, the right to update it, and the
// lock table's row (PostgreSQL, MySQL). It touches no row. Its error is
// classified: ErrMissingTable and ErrAccessDenied are mistakes, anything
// else may pass. It gives up after a Lease, as an outage.
func (r *Relay) preflight(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Lease)
	defer cancel()
	t := r.o.cfg.Table
	check := func(what, query string) error {
		if _, err := r.o.db.ExecContext(ctx, query); err != nil {
			return fmt.Errorf("checking %s: %w", what, classify(err))
		}
		return nil
	}
	if err := check("SELECT on "+t, "SELECT "+tableColumns+" FROM "+t+" WHERE 1 = 0"); err != nil {
		return err
	}
	// The stored Arc JSON's columns are optional: a table of an older
	// arcmill has none, and the relay encodes each event instead.
	r.o.detectArcColumns(ctx, countOnDB(r.o.db))
	if r.o.q.e.rowLocks() {
		// SQLite has no grants, and its UPDATE would take the write lock.
		if err := check("UPDATE on "+t, "UPDATE "+t+" SET status = status WHERE 1 = 0"); err != nil {
			return err
		}
		var n int
		if err := r.o.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+t+"_lock WHERE name = 'claim'").Scan(&n); err != nil {
			return fmt.Errorf("checking SELECT on %s_lock: %w", t, classify(err))
		}
		if n == 0 {
			return fmt.Errorf("%w: %s_lock has no 'claim' row", ErrMissingTable, t)
		}
	}
	return nil
}
