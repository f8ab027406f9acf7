package crud

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/outbox"
)

// bench is a real database with a business table and an outbox, relaying
// to a stream of its own on the shared Redis.
type bench struct {
	db     *sql.DB
	em     *Emitter
	relay  *outbox.Relay
	redis  *redis.Client
	stream string
	table  string
}

func openDB(t testing.TB, d outbox.Dialect) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	switch d {
	case outbox.PostgreSQL:
		db, err = sql.Open("pgx", testenv.PostgresDSN(t))
	case outbox.MySQL:
		db, err = sql.Open("mysql", testenv.MySQLDSN(t))
	case outbox.SQLite:
		db, err = sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "crud.db")+
			"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	}
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) })
	require.NoError(t, db.Ping())
	return db
}

func newBench(t testing.TB, d outbox.Dialect) *bench {
	t.Helper()
	ctx := context.Background()
	suffix := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	b := &bench{db: openDB(t, d), stream: "crudtest:" + suffix, table: "crudtest_products_" + suffix}
	obTable := "crudtest_ob_" + suffix
	ob, err := outbox.New(b.db, outbox.Config{Dialect: d, Table: obTable})
	require.NoError(t, err)
	require.NoError(t, ob.Migrate(ctx))
	_, err = b.db.ExecContext(ctx, "CREATE TABLE "+b.table+" (id VARCHAR(64) PRIMARY KEY, name VARCHAR(64))")
	require.NoError(t, err)
	t.Cleanup(func() {
		drops := []string{"DROP TABLE IF EXISTS " + b.table, "DROP TABLE IF EXISTS " + obTable,
			"DROP TABLE IF EXISTS " + obTable + "_lock"}
		if d == outbox.PostgreSQL {
			drops = append(drops, "DROP FUNCTION IF EXISTS "+obTable+"_notify() CASCADE")
		}
		for _, s := range drops {
			_, err := b.db.ExecContext(context.Background(), s)
			assert.NoError(t, err, s)
		}
	})
	b.em, err = NewEmitter(EmitterConfig{Outbox: ob, Topic: b.stream})
	require.NoError(t, err)
	b.redis = redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() {
		assert.NoError(t, b.redis.Del(context.Background(), b.stream).Err())
		assert.NoError(t, b.redis.Close())
	})
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: b.redis, SkipServerCheck: true})
	require.NoError(t, err)
	b.relay, err = ob.NewRelay(pub, outbox.RelayConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, b.relay.Close()) })
	return b
}

// relayed runs one relay pass and returns the Arc entries now on the
// stream: the data field of each, checked to be in Arc's layout.
func (b *bench) relayed(t testing.TB) []string {
	t.Helper()
	ctx := context.Background()
	_, err := b.relay.RelayBatch(ctx)
	require.NoError(t, err)
	entries, err := b.redis.XRange(ctx, b.stream, "-", "+").Result()
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		data, ok := e.Values["data"].(string)
		require.True(t, ok, "entry %s has no data field: %v", e.ID, e.Values)
		var probe struct{ Type string }
		require.NoError(t, json.Unmarshal([]byte(data), &probe))
		assert.Equal(t, probe.Type, e.Values["type"], "Arc's type field")
		out = append(out, data)
	}
	return out
}

// goldenChange returns a golden case's change and the bytes Arc writes.
func goldenChange(t *testing.T, i int) (Change, string) {
	t.Helper()
	g := loadGolden(t)[i]
	return g.change(t), g.Want
}

// goldenNamed is goldenChange for the case called name.
func goldenNamed(t *testing.T, name string) (Change, string) {
	t.Helper()
	for _, g := range loadGolden(t) {
		if g.Name == name {
			return g.change(t), g.Want
		}
	}
	t.Fatalf("no golden case %q", name)
	return Change{}, ""
}

var allDialects = []outbox.Dialect{outbox.PostgreSQL, outbox.MySQL, outbox.SQLite}

