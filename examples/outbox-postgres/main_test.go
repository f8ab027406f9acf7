package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// Run twice in a row with the default names, on servers that keep the
// first run's table rows and stream entries, the example does the same
// thing each time, reports this run's event (not the stream's oldest
// entry), and never prints the DSN's password.
func TestOutboxPostgresRunTwiceWithDefaultNamesDoesTheSameThing(t *testing.T) {
	dsn, addr := testenv.PostgresDSN(t), testenv.RedisAddr(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { assert.NoError(t, client.Close()) })
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) })
	password := "postgres" // the default DSN's; the test checks it is not printed
	if !strings.Contains(dsn, ":"+password+"@") {
		password = ""
	}

	for i := 1; i <= 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		tip, err := lastID(ctx, client, defaultStream)
		require.NoError(t, err)
		var out bytes.Buffer
		require.NoError(t, run(ctx, &out, dsn, addr, defaultStream, defaultTable), "run %d: %s", i, out.String())
		s := out.String()
		assert.Contains(t, s, "this event on "+defaultStream+": 1 entry; outbox: pending 0, in flight 0, dead 0", "run %d", i)
		if password != "" {
			assert.NotContains(t, s, ":"+password+"@", "run %d: the DSN's password is not printed", i)
			assert.Contains(t, s, ":xxxxx@", "run %d", i)
		}

		added, err := client.XRange(ctx, defaultStream, "("+tip, "+").Result()
		require.NoError(t, err)
		require.Len(t, added, 1, "run %d: one event: the rollback sent nothing, the retry was deduplicated", i)
		var ev arc.Event
		require.NoError(t, arc.Unmarshal([]byte(added[0].Values["data"].(string)), &ev))
		assert.Equal(t, "order.created", ev.Type)
		assert.Equal(t, "shop", ev.Meta.Source)
		assert.Contains(t, s, "(event "+ev.Meta.ID+")", "run %d: the event reported is this run's", i)
		assert.Contains(t, s, "entry "+added[0].ID+" on "+defaultStream+", type order.created, event "+ev.Meta.ID,
			"run %d: the entry printed is this run's", i)
		var payload struct{ OrderID string }
		require.NoError(t, json.Unmarshal(ev.Payload, &payload))
		var orders int
		require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+defaultTable+"_orders WHERE id = $1",
			payload.OrderID).Scan(&orders))
		assert.Equal(t, 1, orders, "run %d: the order committed once", i)
		cancel()
	}
}
