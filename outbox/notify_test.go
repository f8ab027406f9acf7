package outbox

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// With polling effectively off, only LISTEN/NOTIFY can wake the relay: a
// commit is relayed at once, a rollback wakes nobody.
func TestListenNotifyWakesRelay(t *testing.T) {
	t.Parallel()
	f := newFixture(t, PostgreSQL, false)
	rec := newRecorder()
	relay, err := f.ob.NewRelay(rec, RelayConfig{PollInterval: time.Hour})
	require.NoError(t, err)
	listening := make(chan struct{})
	var once sync.Once
	relay.testListening = func() { once.Do(func() { close(listening) }) }
	run(t, relay)
	wait(t, listening, "LISTEN to be in place")
	// The first passes ran at start; from here only a NOTIFY wakes a worker
	// within the hour.

	for i := 0; i < 3; i++ {
		ev := f.event("order.created", arc.Meta{})
		start := time.Now()
		f.commit(Entry{Topic: "t", Event: ev})
		require.Eventually(t, func() bool { return len(rec.ids()) == i+1 }, waitTimeout, time.Millisecond,
			"woken by NOTIFY, not by the hourly poll")
		t.Logf("commit to publish: %s", time.Since(start))
	}
	assert.NoError(t, relay.Close())
	assert.NoError(t, relay.Close(), "Close twice")
}

// Without LISTEN, a relay still delivers by polling: DisableNotify.
func TestPollingFallback(t *testing.T) {
	t.Parallel()
	f := newFixture(t, PostgreSQL, false)
	rec := newRecorder()
	relay, err := f.ob.NewRelay(rec, RelayConfig{DisableNotify: true, PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	relay.testListening = func() { t.Error("LISTEN with DisableNotify") }
	stop := run(t, relay)
	f.commit(Entry{Topic: "t", Event: f.event("a.b", arc.Meta{})})
	assert.Eventually(t, func() bool { return len(rec.ids()) == 1 }, waitTimeout, time.Millisecond)
	stop()
	assert.ErrorIs(t, relay.Run(context.Background()), ErrRelayClosed)
	_, err = relay.RelayBatch(context.Background())
	assert.ErrorIs(t, err, ErrRelayClosed)
}

// An Arc event written in a pgx transaction reaches Redis Streams in Arc's
// layout, byte for byte.
func TestPgxWriteRelayToRedis(t *testing.T) {
	t.Parallel()
	f := newFixture(t, PostgreSQL, false)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.PostgresDSN(t))
	require.NoError(t, err)
	defer conn.Close(ctx)

	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer client.Close()
	stream := "arcmill-test:" + uuid.NewString()
	t.Cleanup(func() { client.Del(ctx, stream) })

	ev := fullEvent(t, "o-9")
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "INSERT INTO "+f.orders+" (id) VALUES ($1)", "o-9")
	require.NoError(t, err)
	require.NoError(t, f.ob.WritePgx(ctx, tx, Entry{Topic: stream, Event: ev}))
	require.NoError(t, tx.Commit(ctx))

	tx, err = conn.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, f.ob.WritePgx(ctx, tx, Entry{Topic: stream, Event: fullEvent(t, "o-10")}))
	require.NoError(t, tx.Rollback(ctx))

	dest, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
	require.NoError(t, err)
	relay, err := f.ob.NewRelay(dest, RelayConfig{})
	require.NoError(t, err)
	res, err := relay.RelayBatch(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Relayed)

	entries := client.XRange(ctx, stream, "-", "+").Val()
	require.Len(t, entries, 1)
	want, err := arc.Marshal(ev)
	require.NoError(t, err)
	assert.Equal(t, string(want), entries[0].Values["data"], "byte for byte")
	assert.Equal(t, "order.created", entries[0].Values["type"])
}

// When acknowledgements keep failing, the relay does not republish the
// same rows in a tight loop: it waits a poll interval between passes. Not
// parallel: it counts passes against the wall clock.
func TestFailingAcksDoNotSpin(t *testing.T) {
	f := newFixture(t, PostgreSQL, false)
	tbl := f.ob.Table()
	for _, s := range []string{
		`CREATE FUNCTION ` + tbl + `_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'ack refused'; END $$`,
		`CREATE TRIGGER ` + tbl + `_refuse BEFORE UPDATE ON ` + tbl + ` FOR EACH ROW WHEN (NEW.status = 1) EXECUTE FUNCTION ` + tbl + `_refuse()`,
	} {
		_, err := f.db.Exec(s)
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		_, err := f.db.Exec("DROP FUNCTION IF EXISTS " + tbl + "_refuse() CASCADE")
		assert.NoError(t, err)
	})
	f.commit(Entry{Topic: "t", Event: f.event("a.b", arc.Meta{})})
	rec := newRecorder()
	const poll = 100 * time.Millisecond
	relay, err := f.ob.NewRelay(rec, RelayConfig{PollInterval: poll, DisableNotify: true})
	require.NoError(t, err)
	// Run until the row has been published four times, however long the
	// passes take on a loaded machine (a fixed run of 450 ms saw fewer than
	// two), then stop: paced, four take three poll intervals; a tight loop
	// has published more by then than the time allows.
	stopped := errors.New("test: stop")
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- relay.Run(ctx) }()
	require.Eventually(t, func() bool { return len(rec.ids()) >= 4 }, waitTimeout, time.Millisecond, "retried")
	cancel(stopped)
	require.ErrorIs(t, wait(t, errc, "Run to return"), stopped, "Run returns why it stopped")
	elapsed := time.Since(start)
	n := len(rec.ids())
	t.Logf("%d attempts in %s", n, elapsed)
	assert.LessOrEqual(t, n, int(elapsed/poll)+2, "one attempt per poll interval, not a tight loop")
	assert.Positive(t, relay.Totals().AckFailed)
	assert.Equal(t, 1, f.count(statusPending), "nothing lost")
}
