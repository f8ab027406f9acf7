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
// The forwarder delivers in commit order, so once a later event has
// arrived, anything the rolled-back transaction had stored would be
// there too.
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
			_, err := db.Exec("DROP TABLE IF EXISTS " + quote(tbl))
			assert.NoError(t, err)
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
	last := write("o-3", true)

	fwd, err := NewForwarder(db, dialect, dest, ForwarderConfig{Topic: fwdTopic})
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	fwdDone := make(chan error, 1)
	go func() { fwdDone <- fwd.Run(runCtx) }()
	defer func() {
		assert.NoError(t, fwd.Close())
		assert.NoError(t, wait(t, fwdDone, "the forwarder to stop"))
	}()

	require.Eventually(t, func() bool {
		entries := client.XRange(ctx, stream, "-", "+").Val()
		return len(entries) > 0 && strings.Contains(entries[len(entries)-1].Values["data"].(string), last.Meta.ID)
	}, waitTimeout, 20*time.Millisecond, "the last committed event arrives")
	entries := client.XRange(ctx, stream, "-", "+").Val()
	require.Len(t, entries, 2, "the rolled-back transaction published nothing")
	assert.Equal(t, "order.created", entries[0].Values["type"])
	var got arc.Event
	require.NoError(t, arc.Unmarshal([]byte(entries[0].Values["data"].(string)), &got))
	assert.True(t, committed.Equal(got), "every meta field intact:\n%+v\n%+v", committed, got)
	want, err := arc.Marshal(committed)
	require.NoError(t, err)
	assert.Equal(t, string(want), entries[0].Values["data"], "byte for byte")

	var n int
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM "+quote(orders)).Scan(&n))
	assert.Equal(t, 2, n, "the business rows committed with their events, and only they")
}

func TestForwarderPostgreSQL(t *testing.T) {
	t.Parallel()
	dsn := testenv.PostgresDSN(t)
	db, err := stdsql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) }) // after the tables are dropped (cleanups run last first)
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
	t.Parallel()
	dsn := testenv.PostgresDSN(t)
	db, err := stdsql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) }) // after the tables are dropped (cleanups run last first)
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
	t.Parallel()
	dsn := testenv.MySQLDSN(t)
	db, err := stdsql.Open("mysql", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) }) // after the tables are dropped (cleanups run last first)
	forwarderScenario(t, db, MySQL, func(topic string) tx {
		sqlTx, err := db.Begin()
		require.NoError(t, err)
		pub, err := TxPublisher(sqlTx, MySQL, topic)
		require.NoError(t, err)
		return tx{exec: func(q string, args ...any) error { _, err := sqlTx.Exec(q, args...); return err },
			pub: pub, commit: sqlTx.Commit, rollback: sqlTx.Rollback}
	})
}

// The forwarder path refuses a nil transaction and the dialects
// watermill-sql does not have, wrapping ErrInvalidConfig.
func TestForwarderRefusesInvalidConfig(t *testing.T) {
	t.Parallel()
	_, err := TxPublisher(nil, PostgreSQL, "")
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, err = PgxTxPublisher(nil, "")
	assert.ErrorIs(t, err, ErrInvalidConfig)
	for _, d := range []Dialect{SQLite, Dialect(7)} {
		_, _, err = d.schema(nil)
		assert.ErrorIs(t, err, ErrInvalidConfig, d)
		_, err = NewForwarder(&stdsql.DB{}, d, newRecorder(), ForwarderConfig{})
		assert.ErrorIs(t, err, ErrInvalidConfig, d)
	}
}

// The forwarder's JSON envelope cannot carry invalid UTF-8: a message whose
// UUID or metadata holds it (an Arc id with a lone surrogate) is refused,
// unrecoverable, before anything is written, instead of arriving with
// U+FFFD in place of its bytes.
func TestForwarderRefusesIDsItWouldChange(t *testing.T) {
	t.Parallel()
	db := openDB(t, PostgreSQL)
	ctx := context.Background()
	topic := "arcmill_fwd_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	require.NoError(t, MigrateForwarder(ctx, db, PostgreSQL, topic))
	t.Cleanup(func() {
		for _, tbl := range []string{"watermill_" + topic, "watermill_offsets_" + topic} {
			_, err := db.Exec(`DROP TABLE IF EXISTS "` + tbl + `"`)
			assert.NoError(t, err)
		}
	})
	var ev arc.Event
	require.NoError(t, arc.Unmarshal([]byte(`{"type":"t","payload":{},"meta":{"id":"1","correlationId":"\ud800"}}`), &ev))
	withMeta, err := arc.ToMessage(ev)
	require.NoError(t, err)
	for name, msg := range map[string]*message.Message{
		"uuid":     message.NewMessage("\xff", []byte(`{}`)),
		"metadata": withMeta,
	} {
		sqlTx := mustBegin(t, db)
		pub, err := TxPublisher(sqlTx, PostgreSQL, topic)
		require.NoError(t, err)
		err = pub.Publish("dest", msg)
		assert.ErrorIs(t, err, ErrInvalidEntry, name)
		assert.ErrorIs(t, err, arc.ErrUnrecoverable, name)
		require.NoError(t, sqlTx.Commit())
	}
	var n int
	require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM "watermill_`+topic+`"`).Scan(&n))
	assert.Zero(t, n, "nothing written")
	ok, err := TxPublisher(mustBegin(t, db), PostgreSQL, topic)
	require.NoError(t, err)
	require.NoError(t, ok.Publish("dest", message.NewMessage("1", []byte(`{}`))), "text passes")
}

func mustBegin(t *testing.T, db *stdsql.DB) *stdsql.Tx {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback() })
	return tx
}
