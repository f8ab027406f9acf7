package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/outbox"
)

// The script "arcmill outbox schema" prints, run on each real database
// as migration tools run it, gives a table that Migrate accepts and a
// relay delivers from: golang-migrate's way (the whole file in one
// multi-statement call) and goose's (--goose: each marked statement in
// turn, in one transaction).
func TestOutboxSchema_AppliedByAMigrationTool(t *testing.T) {
	t.Parallel()
	mysqlDSN := testenv.MySQLDSN(t)
	if strings.Contains(mysqlDSN, "?") {
		mysqlDSN += "&multiStatements=true" // how golang-migrate runs a MySQL file
	} else {
		mysqlDSN += "?multiStatements=true"
	}
	dir := t.TempDir()
	for name, c := range map[string]struct{ driver, dsn string }{
		"postgres": {"pgx", testenv.PostgresDSN(t)},
		"mysql":    {"mysql", mysqlDSN},
		"sqlite":   {"sqlite", "file:" + filepath.Join(dir, "shop.db") + "?_pragma=busy_timeout(10000)"},
	} {
		for _, tool := range []string{"golang-migrate", "goose"} {
			t.Run(name+"/"+tool, func(t *testing.T) {
				t.Parallel()
				table := "arcmill_cli_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
				args := []string{"outbox", "schema", "--dialect", name, "--table", table}
				if tool == "goose" {
					args = append(args, "--goose")
				}
				r := runBinary(t, strings.NewReader(""), os.Environ(), args...)
				require.Equal(t, exitOK, r.code, r.stderr)
				assert.True(t, strings.HasPrefix(r.stdout, "-- arcmill outbox schema: "+name+", table "+table), r.stdout)

				db, err := sql.Open(c.driver, c.dsn)
				require.NoError(t, err)
				t.Cleanup(func() { assert.NoError(t, db.Close()) })
				t.Cleanup(func() {
					for _, s := range []string{"DROP TABLE IF EXISTS " + table, "DROP TABLE IF EXISTS " + table + "_lock"} {
						_, err := db.Exec(s)
						assert.NoError(t, err)
					}
					if name == "postgres" {
						_, err := db.Exec("DROP FUNCTION IF EXISTS " + table + "_notify()")
						assert.NoError(t, err)
					}
				})
				if tool == "goose" {
					applyLikeGoose(t, db, r.stdout)
				} else {
					_, err = db.Exec(r.stdout)
					require.NoError(t, err, "the printed script runs")
				}
				relayOne(t, db, table)
			})
		}
	}
}

// applyLikeGoose runs the statements of a goose file's Up section, each
// between StatementBegin and StatementEnd, in one transaction.
func applyLikeGoose(t *testing.T, db *sql.DB, script string) {
	t.Helper()
	_, up, ok := strings.Cut(script, "-- +goose Up\n")
	require.True(t, ok, "an Up section")
	tx, err := db.Begin()
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	n := 0
	for {
		_, rest, ok := strings.Cut(up, "-- +goose StatementBegin\n")
		if !ok {
			break
		}
		stmt, after, ok := strings.Cut(rest, "-- +goose StatementEnd\n")
		require.True(t, ok, "every statement ends")
		_, err := tx.Exec(stmt)
		require.NoError(t, err, stmt)
		up, n = after, n+1
	}
	require.Positive(t, n)
	require.NoError(t, tx.Commit())
}

// relayOne checks that Migrate accepts the table and that an event
// written to it is relayed.
func relayOne(t *testing.T, db *sql.DB, table string) {
	t.Helper()
	ctx := context.Background()
	ob, err := outbox.New(db, outbox.Config{Table: table})
	require.NoError(t, err)
	require.NoError(t, ob.Migrate(ctx), "Migrate accepts the table")
	ev, err := arc.NewEvent("order.created", map[string]any{"orderId": "o-1"}, arc.Meta{})
	require.NoError(t, err)
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, ob.Write(ctx, tx, outbox.Entry{Topic: "arc:events", Event: ev}))
	require.NoError(t, tx.Commit())
	pub := &collector{}
	relay, err := ob.NewRelay(pub, outbox.RelayConfig{})
	require.NoError(t, err)
	res, err := relay.RelayBatch(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Relayed)
	assert.Equal(t, []string{ev.Meta.ID}, pub.ids())
}

// schema needs no database, says what it needs when it has no dialect,
// refuses a bad table or dialect with the usage exit code, and wraps the
// script in JSON only when asked.
func TestOutboxSchema_Flags(t *testing.T) {
	t.Parallel()
	env := append(os.Environ(), "ARCMILL_OUTBOX_DSN=", "ARCMILL_OUTBOX_DIALECT=")
	r := runBinary(t, strings.NewReader(""), env, "outbox", "schema")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "schema needs --dialect")
	r = runBinary(t, strings.NewReader(""), env, "outbox", "schema", "--dialect", "oracle")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, `unknown dialect "oracle"`)
	r = runBinary(t, strings.NewReader(""), env, "outbox", "schema", "--dialect", "sqlite", "--table", "Orders;")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "table name")
	r = runBinary(t, strings.NewReader(""), env, "outbox", "status", "--goose")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "--goose is for outbox schema")

	// The dialect is guessed from a DSN, which is never opened.
	r = runBinary(t, strings.NewReader(""), env, "outbox", "schema", "--dsn", "postgres://nobody@127.0.0.1:1/none", "--format", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var out map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
	assert.Equal(t, "postgres", out["dialect"])
	assert.Equal(t, outbox.DefaultTable, out["table"])
	want, err := outbox.Schema(outbox.Config{Dialect: outbox.PostgreSQL})
	require.NoError(t, err)
	assert.Equal(t, want, out["sql"])
}

// collector is a publisher that keeps the ids it got.
type collector struct {
	mu  sync.Mutex
	got []string
}

func (c *collector) Publish(_ string, msgs ...*message.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		c.got = append(c.got, m.UUID)
	}
	return nil
}

func (c *collector) Close() error { return nil }

func (c *collector) ids() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}
