package outbox

import (
	"cmp"
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/arcmill/arcmill/arc"
)

// row is one claimed outbox row.
type row struct {
	seq       int64
	eventID   string
	topic     string
	eventType string
	payload   []byte
	metadata  []byte
	partition string
	claims    int
	attempts  int
	createdAt int64
	// arcJSON is the stored Arc JSON when arc_json_crc vouches for it
	// (the row's columns are those it was encoded from), else nil.
	arcJSON string

	msg  *message.Message // nil when the row is malformed
	base context.Context  // msg's context as decode left it
	bad  string           // why the row is malformed
}

// claimRequest is one claim: lease the rows the filter selects to owner
// until leaseUntil.
type claimRequest struct {
	owner      string
	leaseUntil int64
	filter     []any // claimArgs
	keyed      bool  // KeepPartitionOrder
	types      int   // how many event types the filter names
}

// claim leases up to limit claimable rows to owner until leaseUntil and
// returns them in sequence order.
func (o *Outbox) claim(ctx context.Context, owner string, leaseUntil, now int64, limit int, keyed bool, types []string) ([]*row, error) {
	rows, err := o.q.e.claim(ctx, o, claimRequest{owner: owner, leaseUntil: leaseUntil,
		filter: claimArgs(now, keyed, types, limit), keyed: keyed, types: len(types)})
	if err != nil {
		return nil, fmt.Errorf("outbox: claiming rows: %w", err)
	}
	slices.SortFunc(rows, func(a, b *row) int { return cmp.Compare(a.seq, b.seq) })
	return rows, nil
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*stdsql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (stdsql.Result, error)
}

// claimReturning selects and leases the rows in one UPDATE … RETURNING.
func (o *Outbox) claimReturning(ctx context.Context, db queryer, c claimRequest) ([]*row, error) {
	args := append([]any{c.owner, c.leaseUntil}, c.filter...)
	rs, err := db.QueryContext(ctx, o.q.claimUpdate(c.keyed, c.types), args...)
	if err != nil {
		return nil, err
	}
	return scanRows(rs)
}

// queryIDs runs a query of one id column and returns the ids as
// arguments for a following "id IN (…)".
func queryIDs(ctx context.Context, db queryer, query string, args ...any) ([]any, error) {
	rs, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	var ids []any
	for rs.Next() {
		var id int64
		if err := rs.Scan(&id); err != nil {
			rs.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, closeRows(rs)
}

// seqArgs appends the rows' sequence numbers to args.
func seqArgs(args []any, rows []*row) []any {
	for _, row := range rows {
		args = append(args, row.seq)
	}
	return args
}

// seqArray returns the rows' sequence numbers as one array argument.
func seqArray(rows []*row) []int64 {
	ids := make([]int64, len(rows))
	for i, row := range rows {
		ids[i] = row.seq
	}
	return ids
}

func closeRows(rs *stdsql.Rows) error {
	err := rs.Err()
	if cerr := rs.Close(); err == nil {
		err = cerr
	}
	return err
}

func scanRows(rs *stdsql.Rows) ([]*row, error) {
	cols, err := rs.Columns()
	if err != nil {
		rs.Close()
		return nil, err
	}
	withArc := len(cols) == 12 // claimCols: the stored Arc JSON too
	var out []*row
	for rs.Next() {
		r := &row{}
		var partition stdsql.NullString
		// Read in place (RawBytes, valid until the next row) and copied
		// once, into the string the publisher writes.
		var arcJSON stdsql.RawBytes
		var sum stdsql.NullInt64
		dest := []any{&r.seq, &r.eventID, &r.topic, &r.eventType, &r.payload, &r.metadata, &partition,
			&r.claims, &r.attempts, &r.createdAt}
		if withArc {
			dest = append(dest, &arcJSON, &sum)
		}
		if err := rs.Scan(dest...); err != nil {
			rs.Close()
			return nil, err
		}
		r.partition = partition.String
		// Checked on the columns as stored, before they are unescaped.
		if len(arcJSON) > 0 && sum.Valid && sum.Int64 == arcSum(r.eventID, r.payload, r.metadata) {
			r.arcJSON = string(arcJSON)
		}
		r.fromColumns()
		out = append(out, r)
	}
	return out, closeRows(rs)
}

// queryRows runs a claim's query in tx, on conn, and scans the rows. With
// the pgx driver it reads them from pgx's own connection: database/sql
// would turn each column into a driver.Value and copy it again, which was
// a third of the relay's CPU. Other drivers go through tx.
func queryRows(ctx context.Context, conn *stdsql.Conn, tx *stdsql.Tx, query string, args []any) ([]*row, error) {
	var rows []*row
	err := conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errNotPgx
		}
		rs, err := sc.Conn().Query(ctx, query, args...)
		if err != nil {
			return err
		}
		rows, err = scanPgxRows(rs)
		return err
	})
	if !errors.Is(err, errNotPgx) {
		return rows, err
	}
	rs, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return scanRows(rs)
}

