package outbox

import (
	"context"
	stdsql "database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// helperEnv carries the child relay's settings: dialect|dsn|table|list.
const helperEnv = "ARCMILL_OUTBOX_RELAY_CHILD"

// listPublisher publishes each message's id to a Redis list, slowly, so
// that a kill lands between publishing and acknowledging.
type listPublisher struct {
	rdb  *redis.Client
	list string
	wait time.Duration
	// stallAt, when positive, makes a publish that brings the list to that
	// length or beyond hang for good, as a broker that stops answering
	// would: the process is then certainly killed between publishing rows
	// and acknowledging them, holding their leases.
	stallAt int64
}

func (p listPublisher) Publish(_ string, msgs ...*message.Message) error {
	ids := make([]any, len(msgs))
	for i, m := range msgs {
		ids[i] = m.UUID
	}
	n, err := p.rdb.RPush(msgs[0].Context(), p.list, ids...).Result()
	if err != nil {
		return err
	}
	if p.stallAt > 0 && n >= p.stallAt {
		select {} // until SIGKILL
	}
	time.Sleep(p.wait) // simulated broker latency, so that a kill lands between publish and ack
	return nil
}

func (p listPublisher) Close() error { return nil }

// TestRelayProcessHelper is the child process of TestRelayKilledMidBatch;
// it does nothing unless started by it.
func TestRelayProcessHelper(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("runs only as the child of TestRelayKilledMidBatch")
	}
	parts := strings.SplitN(spec, "|", 6)
	require.Len(t, parts, 6, spec)
	mode, err := strconv.Atoi(parts[5])
	require.NoError(t, err)
	d, err := strconv.Atoi(parts[0])
	require.NoError(t, err)
	driver := map[Dialect]string{PostgreSQL: "pgx", MySQL: "mysql", SQLite: "sqlite"}[Dialect(d)]
	db, err := stdsql.Open(driver, parts[1])
	require.NoError(t, err)
	ob, err := New(db, Config{Dialect: Dialect(d), Table: parts[2]})
	require.NoError(t, err)
	rdb := redis.NewClient(&redis.Options{Addr: parts[4]})
	relay, err := ob.NewRelay(listPublisher{rdb, parts[3], 20 * time.Millisecond, 60}, RelayConfig{
		ConsumerID: "doomed", Workers: 2, BatchSize: 10, Lease: 5 * time.Second, PollInterval: 5 * time.Millisecond,
		Claim: ClaimMode(mode)})
	require.NoError(t, err)
	require.NoError(t, relay.Run(context.Background())) // runs until SIGKILL
}

// A relay process killed with SIGKILL in the middle of its batches loses
// nothing: its leased rows come back when the lease ends and another relay
// delivers them (some twice: at least once).
func TestRelayKilledMidBatch(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		modes := []ClaimMode{ClaimLease, ClaimLock}
		if d == SQLite {
			modes = modes[:1]
		}
		for _, mode := range modes {
			t.Run(map[ClaimMode]string{ClaimLease: "lease", ClaimLock: "lock"}[mode], func(t *testing.T) {
				killRelay(t, d, mode)
			})
		}
	})
}

func killRelay(t *testing.T, d Dialect, mode ClaimMode) {
	{
		var dsn string
		db := openDB(t, d)
		switch d {
		case PostgreSQL:
			dsn = testenv.PostgresDSN(t)
		case MySQL:
			dsn = testenv.MySQLDSN(t)
		case SQLite:
			// Both processes need the same file.
			path := filepath.Join(t.TempDir(), "shared.db")
			dsn = sqliteDSN(path)
			var err error
			db, err = stdsql.Open("sqlite", dsn)
			require.NoError(t, err)
			t.Cleanup(func() { assert.NoError(t, db.Close()) })
		}
		table := "arcmill_kill_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
		f := newFixtureOn(t, d, db, table, false)
		redisAddr := testenv.RedisAddr(t)
		rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
		defer rdb.Close()
		list := "arcmill:test:kill:" + table
		defer rdb.Del(context.Background(), list)

		const total = 400
		want := map[string]bool{}
		for i := 0; i < total/20; i++ {
			var es []Entry
			for j := 0; j < 20; j++ {
				ev, err := arc.NewEvent("order.created", map[string]int{"i": i*20 + j}, arc.Meta{})
				require.NoError(t, err)
				want[ev.Meta.ID] = true
				es = append(es, Entry{Topic: "t", Event: ev})
			}
			f.commit(es...)
		}

		cmd := exec.Command(os.Args[0], "-test.run", "^TestRelayProcessHelper$", "-test.count", "1")
		cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join([]string{
			strconv.Itoa(int(d)), dsn, table, list, redisAddr, strconv.Itoa(int(mode))}, "|"))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		require.NoError(t, cmd.Start())
		// The child's publisher hangs once 60 ids are on the list: it is
		// killed holding published, unacknowledged, leased rows.
		require.Eventually(t, func() bool { return rdb.LLen(context.Background(), list).Val() >= 60 },
			60*time.Second, 5*time.Millisecond, "the child relays")
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		var exit *exec.ExitError
		require.ErrorAs(t, cmd.Wait(), &exit, "killed")

		ctx := context.Background()
		st, err := f.ob.Status(ctx)
		require.NoError(t, err)
		published := rdb.LLen(ctx, list).Val()
		t.Logf("after SIGKILL: %+v, %d published", st, published)
		assert.Greater(t, published, st.Delivered, "killed between publishing rows and acknowledging them")
		if mode == ClaimLease {
			assert.Positive(t, st.InFlight, "killed holding leases")
		} else {
			assert.Zero(t, st.InFlight, "row locks die with the connection")
		}

		relay, err := f.ob.NewRelay(listPublisher{rdb: rdb, list: list}, RelayConfig{ConsumerID: "survivor",
			PollInterval: 10 * time.Millisecond})
		require.NoError(t, err)
		stop := run(t, relay)
		require.Eventually(t, func() bool { return f.count(statusDelivered) == total }, waitTimeout,
			20*time.Millisecond, "every row delivered once the dead relay's leases end")
		stop()

		got := map[string]int{}
		for _, id := range rdb.LRange(ctx, list, 0, -1).Val() {
			got[id]++
		}
		dups := 0
		for id := range want {
			if got[id] == 0 {
				t.Errorf("event %s lost", id)
			}
			dups += max(0, got[id]-1)
		}
		assert.Len(t, got, total, "nothing foreign published")
		t.Logf("%s: %d events, 0 lost, %d published twice (published, then killed before the ack)", d, total, dups)
	}
}
