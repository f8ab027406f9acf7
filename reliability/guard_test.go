package reliability

import (
	"context"
	"database/sql"
)

// guard is the fault scenario's consumer-side idempotency guard, and the
// only place that makes an effect "applied exactly once": every delivery is
// counted, and the effect (a ledger row, which nothing else would stop from
// repeating) is applied only by the delivery that claims the event id, in
// the same transaction.
//
// It stands in for arcmill's inbox (issue 15, "Applied exactly once"):
// when the inbox package lands, apply becomes the inbox's handler wrapper
// and results reads its dedupe records, and the scenario then measures the
// library rather than this test's primary key. Nothing else in the package
// knows how the guard works.
type guard struct {
	prefix string // tables <prefix>_effects, _deliveries and _ledger
}

func (g guard) tables() []string {
	return []string{g.prefix + "_effects", g.prefix + "_deliveries", g.prefix + "_ledger"}
}

// migrate creates the guard's tables.
func (g guard) migrate(db *sql.DB) error {
	for _, s := range []string{
		`CREATE TABLE ` + g.prefix + `_effects (event_id TEXT PRIMARY KEY)`,
		`CREATE TABLE ` + g.prefix + `_deliveries (event_id TEXT PRIMARY KEY, n INT NOT NULL)`,
		`CREATE TABLE ` + g.prefix + `_ledger (seq BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL)`,
	} {
		if _, err := db.Exec(s); err != nil {
			return err
		}
	}
	return nil
}

// drop removes the guard's tables.
func (g guard) drop(db *sql.DB) {
	for _, t := range g.tables() {
		_, _ = db.Exec("DROP TABLE IF EXISTS " + t)
	}
}

// apply records one delivery of event id and applies its effect unless an
// earlier delivery did, in one transaction.
func (g guard) apply(ctx context.Context, db *sql.DB, id string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+g.prefix+`_deliveries (event_id, n) VALUES ($1, 1)
		ON CONFLICT (event_id) DO UPDATE SET n = `+g.prefix+`_deliveries.n + 1`, id); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO `+g.prefix+`_effects (event_id) VALUES ($1)
		ON CONFLICT (event_id) DO NOTHING`, id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 1 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+g.prefix+`_ledger (event_id) VALUES ($1)`, id); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// handledCount is how many distinct events have had their effect (the
// scenario's progress, polled while it runs).
func (g guard) handledCount(db *sql.DB) (int, error) {
	var n int
	err := db.QueryRow(`SELECT COUNT(*) FROM ` + g.prefix + `_effects`).Scan(&n)
	return n, err
}

// guardResults is what the guard saw.
type guardResults struct {
	handled    map[string]bool // event ids whose effect was applied
	applied    int             // effects applied (ledger rows): one per handled event if the guard holds
	duplicates int             // deliveries beyond the first, absorbed by the guard
}

// results reads the guard's tables at the end of a run.
func (g guard) results(db *sql.DB) (guardResults, error) {
	r := guardResults{handled: map[string]bool{}}
	rows, err := db.Query(`SELECT event_id FROM ` + g.prefix + `_effects`)
	if err != nil {
		return r, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return r, err
		}
		r.handled[id] = true
	}
	if err := rows.Err(); err != nil {
		return r, err
	}
	if err := db.QueryRow(`SELECT COALESCE(SUM(n - 1), 0) FROM ` + g.prefix + `_deliveries`).Scan(&r.duplicates); err != nil {
		return r, err
	}
	err = db.QueryRow(`SELECT COUNT(*) FROM ` + g.prefix + `_ledger`).Scan(&r.applied)
	return r, err
}
