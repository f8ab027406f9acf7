package main

import (
	"bytes"
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
)

// The example run twice in a row with its default names, on servers that
// keep the tables, offsets and stream entries of earlier runs, does the
// same thing each time: no hang in Forwarder.Close, no stale entry taken
// for this run's event.
func TestForwarderExampleRunTwiceWithDefaultNamesDoesTheSameThing(t *testing.T) {
	dsn, addr := testenv.PostgresDSN(t), testenv.RedisAddr(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { assert.NoError(t, client.Close()) })
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) })

	for i := 1; i <= 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		beforeTip, err := tip(ctx, client, defaultBefore)
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+defaultPrefix+`_orders (id TEXT PRIMARY KEY)`) // as run does
		require.NoError(t, err)
		var ordersBefore int
		require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+defaultPrefix+"_orders").Scan(&ordersBefore))
		start := time.Now()
		var out bytes.Buffer
		require.NoError(t, run(ctx, &out, dsn, addr, defaultPrefix, defaultBefore, defaultAfter), "run %d: %s", i, out.String())
		assert.Less(t, time.Since(start), 15*time.Second, "run %d: no 30 s hang in Forwarder.Close", i)
		assert.Contains(t, out.String(), "written twice, stored and sent 1 time(s)", "run %d", i)
		assert.Contains(t, out.String(), "same Arc bytes on both streams", "run %d", i)
		added, err := client.XRange(ctx, defaultBefore, "("+beforeTip, "+").Result()
		require.NoError(t, err)
		assert.Len(t, added, 1, "run %d: the forwarder delivered this run's event once", i)
		var orders int
		require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+defaultPrefix+"_orders").Scan(&orders))
		assert.Equal(t, ordersBefore+3, orders, "run %d: each business transaction committed its row", i)
		cancel()
	}
}