// A change that rolls back emits nothing; a change that commits reaches
// Redis Streams through the relay as the exact bytes Arc would have
// published, on every database, through database/sql.
func TestEmitter_Write_SameTransaction(t *testing.T) {
	t.Parallel()
	for _, d := range allDialects {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			b := newBench(t, d)
			ctx := context.Background()
			change, want := goldenChange(t, 0)

			tx, err := b.db.BeginTx(ctx, nil)
			require.NoError(t, err)
			_, err = tx.ExecContext(ctx, "INSERT INTO "+b.table+" (id, name) VALUES ('p-rolled', 'Mug')")
			require.NoError(t, err)
			require.NoError(t, b.em.WriteChanges(ctx, tx, change))
			require.NoError(t, tx.Rollback())
			assert.Empty(t, b.relayed(t), "a rolled-back change emits nothing")

			tx, err = b.db.BeginTx(ctx, nil)
			require.NoError(t, err)
			_, err = tx.ExecContext(ctx, "INSERT INTO "+b.table+" (id, name) VALUES ('p-1', 'Mug')")
			require.NoError(t, err)
			// With it, the scope values only a JSON value can carry (a
			// numeric user id, "" and null organizations) survive the
			// outbox and the relay.
			changes, wants := []Change{change}, []string{want}
			for _, name := range []string{"hook: numeric user id", "hook: null _id", "hook: empty user id",
				"org: empty string", "org: null", "org: number"} {
				c, w := goldenNamed(t, name)
				changes, wants = append(changes, c), append(wants, w)
			}
			require.NoError(t, b.em.WriteChanges(ctx, tx, changes...))
			require.NoError(t, tx.Commit())
			assert.Equal(t, wants, b.relayed(t), "Arc's bytes on the stream")
		})
	}
}

// A bulk change writes one event per row, in order, in one statement.
func TestEmitter_Write_Bulk(t *testing.T) {
	t.Parallel()
	for _, d := range allDialects {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			b := newBench(t, d)
			ctx := WithScope(context.Background(), NewScope("req-bulk", "u-1", ""))
			var changes []Change
			for _, id := range []string{"a", "b", "c"} {
				changes = append(changes, Change{Op: Update, Resource: "product", Doc: map[string]string{"id": id}})
			}
			tx, err := b.db.BeginTx(ctx, nil)
			require.NoError(t, err)
			require.NoError(t, b.em.WriteChanges(ctx, tx, changes...))
			require.NoError(t, tx.Commit())
			got := b.relayed(t)
			require.Len(t, got, 3)
			for i, id := range []string{"a", "b", "c"} {
				var ev arc.Event
				require.NoError(t, arc.Unmarshal([]byte(got[i]), &ev))
				assert.Equal(t, "product.updated", ev.Type)
				assert.Equal(t, id, ev.Meta.ResourceID)
				assert.Equal(t, "req-bulk", ev.Meta.CorrelationID, "scope from the context")
				assert.Equal(t, "u-1", ev.Meta.UserID)
			}
		})
	}
}

// The pgx path: the same guarantees inside a pgx.Tx.
func TestEmitter_WritePgx_SameTransaction(t *testing.T) {
	t.Parallel()
	b := newBench(t, outbox.PostgreSQL)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.PostgresDSN(t))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, conn.Close(context.Background())) })
	change, want := goldenChange(t, 1)

	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "INSERT INTO "+b.table+" (id, name) VALUES ('o-rolled', 'x')")
	require.NoError(t, err)
	require.NoError(t, b.em.WriteChangesPgx(ctx, tx, change))
	require.NoError(t, tx.Rollback(ctx))
	assert.Empty(t, b.relayed(t), "a rolled-back change emits nothing")

	tx, err = conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "INSERT INTO "+b.table+" (id, name) VALUES ('o-42', 'x')")
	require.NoError(t, err)
	require.NoError(t, b.em.WriteChangesPgx(ctx, tx, change))
	require.NoError(t, tx.Commit(ctx))
	assert.Equal(t, []string{want}, b.relayed(t), "Arc's bytes on the stream")
}

func TestNewEmitter_Validates(t *testing.T) {
	t.Parallel()
	_, err := NewEmitter(EmitterConfig{})
	require.ErrorIs(t, err, ErrInvalidConfig)
}
