package console

import (
	"context"
	"net/http"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// TestExplorerBuildsTheCausationTree writes a chain (order placed, its
// payment and shipment, the payment's receipt) and an unrelated event,
// dead-letters the shipment, and asks the explorer by the root's id and
// by the correlation id.
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
	env, err := middlewareEnvelope(ship, "warehouse closed")
	require.NoError(t, err)
	require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: b.dlq, Values: []any{"type", ship.Type, "originalStream", b.stream,
		"originalId", "1-0", "group", "g", "data", env}}).Err())

	cl := bearer(t, b.serve(b.console(b.config())), readToken)
	for _, q := range []string{root.Meta.ID, "corr-tree", receipt.Meta.ID} {
		var x Exploration
		require.Equal(t, http.StatusOK, cl.getJSON("/api/explore?q="+q, &x), q)
		require.Equal(t, 4, x.Count, q)
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
	}
	status, _ := cl.do(http.MethodGet, "/api/explore", "", "", nil)
	assert.Equal(t, http.StatusBadRequest, status)
	status, page := cl.do(http.MethodGet, "/explore?q=corr-tree", "", "", nil)
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, string(page), "receipt.sent")
	assert.Contains(t, string(page), "open the dead letter")
}
