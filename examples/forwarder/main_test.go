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

	"github.com/arcmill/arcmill/internal/testenv"
)

func TestForwarderToOutbox(t *testing.T) {
	dsn, addr := testenv.PostgresDSN(t), testenv.RedisAddr(t)
	suffix := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	prefix, before, after := "fwdex_"+suffix, "arcmill-example:before:"+suffix, "arcmill-example:after:"+suffix
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() }) // after the tables are dropped (cleanups run last first)
	t.Cleanup(func() {
		client.Del(context.Background(), before, after)
		for _, s := range []string{prefix + "_orders", prefix + "_outbox", prefix + "_outbox_lock",
			`"watermill_` + prefix + `_forwarder"`, `"watermill_offsets_` + prefix + `_forwarder"`} {
			_, _ = db.Exec("DROP TABLE IF EXISTS " + s)
		}
		_, _ = db.Exec("DROP FUNCTION IF EXISTS " + prefix + "_outbox_notify()")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, &out, dsn, addr, prefix, before, after), out.String())
	assert.Contains(t, out.String(), "written twice, stored and sent 1 time(s)")
	assert.Contains(t, out.String(), "same Arc bytes on both streams")
	assert.EqualValues(t, 1, client.XLen(ctx, before).Val())
	var orders int
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM "+prefix+"_orders").Scan(&orders))
	assert.Equal(t, 3, orders, "each business transaction committed its row")
}
