package outbox

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// longEvents are valid Arc events that an outbox limited to 255 bytes
// refused: the longest ASCII type, the longest types of 2-, 3- and 4-byte
// characters (arc.MaxTypeLength UTF-16 code units each), and an id of
// 1,000 bytes.
func longEvents(t *testing.T) []arc.Event {
	t.Helper()
	types := []string{strings.Repeat("a", arc.MaxTypeLength), strings.Repeat("é", arc.MaxTypeLength),
		strings.Repeat("日", arc.MaxTypeLength), strings.Repeat("😀", arc.MaxTypeLength/2)}
	var out []arc.Event
	for _, typ := range types {
		require.NoError(t, arc.ValidateType(typ), "Arc accepts the type")
		ev, err := arc.NewEvent(typ, map[string]int{"n": 1}, arc.Meta{})
		require.NoError(t, err)
		out = append(out, ev)
	}
	ev, err := arc.NewEvent("order.created", map[string]int{"n": 2}, arc.Meta{})
	require.NoError(t, err)
	ev.Meta.ID = strings.Repeat("i", 1000) + uuid.NewString()
	return append(out, ev)
}

// relayLong writes longEvents, relays them, and checks that each arrives
// with its type and id intact.
func relayLong(t *testing.T, f *fixture) {
	t.Helper()
	events := longEvents(t)
	var entries []Entry
	for _, ev := range events {
		entries = append(entries, Entry{Topic: "arc:events", Event: ev})
	}
	f.commit(entries...)
	rec := newRecorder()
	relay, err := f.ob.NewRelay(rec, RelayConfig{})
	require.NoError(t, err)
	res, err := relay.RelayBatch(context.Background())
	require.NoError(t, err)
	require.Equal(t, len(events), res.Relayed)
	for i, ev := range events {
		got, err := arc.FromMessage(rec.got[i].msg)
		require.NoError(t, err)
		assert.Equal(t, ev.Type, got.Type)
		assert.Equal(t, ev.Meta.ID, got.Meta.ID)
	}
}

// The outbox stores and relays every type and id Arc accepts.
func TestWrite_AcceptsEveryTypeAndIDArcAccepts(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		relayLong(t, newFixture(t, d, false))
	})
}

// Migrate widens the id and type columns of a table made by an earlier
// arcmill (VARCHAR(255)), and running it again changes nothing.
func TestMigrate_WidensAnOldTable(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, false)
		ctx := context.Background()
		table := f.ob.Table()
		var narrow []string
		switch d {
		case PostgreSQL:
			narrow = []string{"ALTER TABLE " + table + " ALTER COLUMN event_id TYPE VARCHAR(255), ALTER COLUMN event_type TYPE VARCHAR(255)"}
		case MySQL:
			narrow = []string{"ALTER TABLE " + table + " MODIFY event_id VARCHAR(255) NOT NULL, MODIFY event_type VARCHAR(255) NOT NULL DEFAULT ''"}
		case SQLite:
			// SQLite's TEXT has no length: only the write-time check
			// limited it, and an old table needs nothing.
		}
		for _, s := range narrow {
			_, err := f.db.ExecContext(ctx, s)
			require.NoError(t, err)
		}
		if len(narrow) > 0 {
			// The old table refuses a long id, as it did.
			tx, err := f.db.BeginTx(ctx, nil)
			require.NoError(t, err)
			assert.Error(t, f.ob.Write(ctx, tx, Entry{Topic: "arc:events", Event: longEvents(t)[4]}), "the old table is narrow")
			require.NoError(t, tx.Rollback())
		}
		require.NoError(t, f.ob.Migrate(ctx))
		require.NoError(t, f.ob.Migrate(ctx), "idempotent")
		relayLong(t, f)
	})
}

// Topics follow watermill-sql's rule (A-Z, a-z, 0-9 and "-$:._", at most
// MaxTopicLength bytes); Write refuses others with ErrInvalidEntry, saying
// which characters are allowed, and Arc's stream names pass.
func TestWrite_TopicRule(t *testing.T) {
	t.Parallel()
	f := newFixture(t, SQLite, false)
	ctx := context.Background()
	for _, topic := range []string{"arc:events", "arc:events:dlq", "orders.v1-$_x", strings.Repeat("t", MaxTopicLength)} {
		tx, err := f.db.BeginTx(ctx, nil)
		require.NoError(t, err)
		assert.NoError(t, f.ob.Write(ctx, tx, Entry{Topic: topic, Event: f.event("order.created", arc.Meta{})}), topic)
		require.NoError(t, tx.Rollback())
	}
	for _, topic := range []string{"", "orders events", "orders/eu", "commandes.é", strings.Repeat("t", MaxTopicLength+1)} {
		tx, err := f.db.BeginTx(ctx, nil)
		require.NoError(t, err)
		err = f.ob.Write(ctx, tx, Entry{Topic: topic, Event: f.event("order.created", arc.Meta{})})
		assert.ErrorIs(t, err, ErrInvalidEntry, "%q", topic)
		require.NoError(t, tx.Rollback())
	}
	tx, err := f.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, tx.Rollback()) }()
	err = f.ob.Write(ctx, tx, Entry{Topic: "a b", Event: f.event("order.created", arc.Meta{})})
	assert.ErrorContains(t, err, `"-$:._"`)
	long := f.event("order.created", arc.Meta{})
	msg, err := arc.ToMessage(long)
	require.NoError(t, err)
	msg.Metadata.Set(arc.MetadataType, strings.Repeat("t", MaxTypeLength+1))
	assert.ErrorIs(t, f.ob.Write(ctx, tx, Entry{Topic: "t", Message: msg}), ErrInvalidEntry, "a type over MaxTypeLength bytes")
}
