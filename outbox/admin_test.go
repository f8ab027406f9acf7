package outbox

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// Redrive refuses a negative limit or rate.
func TestRedriveRefusesNegativeOptions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, SQLite, false)
	for _, opts := range []RedriveOptions{{Limit: -1}, {Rate: -1}} {
		_, err := f.ob.Redrive(context.Background(), opts)
		assert.ErrorIs(t, err, ErrInvalidConfig, "%+v", opts)
	}
}

// Filter.Seqs names exact rows: one event written to several topics has
// one dead letter per row, and listing, redriving or purging one of them
// leaves its twins alone.
func TestFilterSeqsSelectsExactRows(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, false)
		ctx := context.Background()
		ev := f.event("order.created", arc.Meta{})
		f.commit(Entry{Topic: "topic-a", Event: ev}, Entry{Topic: "topic-b", Event: ev}, Entry{Topic: "topic-c", Event: ev})
		_, err := f.db.ExecContext(ctx, "UPDATE "+f.ob.cfg.Table+" SET status = 2, attempts = 5")
		require.NoError(t, err)
		dead, err := f.ob.DeadLetters(ctx, Filter{EventIDs: []string{ev.Meta.ID}}, 0)
		require.NoError(t, err)
		require.Len(t, dead, 3, "one dead letter per topic")
		a, b := dead[0], dead[1]

		one, err := f.ob.DeadLetters(ctx, Filter{Seqs: []int64{b.Seq}}, 0)
		require.NoError(t, err)
		require.Len(t, one, 1)
		assert.Equal(t, b.Topic, one[0].Topic)
		n, err := f.ob.CountDeadLetters(ctx, Filter{EventIDs: []string{ev.Meta.ID}, Seqs: []int64{a.Seq, b.Seq}})
		require.NoError(t, err)
		assert.EqualValues(t, 2, n)

		moved, err := f.ob.Redrive(ctx, RedriveOptions{Filter: Filter{Seqs: []int64{b.Seq}}})
		require.NoError(t, err)
		assert.Equal(t, 1, moved)
		purged, err := f.ob.PurgeDeadLetters(ctx, Filter{Seqs: []int64{a.Seq}})
		require.NoError(t, err)
		assert.EqualValues(t, 1, purged)

		left, err := f.ob.DeadLetters(ctx, Filter{}, 0)
		require.NoError(t, err)
		require.Len(t, left, 1)
		assert.Equal(t, "topic-c", left[0].Topic)
		assert.Equal(t, 1, f.count(statusPending), "topic-b's row redriven, and only it")
	})
}
