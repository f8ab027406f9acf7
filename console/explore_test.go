package console

import (
	"context"
	stdsql "database/sql"
	"net/http"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/outbox"
)

// TestExplorerBuildsTheCausationTree writes a chain (order placed, its
// payment and shipment, the payment's receipt) and an unrelated event,
// dead-letters the shipment, puts the payment (delivered), the receipt's
// invoice (pending) and the shipment's refund (dead) in the outbox, and
// asks the explorer by the root's id, the correlation id and a leaf's id;
// then asks a console whose outbox has no DB, which sees only the dead
// row.
func TestExplorerBuildsTheCausationTree(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	add := func(ev arc.Event) {
		data, err := arc.Marshal(ev)
		require.NoError(t, err)
		require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: b.stream, Values: []any{"type", ev.Type, "data", string(data)}}).Err())
	}
	root, err := arc.NewEvent("order.placed", map[string]int{"n": 1}, arc.Meta{CorrelationID: "corr-tree", Source: "shop"})
	require.NoError(t, err)
	pay, err := arc.NewChild(root, "payment.captured", map[string]int{"n": 2}, arc.Meta{})
	require.NoError(t, err)
	ship, err := arc.NewChild(root, "order.shipped", map[string]int{"n": 3}, arc.Meta{})
	require.NoError(t, err)
	receipt, err := arc.NewChild(pay, "receipt.sent", map[string]int{"n": 4}, arc.Meta{})
	require.NoError(t, err)
	other, err := arc.NewEvent("other.thing", nil, arc.Meta{CorrelationID: "corr-other"})
	require.NoError(t, err)
	for _, ev := range []arc.Event{root, pay, ship, receipt, other} {
		add(ev)
	}
	invoice, err := arc.NewChild(receipt, "invoice.requested", map[string]int{"n": 5}, arc.Meta{})
	require.NoError(t, err)
	refund, err := arc.NewChild(ship, "refund.requested", map[string]int{"n": 6}, arc.Meta{})
	require.NoError(t, err)
	tx, err := b.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	for _, ev := range []arc.Event{pay, invoice, refund} {
		require.NoError(t, b.ob.Write(ctx, tx, outbox.Entry{Topic: b.stream, Event: ev}))
	}
	require.NoError(t, tx.Commit())
	_, err = b.db.ExecContext(ctx, "UPDATE "+b.table+" SET status = 1, delivered_at = $1 WHERE event_id = $2",
		time.Now().UnixMilli(), pay.Meta.ID)
	require.NoError(t, err)
	_, err = b.db.ExecContext(ctx, "UPDATE "+b.table+" SET status = 2, attempts = 5, last_error = 'bank down'"+
		" WHERE event_id = $1", refund.Meta.ID)
	require.NoError(t, err)
	env, err := middlewareEnvelope(ship, "warehouse closed")
	require.NoError(t, err)
	require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: b.dlq, Values: []any{"type", ship.Type, "originalStream", b.stream,
		"originalId", "1-0", "group", "g", "data", env}}).Err())

	cfg := b.config()
	cfg.Outboxes[0].DB = b.db
	cl := bearer(t, b.serve(b.console(cfg)), readToken)
	for _, q := range []string{root.Meta.ID, "corr-tree", receipt.Meta.ID, invoice.Meta.ID} {
		var x Exploration
		require.Equal(t, http.StatusOK, cl.getJSON("/api/explore?q="+q, &x), q)
		require.Equal(t, 6, x.Count, q)
		assert.Equal(t, 3, x.OutboxScanned)
		assert.False(t, x.OutboxLimited)
		assert.Empty(t, x.DeadOnly)
		require.Len(t, x.Roots, 1, q)
		r := x.Roots[0]
		assert.Equal(t, root.Meta.ID, r.EventID)
		assert.Equal(t, "shop", r.Source)
		require.Len(t, r.Children, 2)
		var shipNode, payNode *Node
		for _, ch := range r.Children {
			switch ch.EventID {
			case ship.Meta.ID:
				shipNode = ch
			case pay.Meta.ID:
				payNode = ch
			}
		}
		require.NotNil(t, shipNode)
		require.NotNil(t, payNode)
		assert.Contains(t, shipNode.Outcome, "warehouse closed")
		require.NotNil(t, shipNode.Letter)
		require.Len(t, payNode.Children, 1)
		assert.Equal(t, receipt.Meta.ID, payNode.Children[0].EventID)
		assert.False(t, x.Limited)
		// The payment is on the stream and delivered from the outbox: one node.
		assert.Equal(t, b.stream, payNode.Stream)
		assert.Equal(t, "orders", payNode.Outbox)
		assert.Equal(t, RowDelivered, payNode.RowStatus)
		assert.Contains(t, payNode.Outcome, "delivered by the relay")
		// The invoice is only in the outbox, pending, under the receipt.
		require.Len(t, payNode.Children[0].Children, 1)
		inv := payNode.Children[0].Children[0]
		assert.Equal(t, invoice.Meta.ID, inv.EventID)
		assert.Equal(t, "invoice.requested", inv.Type)
		assert.Empty(t, inv.Stream)
		assert.Equal(t, RowPending, inv.RowStatus)
		assert.NotZero(t, inv.Row)
		assert.Contains(t, inv.Outcome, "pending in outbox orders")
		// The refund is dead in the outbox, under the shipment, with its letter.
		require.Len(t, shipNode.Children, 1)
		ref := shipNode.Children[0]
		assert.Equal(t, refund.Meta.ID, ref.EventID)
		assert.Equal(t, RowDead, ref.RowStatus)
		assert.Contains(t, ref.Outcome, "bank down")
		require.NotNil(t, ref.Letter)
		assert.Equal(t, "outbox:orders", ref.Letter.Source)
	}
	status, _ := cl.do(http.MethodGet, "/api/explore", "", "", nil)
	assert.Equal(t, http.StatusBadRequest, status)
	status, page := cl.do(http.MethodGet, "/explore?q=corr-tree", "", "", nil)
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, string(page), "receipt.sent")
	assert.Contains(t, string(page), "open the dead letter")
	assert.Contains(t, string(page), "invoice.requested")
	assert.Contains(t, string(page), "in outbox orders row")
	assert.Contains(t, string(page), "delivered by the relay")

	// Without a DB, an outbox shows only its dead letters, and the page says so.
	plain := bearer(t, b.serve(b.console(b.config())), readToken)
	var x Exploration
	require.Equal(t, http.StatusOK, plain.getJSON("/api/explore?q=corr-tree", &x))
	assert.Equal(t, 5, x.Count) // no pending invoice
	assert.Equal(t, []string{"orders"}, x.DeadOnly)
	assert.Zero(t, x.OutboxScanned)
	status, page = plain.do(http.MethodGet, "/explore?q=corr-tree", "", "", nil)
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, string(page), "refund.requested")
	assert.Contains(t, string(page), "no DB configured")
}

