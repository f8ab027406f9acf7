package inbox

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// hostileIDs are meta.id values (as in wire JSON) that a text column
// cannot hold as they are, or that MariaDB compares as equal: lone
// surrogates (WTF-8 bytes in Go), invalid UTF-8, NUL, trailing spaces, and
// U+FFFD, which a replacement would turn them into.
var hostileIDs = []string{`\ud800`, `\udc00`, `\udc00\ud800`, "\xff", "\xfe", "a\xffb", `a\u0000b`, `\u0000`,
	"k", "k ", "k  ", `\ufffd`, `\ufffd\ufffd\ufffd`, "plain"}

// Each event with a hostile id is applied once, on PostgreSQL, MariaDB and
// SQLite, with the default key on its id and on its idempotency key: a
// redelivery is a duplicate, and no two distinct ids are taken for one.
// The children it emits carry its id as their causation id into the
// consumer outbox with their bytes.
func TestHostileIDsAppliedOnceEach(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d outbox.Dialect) {
		for _, withKey := range []bool{false, true} {
			f := newFixture(t, d, nil)
			ctx := context.Background()
			var evs []arc.Event
			for i, id := range hostileIDs {
				meta := `"id":"` + id + `","timestamp":"2026-11-30T12:00:00.000Z"`
				if withKey {
					meta += `,"idempotencyKey":"k` + id + `"`
				}
				var ev arc.Event
				require.NoError(t, arc.Unmarshal([]byte(fmt.Sprintf(`{"type":"order.created","payload":{"n":%d},"meta":{%s}}`, i, meta)), &ev))
				evs = append(evs, ev)
			}
			h := f.ib.Handle("billing", func(ctx context.Context, tx *stdsql.Tx, ev arc.Event) error {
				if _, err := Emit(ctx, "invoice.created", map[string]int{"n": 1}, arc.Meta{}); err != nil {
					return err
				}
				return nil
			})
			for round := 0; round < 2; round++ {
				for _, ev := range evs {
					require.NoError(t, h(ctx, ev), "%q, delivery %d", ev.Meta.ID, round+1)
				}
			}
			n, err := f.ib.Count(ctx, "billing")
			require.NoError(t, err)
			assert.EqualValues(t, len(evs), n, "one record per distinct event (idempotency key: %t)", withKey)
			for _, ev := range evs {
				seen, err := f.ib.Seen(ctx, "billing", ev)
				require.NoError(t, err)
				assert.True(t, seen, "%q", ev.Meta.ID)
			}
			emitted, err := f.ob.CountDeadLetters(ctx, outbox.Filter{})
			require.NoError(t, err)
			assert.Zero(t, emitted)
			st, err := f.ob.Status(ctx)
			require.NoError(t, err)
			assert.EqualValues(t, len(evs), st.Pending, "one child per event, emitted once")
		}
	})
}

// A custom key the columns cannot hold is refused before any transaction,
// as unrecoverable; the default keys never are.
func TestKeysAreColumnText(t *testing.T) {
	t.Parallel()
	f := newFixture(t, outbox.SQLite, func(c *Config) { c.Key = func(ev arc.Event) string { return "mine:" + ev.Meta.ID } })
	noop := func(context.Context) error { return nil }
	for _, id := range []string{"\xff", "a\x00", "k "} {
		_, err := f.ib.Process(context.Background(), "c", arc.Event{Type: "t", Meta: arc.Meta{ID: id}}, noop)
		require.ErrorIs(t, err, ErrInvalidKey, "%q", id)
		require.ErrorIs(t, err, arc.ErrUnrecoverable)
		assert.Regexp(t, `^id#[0-9a-f]{64}$`, KeyByID(arc.Event{Meta: arc.Meta{ID: id}}), "%q", id)
	}
	assert.Equal(t, "id:k", KeyByID(arc.Event{Meta: arc.Meta{ID: "k"}}), "plain ids keep their readable key")
	assert.NotEqual(t, KeyByID(arc.Event{Meta: arc.Meta{ID: "k "}}), KeyByID(arc.Event{Meta: arc.Meta{ID: "k  "}}))
}
