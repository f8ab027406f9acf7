package console

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"time"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// Outbox row statuses, as the explorer names them (the table stores
// 0, 1 and 2).
const (
	RowPending   = "pending"
	RowDelivered = "delivered"
	RowDead      = "dead"
)

// outboxRow is one outbox row as the explorer reads it.
type outboxRow struct {
	seq         int64
	status      string
	attempts    int
	lastError   string
	deliveredAt time.Time
	node        *Node
}

// exploreOutbox reads up to limit rows of ob, newest first, as nodes.
// The outbox exports no reader for pending and delivered rows (only
// DeadLetters), so this is a bounded SELECT on Outbox.DB with the
// outbox's table and dialect. Rows whose metadata cannot be read as an
// Arc event still give a node (id and type from their columns).
func (c *Console) exploreOutbox(ctx context.Context, ob Outbox, limit int) ([]outboxRow, int, bool, error) {
	ph := "?"
	if ob.Outbox.Dialect() == outbox.PostgreSQL {
		ph = "$1"
	}
	// The table name was validated by outbox.New (lower-case letters,
	// digits and _), so it is safe to splice in. One row more than the
	// limit says whether the table holds more. Payloads are not read: the
	// event's meta is all in the metadata column.
	rs, err := ob.DB.QueryContext(ctx, "SELECT id, event_id, event_type, metadata, status, attempts,"+
		" created_at, delivered_at, last_error FROM "+ob.Outbox.Table()+" ORDER BY id DESC LIMIT "+ph, limit+1)
	if err != nil {
		return nil, 0, false, fmt.Errorf("console: reading outbox %s: %w", ob.Name, err)
	}
	defer rs.Close()
	var out []outboxRow
	read, limited := 0, false
	for rs.Next() {
		if read == limit {
			limited = true
			break
		}
		read++
		var (
			r            outboxRow
			eventID, typ string
			metadata     []byte
			status       int
			created      int64
			delivered    stdsql.NullInt64
			lastErr      stdsql.NullString
		)
		if err := rs.Scan(&r.seq, &eventID, &typ, &metadata, &status, &r.attempts, &created,
			&delivered, &lastErr); err != nil {
			return nil, read, false, fmt.Errorf("console: reading outbox %s: %w", ob.Name, err)
		}
		switch status {
		case 1:
			r.status = RowDelivered
		case 2:
			r.status = RowDead
		default:
			r.status = RowPending
		}
		r.lastError = lastErr.String
		if delivered.Valid {
			r.deliveredAt = time.UnixMilli(delivered.Int64)
		}
		n := &Node{EventID: eventID, Type: typ, Time: time.UnixMilli(created)}
		// Read as the relay reads a row (escaped ids and base64-held meta
		// restored), with a stand-in payload: FromMessage wants JSON, the
		// node no payload.
		if msg, err := outbox.MessageOfRow(eventID, []byte("null"), metadata); err == nil {
			n.EventID = msg.UUID
			if ev, err := arc.FromMessage(msg); err == nil {
				n.Type, n.Source = ev.Type, ev.Meta.Source
				n.CorrelationID, n.CausationID = ev.Meta.CorrelationID, ev.Meta.CausationID
				if !ev.Meta.Timestamp.IsZero() {
					n.Time = ev.Meta.Timestamp
				}
			}
		}
		r.node = n
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, read, false, fmt.Errorf("console: reading outbox %s: %w", ob.Name, err)
	}
	return out, read, limited, nil
}

// place records on n where row was found and, when nothing better is
// known (a dead letter's outcome), what became of it.
func (r outboxRow) place(n *Node, outboxName string) {
	n.Outbox, n.Row, n.RowStatus = outboxName, r.seq, r.status
	if n.Outcome != "" {
		return
	}
	switch r.status {
	case RowDelivered:
		n.Outcome = "delivered by the relay"
		if !r.deliveredAt.IsZero() {
			n.Outcome += " at " + r.deliveredAt.UTC().Format(time.RFC3339)
		}
	case RowPending:
		n.Outcome = fmt.Sprintf("pending in outbox %s", outboxName)
		if r.attempts > 0 {
			n.Outcome += fmt.Sprintf(" (%d failed attempt(s): %s)", r.attempts, r.lastError)
		}
	case RowDead:
		n.Outcome = "dead in outbox " + outboxName + ": " + r.lastError
	}
}
