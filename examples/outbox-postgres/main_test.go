package main

import (
	"bytes"
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

func TestOutboxPostgres(t *testing.T) {
	dsn, addr := testenv.PostgresDSN(t), testenv.RedisAddr(t)
	suffix := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	table, stream := "example_outbox_"+suffix, "arcmill-example:"+suffix
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() }) // after the tables are dropped (cleanups run last first)
	t.Cleanup(func() {
		client.Del(context.Background(), stream)
		for _, s := range []string{table + "_orders", table, table + "_lock"} {
			_, _ = db.Exec("DROP TABLE IF EXISTS " + s)
		}
		_, _ = db.Exec("DROP FUNCTION IF EXISTS " + table + "_notify()")
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, &out, dsn, addr, stream, table), out.String())
	assert.Contains(t, out.String(), "entries on "+stream+": 1; outbox: pending 0, in flight 0, dead 0, delivered 1")

	entries := client.XRange(ctx, stream, "-", "+").Val()
	require.Len(t, entries, 1, "one event: the rollback sent nothing, the retry was deduplicated")
	var ev arc.Event
	require.NoError(t, arc.Unmarshal([]byte(entries[0].Values["data"].(string)), &ev))
	assert.Equal(t, "order.created", ev.Type)
	assert.Equal(t, "shop", ev.Meta.Source)
	var orders int
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM "+table+"_orders").Scan(&orders))
	assert.Equal(t, 1, orders)
}