// TestExplorerOutboxReadIsBounded reads an outbox of three rows with a
// bound of two, on PostgreSQL and MariaDB (the SELECT's placeholder is the
// dialect's): the newest two are read, and the read says more exist.
func TestExplorerOutboxReadIsBounded(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(t *testing.T) (*stdsql.DB, string){
		"postgres": func(t *testing.T) (*stdsql.DB, string) {
			db, err := stdsql.Open("pgx", testenv.PostgresDSN(t))
			require.NoError(t, err)
			return db, "pgx"
		},
		"mariadb": func(t *testing.T) (*stdsql.DB, string) {
			db, err := stdsql.Open("mysql", testenv.MySQLDSN(t))
			require.NoError(t, err)
			return db, "mysql"
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, _ := open(t)
			table := "arcmill_console_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
			ob, err := outbox.New(db, outbox.Config{Table: table})
			require.NoError(t, err)
			require.NoError(t, ob.Migrate(ctx))
			t.Cleanup(func() {
				for _, q := range []string{"DROP TABLE IF EXISTS " + table, "DROP TABLE IF EXISTS " + table + "_lock"} {
					_, _ = db.ExecContext(ctx, q)
				}
				if ob.Dialect() == outbox.PostgreSQL {
					_, _ = db.ExecContext(ctx, "DROP FUNCTION IF EXISTS "+table+"_notify() CASCADE")
				}
				_ = db.Close()
			})
			var ids []string
			tx, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			for i := range 3 {
				ev, err := arc.NewEvent("bounded.event", map[string]int{"i": i}, arc.Meta{CorrelationID: "corr-bounded", Source: "shop"})
				require.NoError(t, err)
				require.NoError(t, ob.Write(ctx, tx, outbox.Entry{Topic: "bounded", Event: ev}))
				ids = append(ids, ev.Meta.ID)
			}
			require.NoError(t, tx.Commit())
			c := &Console{}
			rows, read, limited, err := c.exploreOutbox(ctx, Outbox{Name: "b", Outbox: ob, DB: db}, 2)
			require.NoError(t, err)
			assert.Equal(t, 2, read)
			assert.True(t, limited)
			require.Len(t, rows, 2)
			assert.Equal(t, ids[2], rows[0].node.EventID) // newest first
			assert.Equal(t, ids[1], rows[1].node.EventID)
			assert.Equal(t, RowPending, rows[0].status)
			assert.Equal(t, "corr-bounded", rows[0].node.CorrelationID)
			assert.Equal(t, "shop", rows[0].node.Source)
			_, read, limited, err = c.exploreOutbox(ctx, Outbox{Name: "b", Outbox: ob, DB: db}, 3)
			require.NoError(t, err)
			assert.Equal(t, 3, read)
			assert.False(t, limited)
		})
	}
}
