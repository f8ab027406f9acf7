package inbox

import (
	"context"
	stdsql "database/sql"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/arcmill/arcmill/outbox"
)

// PgxDB is what NewPgx needs of PostgreSQL: a *pgxpool.Pool (or any pool
// of the same shape). A single *pgx.Conn satisfies it too, but serves one
// handler at a time.
type PgxDB interface {
	BeginTx(ctx context.Context, txOptions pgx.TxOptions) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, arguments ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// conn is the database under the inbox, database/sql or pgx, so that the
// dialects and the processing are written once for both.
type conn interface {
	begin(ctx context.Context, opts *stdsql.TxOptions) (txn, error)
	exec(ctx context.Context, q string, args ...any) (int64, error)
	queryInt(ctx context.Context, q string, args ...any) (int64, error)
}

// txn is one handler's transaction.
type txn interface {
	exec(ctx context.Context, q string, args ...any) (int64, error)
	commit(ctx context.Context) error
	rollback(ctx context.Context) error
	// writeOutbox writes entries into ob inside this transaction.
	writeOutbox(ctx context.Context, ob *outbox.Outbox, entries []outbox.Entry) error
}

type stdConn struct{ db *stdsql.DB }

func (c stdConn) begin(ctx context.Context, opts *stdsql.TxOptions) (txn, error) {
	tx, err := c.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return stdTxn{tx}, nil
}

func (c stdConn) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := c.db.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c stdConn) queryInt(ctx context.Context, q string, args ...any) (int64, error) {
	var n int64
	err := c.db.QueryRowContext(ctx, q, args...).Scan(&n)
	return n, err
}

type stdTxn struct{ tx *stdsql.Tx }

func (t stdTxn) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := t.tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t stdTxn) commit(context.Context) error { return t.tx.Commit() }

func (t stdTxn) rollback(context.Context) error {
	if err := t.tx.Rollback(); err != nil && !errors.Is(err, stdsql.ErrTxDone) {
		return err
	}
	return nil
}

func (t stdTxn) writeOutbox(ctx context.Context, ob *outbox.Outbox, entries []outbox.Entry) error {
	return ob.Write(ctx, t.tx, entries...)
}

type pgxConn struct{ db PgxDB }

// pgxIsolation maps database/sql's levels onto pgx's.
var pgxIsolation = map[stdsql.IsolationLevel]pgx.TxIsoLevel{
	stdsql.LevelReadUncommitted: pgx.ReadUncommitted,
	stdsql.LevelReadCommitted:   pgx.ReadCommitted,
	stdsql.LevelRepeatableRead:  pgx.RepeatableRead,
	stdsql.LevelSerializable:    pgx.Serializable,
}

func (c pgxConn) begin(ctx context.Context, opts *stdsql.TxOptions) (txn, error) {
	var o pgx.TxOptions
	if opts != nil {
		o.IsoLevel = pgxIsolation[opts.Isolation]
		if opts.ReadOnly {
			o.AccessMode = pgx.ReadOnly
		}
	}
	tx, err := c.db.BeginTx(ctx, o)
	if err != nil {
		return nil, err
	}
	return pgxTxn{tx}, nil
}

func (c pgxConn) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := c.db.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

func (c pgxConn) queryInt(ctx context.Context, q string, args ...any) (int64, error) {
	var n int64
	err := c.db.QueryRow(ctx, q, args...).Scan(&n)
	return n, err
}

type pgxTxn struct{ tx pgx.Tx }

func (t pgxTxn) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

func (t pgxTxn) commit(ctx context.Context) error { return t.tx.Commit(ctx) }

// rollback runs detached from ctx: a cancelled handler's transaction must
// still be ended, or the pool keeps a connection in a transaction.
func (t pgxTxn) rollback(ctx context.Context) error {
	if err := t.tx.Rollback(context.WithoutCancel(ctx)); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return err
	}
	return nil
}

func (t pgxTxn) writeOutbox(ctx context.Context, ob *outbox.Outbox, entries []outbox.Entry) error {
	return ob.WritePgx(ctx, t.tx, entries...)
}
