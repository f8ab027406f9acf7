package outbox

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// A topic with a Redis Cluster hash tag ({orders}:events), which
// watermill-sql's publisher refuses, is stored as written, by Write and by
// Publisher; so is a topic that looks like the encoding used to pass it.
func TestWrite_HashTagTopicsStoredAsWritten(t *testing.T) {
	t.Parallel()
	f := newFixture(t, SQLite, false)
	ctx := context.Background()
	topics := []string{"{orders}:events", "arc:events:{0}", "$arcmill-hex:7b7d", "$arcmill-hex:zz", "arc:events"}
	for _, topic := range topics {
		f.commit(Entry{Topic: topic, Event: f.event("order.created", arc.Meta{})})
		tx, err := f.db.BeginTx(ctx, nil)
		require.NoError(t, err)
		pub, err := f.ob.Publisher(tx)
		require.NoError(t, err)
		msg, err := arc.ToMessage(f.event("order.created", arc.Meta{}))
		require.NoError(t, err)
		require.NoError(t, pub.Publish(topic, msg), topic)
		require.NoError(t, tx.Commit())
	}
	rows, err := f.db.QueryContext(ctx, "SELECT topic FROM "+f.ob.Table()+" ORDER BY id")
	require.NoError(t, err)
	defer rows.Close()
	var got []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		got = append(got, s)
	}
	require.NoError(t, rows.Err())
	var want []string
	for _, topic := range topics {
		want = append(want, topic, topic)
	}
	assert.Equal(t, want, got)
}
