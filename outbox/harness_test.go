package outbox

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"github.com/arcmill/arcmill/internal/fakeclock"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// sqliteDSN opens SQLite the way arcmill recommends: WAL, a busy timeout,
// and write transactions that take the lock up front.
func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"
}

// openDB opens a real database of the dialect.
func openDB(t testing.TB, d Dialect) *stdsql.DB {
	t.Helper()
	var db *stdsql.DB
	var err error
	switch d {
	case PostgreSQL:
		db, err = stdsql.Open("pgx", testenv.PostgresDSN(t))
	case MySQL:
		db, err = stdsql.Open("mysql", testenv.MySQLDSN(t))
	case SQLite:
		db, err = stdsql.Open("sqlite", sqliteDSN(filepath.Join(t.TempDir(), "outbox.db")))
	}
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) })
	db.SetMaxOpenConns(32)
	// Keep them open: database/sql keeps 2 idle connections by default, and
	// a new PostgreSQL connection costs a SCRAM handshake, slow under -race.
	db.SetMaxIdleConns(32)
	require.NoError(t, db.Ping())
	return db
}

// fixture is one outbox on a fresh table, with a business table beside it.
type fixture struct {
	t       testing.TB
	d       Dialect
	db      *stdsql.DB
	ob      *Outbox
	clock   *fakeclock.Clock
	orders  string
	counter int
}

func newFixture(t testing.TB, d Dialect, withClock bool) *fixture {
	t.Helper()
	db := openDB(t, d)
	return newFixtureOn(t, d, db, uniqueTable(), withClock)
}

// uniqueTable returns a new outbox table name: the servers are shared.
func uniqueTable() string {
	return "arcmill_ob_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
}

func newFixtureOn(t testing.TB, d Dialect, db *stdsql.DB, table string, withClock bool) *fixture {
	f := &fixture{t: t, d: d, db: db, orders: table + "_orders"}
	cfg := Config{Dialect: d, Table: table}
	if withClock {
		f.clock = fakeclock.New(time.UnixMilli(1_800_000_000_000))
		cfg.Now = f.clock.Now
	}
	ob, err := New(db, cfg)
	require.NoError(t, err)
	f.ob, f.d = ob, ob.Dialect() // d may be DetectDialect
	d = f.d
	ctx := context.Background()
	require.NoError(t, ob.Migrate(ctx))
	require.NoError(t, ob.Migrate(ctx), "Migrate is idempotent")
	_, err = db.ExecContext(ctx, "CREATE TABLE "+f.orders+" (id VARCHAR(64) PRIMARY KEY)")
	require.NoError(t, err)
	t.Cleanup(func() {
		drops := []string{"DROP TABLE IF EXISTS " + f.orders, "DROP TABLE IF EXISTS " + table,
			"DROP TABLE IF EXISTS " + table + "_lock"}
		if d == PostgreSQL {
			drops = append(drops, "DROP FUNCTION IF EXISTS "+table+"_notify()")
		}
		for _, s := range drops {
			_, err := db.ExecContext(context.Background(), s)
			assert.NoError(t, err, s)
		}
	})
	return f
}

// dialects runs fn for PostgreSQL, MySQL and SQLite, as parallel
// subtests: each fixture has its own table (and SQLite its own file), so
// they share nothing. It is the outbox's conformance suite: behaviour
// that depends on the database is tested through it.
func dialects(t *testing.T, fn func(t *testing.T, d Dialect)) {
	for _, d := range []Dialect{PostgreSQL, MySQL, SQLite} {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			fn(t, d)
		})
	}
}

// waitTimeout bounds every wait on a condition in these tests.
const waitTimeout = 30 * time.Second

// wait blocks until ch is closed or receives, failing t after waitTimeout.
func wait[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// run starts relay.Run in the background, waits until it is running and
// returns a stop function that ends Run and checks that it returned why:
// context.Canceled, or ErrRelayClosed when Close came first.
func run(t testing.TB, relay *Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- relay.Run(ctx) }()
	wait(t, relay.Running(), "the relay to run")
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := wait(t, errc, "Run to return"); !errors.Is(err, context.Canceled) && !errors.Is(err, ErrRelayClosed) {
				t.Errorf("Run returned %v, want context.Canceled or ErrRelayClosed", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// batchResult is what one RelayBatch call returned, for a test that runs
// it in another goroutine.
type batchResult struct {
	res RelayResult
	err error
}

// relayBatchAsync runs relay.RelayBatch in a goroutine; receive its result
// with wait.
func relayBatchAsync(ctx context.Context, relay *Relay) <-chan batchResult {
	ch := make(chan batchResult, 1)
	go func() {
		res, err := relay.RelayBatch(ctx)
		ch <- batchResult{res, err}
	}()
	return ch
}

// mustBatch receives a RelayBatch result and requires it to have no error.
func mustBatch(t testing.TB, ch <-chan batchResult) RelayResult {
	t.Helper()
	r := wait(t, ch, "RelayBatch")
	require.NoError(t, r.err)
	return r.res
}

// event returns a new Arc event of typ with a readable payload.
func (f *fixture) event(typ string, meta arc.Meta) arc.Event {
	f.counter++
	ev, err := arc.NewEvent(typ, map[string]any{"n": f.counter}, meta)
	require.NoError(f.t, err)
	return ev
}

// commit writes a business row and entries in one transaction and
// commits it.
func (f *fixture) commit(entries ...Entry) {
	f.t.Helper()
	ctx := context.Background()
	tx, err := f.db.BeginTx(ctx, nil)
	require.NoError(f.t, err)
	// A failed write must not leave the transaction (and its locks) open
	// for the table's cleanup to wait on for ever.
	defer func() { _ = tx.Rollback() }()
	_, err = tx.ExecContext(ctx, f.ob.q.bind("INSERT INTO "+f.orders+" (id) VALUES (?)"), uuid.NewString())
	require.NoError(f.t, err)
	require.NoError(f.t, f.ob.Write(ctx, tx, entries...))
	require.NoError(f.t, tx.Commit())
}

// count returns the rows of the outbox with the given status.
func (f *fixture) count(status int) int {
	var n int
	require.NoError(f.t, f.db.QueryRow(f.ob.q.bind("SELECT COUNT(*) FROM "+f.ob.cfg.Table+" WHERE status = ?"), status).Scan(&n))
	return n
}

// recorder is the destination publisher: it keeps what it got, in order,
// and fails the ids in failing.
type recorder struct {
	mu        sync.Mutex
	got       []published
	failing   map[string]error
	calls     int
	onPublish func(topic string, msgs []*message.Message) // runs before recording, unlocked
}

type published struct {
	topic string
	msg   *message.Message
}

func newRecorder() *recorder { return &recorder{failing: map[string]error{}} }

func (r *recorder) Publish(topic string, msgs ...*message.Message) error {
	if r.onPublish != nil {
		r.onPublish(topic, msgs)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	for _, m := range msgs {
		if err := r.failing[m.UUID]; err != nil {
			return fmt.Errorf("broker refused %s: %w", m.UUID, err)
		}
	}
	for _, m := range msgs {
		r.got = append(r.got, published{topic, m})
	}
	return nil
}

func (r *recorder) Close() error { return nil }

func (r *recorder) fail(id string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.failing, id)
	} else {
		r.failing[id] = err
	}
}

func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.got))
	for i, p := range r.got {
		out[i] = p.msg.UUID
	}
	return out
}

// counts returns how many times each id was published.
func (r *recorder) counts() map[string]int {
	c := map[string]int{}
	for _, id := range r.ids() {
		c[id]++
	}
	return c
}
