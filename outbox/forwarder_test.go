package outbox

import (
	"context"
	stdsql "database/sql"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	_ "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// tx is one business transaction as the test drives it.
type tx struct {
	exec     func(query string, args ...any) error
	pub      message.Publisher
	commit   func() error
	rollback func() error
}

// fullEvent carries every meta field, unknown keys and an aggregate.
func fullEvent(t *testing.T, orderID string) arc.Event {
	ev, err := arc.NewEvent("order.created", map[string]any{"orderId": orderID, "total": 99.5,
		"placed": map[string]string{"timestamp": "2026-04-28T10:00:00.000Z"}}, arc.Meta{
		SchemaVersion: 2, CorrelationID: "req-" + orderID, CausationID: "cmd-" + orderID, PartitionKey: orderID,
		Source: "shop", IdempotencyKey: "k-" + orderID, Resource: "order", ResourceID: orderID, UserID: "u-7",
		OrganizationID: "org-1", Aggregate: &arc.Aggregate{Type: "Order", ID: orderID},
		Extra: map[string]json.RawMessage{"tenantTier": json.RawMessage(`"gold"`)},
	})
	require.NoError(t, err)
	return ev
}

// forwarderScenario: a rolled-back transaction publishes nothing; a
// committed one arrives on Redis, in Arc's layout, with every meta field.
func forwarderScenario(t *testing.T, db *stdsql.DB, dialect Dialect, begin func(topic string) tx) {
	ctx := context.Background()
	suffix := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	fwdTopic := "arcmill_fwd_" + suffix
	orders := "arcmill_test_orders_" + suffix
	quote := func(s string) string {
		if dialect == MySQL {
			return "`" + s + "`"
		}
		return `"` + s + `"`
	}
	t.Cleanup(func() {
		for _, tbl := range []string{"watermill_" + fwdTopic, "watermill_offsets_" + fwdTopic, orders} {
			_, _ = db.Exec("DROP TABLE IF EXISTS " + quote(tbl))
		}
	})
	require.NoError(t, MigrateForwarder(ctx, db, dialect, fwdTopic))
	require.NoError(t, MigrateForwarder(ctx, db, dialect, fwdTopic), "idempotent")
	_, err := db.Exec("CREATE TABLE " + quote(orders) + " (id VARCHAR(64) PRIMARY KEY)")
	require.NoError(t, err)

	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer client.Close()
	stream := "arcmill-test:" + uuid.NewString()
	t.Cleanup(func() { client.Del(ctx, stream) })
	dest, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
	require.NoError(t, err)

	placeholder := "?"
	if dialect == PostgreSQL {
		placeholder = "$1"
	}
	write := func(orderID string, commit bool) arc.Event {
		tr := begin(fwdTopic)
		require.NoError(t, tr.exec("INSERT INTO "+quote(orders)+" (id) VALUES ("+placeholder+")", orderID))
		ev := fullEvent(t, orderID)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		require.NoError(t, tr.pub.Publish(stream, msg))
		if commit {
			require.NoError(t, tr.commit())
		} else {
			require.NoError(t, tr.rollback())
		}
		return ev
	}
	write("o-1", false)
	committed := write("o-2", true)

	fwd, err := NewForwarder(db, dialect, dest, ForwarderConfig{Topic: fwdTopic})
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = fwd.Run(runCtx) }()
	defer fwd.Close()

	require.Eventually(t, func() bool { return client.XLen(ctx, stream).Val() >= 1 }, 15*time.Second, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // had the rolled-back event been stored, it would be here by now
	entries := client.XRange(ctx, stream, "-", "+").Val()
	require.Len(t, entries, 1, "the rolled-back transaction published nothing")
	assert.Equal(t, "order.created", entries[0].Values["type"])
	var got arc.Event
	require.NoError(t, arc.Unmarshal([]byte(entries[0].Values["data"].(string)), &got))
	assert.True(t, committed.Equal(got), "every meta field intact:\n%+v\n%+v", committed, got)
	want, _ := arc.Marshal(committed)
	assert.Equal(t, string(want), entries[0].Values["data"], "byte for byte")

	var n int
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM "+quote(orders)).Scan(&n))
	assert.Equal(t, 1, n, "the business row committed with its event, and only it")
}

func TestForwarderPostgreSQL(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	db, err := stdsql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() }) // after the tables are dropped (cleanups run last first)
	forwarderScenario(t, db, PostgreSQL, func(topic string) tx {
		sqlTx, err := db.Begin()
		require.NoError(t, err)
		pub, err := TxPublisher(sqlTx, PostgreSQL, topic)
		require.NoError(t, err)
		return tx{exec: func(q string, args ...any) error { _, err := sqlTx.Exec(q, args...); return err },
			pub: pub, commit: sqlTx.Commit, rollback: sqlTx.Rollback}
	})
}

func TestForwarderPostgreSQLPgx(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	db, err := stdsql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() }) // after the tables are dropped (cleanups run last first)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	forwarderScenario(t, db, PostgreSQL, func(topic string) tx {
		pgTx, err := conn.Begin(ctx)
		require.NoError(t, err)
		pub, err := PgxTxPublisher(pgTx, topic)
		require.NoError(t, err)
		return tx{exec: func(q string, args ...any) error { _, err := pgTx.Exec(ctx, q, args...); return err },
			pub: pub, commit: func() error { return pgTx.Commit(ctx) }, rollback: func() error { return pgTx.Rollback(ctx) }}
	})
}

func TestForwarderMySQL(t *testing.T) {
	dsn := testenv.MySQLDSN(t)
	db, err := stdsql.Open("mysql", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() }) // after the tables are dropped (cleanups run last first)
	forwarderScenario(t, db, MySQL, func(topic string) tx {
		sqlTx, err := db.Begin()
		require.NoError(t, err)
		pub, err := TxPublisher(sqlTx, MySQL, topic)
		require.NoError(t, err)
		return tx{exec: func(q string, args ...any) error { _, err := sqlTx.Exec(q, args...); return err },
			pub: pub, commit: sqlTx.Commit, rollback: sqlTx.Rollback}
	})
}

func TestErrors(t *testing.T) {
	_, err := TxPublisher(nil, PostgreSQL, "")
	assert.Error(t, err)
	_, err = PgxTxPublisher(nil, "")
	assert.Error(t, err)
	_, _, err = Dialect(7).schema()
	assert.Error(t, err)
}