// scanPgxRows is scanRows for rows read through pgx.
func scanPgxRows(rs pgx.Rows) ([]*row, error) {
	defer rs.Close()
	withArc := len(rs.FieldDescriptions()) == 12 // claimCols: the stored Arc JSON too
	var out []*row
	var slab []row
	for rs.Next() {
		if len(slab) == 0 {
			slab = make([]row, 64) // one allocation for many rows, not one each
		}
		r := &slab[0]
		slab = slab[1:]
		var partition pgtype.Text
		// Read in place (valid until the next row) and copied once, into
		// the string the publisher writes.
		var arcJSON pgtype.DriverBytes
		var sum pgtype.Int8
		dest := [12]any{&r.seq, &r.eventID, &r.topic, &r.eventType, &r.payload, &r.metadata, &partition,
			&r.claims, &r.attempts, &r.createdAt, &arcJSON, &sum}
		n := 10
		if withArc {
			n = 12
		}
		if err := rs.Scan(dest[:n]...); err != nil {
			return nil, err
		}
		r.partition = partition.String
		// Checked on the columns as stored, before they are unescaped.
		if len(arcJSON) > 0 && sum.Valid && sum.Int64 == arcSum(r.eventID, r.payload, r.metadata) {
			r.arcJSON = string(arcJSON)
		}
		r.fromColumns()
		out = append(out, r)
	}
	return out, rs.Err()
}

// fromColumns turns the row's text columns from their stored forms (see
// toColumn) into the strings written.
func (r *row) fromColumns() {
	r.eventID, r.eventType, r.partition = fromColumn(r.eventID), fromColumn(r.eventType), fromColumn(r.partition)
}

// decode builds the row's message, or says why it cannot.
func (r *row) decode() {
	switch {
	case r.eventID == "":
		r.bad = "row has no event id"
		return
	case r.topic == "":
		r.bad = "row has no topic"
		return
	}
	md, err := decodeMetadata(r.metadata)
	if err != nil {
		r.bad = "metadata is not a JSON object of strings: " + err.Error()
		return
	}
	r.msg = message.NewMessage(r.eventID, r.payload)
	r.msg.Metadata = md
	if r.arcJSON != "" {
		// The snapshot is taken now, from the message as stored: whatever
		// a publisher, middleware or failure policy changes later, on any
		// attempt, makes the bytes unusable (arc.AttachedJSON).
		arc.AttachJSONString(r.msg, r.arcJSON)
	}
}

// inConnTx is inTx on a connection of its own, which f may use for
// queryRows.
func (o *Outbox) inConnTx(ctx context.Context, f func(conn *stdsql.Conn, tx *stdsql.Tx) error) error {
	conn, err := o.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, o.q.e.txOptions())
	if err != nil {
		return err
	}
	if err := f(conn, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// inTx runs f in a transaction of the package's isolation, and commits
// it unless f fails.
func (o *Outbox) inTx(ctx context.Context, f func(tx *stdsql.Tx) error) error {
	tx, err := o.db.BeginTx(ctx, o.q.e.txOptions())
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
