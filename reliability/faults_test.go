package reliability

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/outbox"
)

// scenario sizes the fault run. The short run is CI's; the long one runs
// with ARCMILL_RELIABILITY_EVENTS=100000 (see RELIABILITY.md).
type scenario struct {
	events, malformed, relays, consumers, kills int
	restartRedis, restartPostgres               bool
	// redisDown is how long Redis stays down after its crash: longer
	// than the default failure policy's five attempts take (about 15 s),
	// so that a relay charging outages to the events would dead-letter.
	redisDown time.Duration
	timeout   time.Duration
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestFaults is the fault scenario: a business transaction writes each
// event to the outbox; 4 relay processes move them to Redis Streams; 2
// consumer processes run them through the wildcard router, retry and dead
// letters into an Arc handler behind an idempotency guard. Meanwhile relays
// and consumers are killed with SIGKILL at random moments (and restarted),
// and Redis crashes once and stays down for redisDown. The relays run
// with the default RelayConfig. At the end every event is counted.
func TestFaults(t *testing.T) {
	sc := scenario{events: envInt("ARCMILL_RELIABILITY_EVENTS", 5000), relays: 4, consumers: 2,
		kills: envInt("ARCMILL_RELIABILITY_KILLS", 12), restartRedis: true,
		restartPostgres: os.Getenv("ARCMILL_RELIABILITY_RESTART_POSTGRES") == "1",
		redisDown:       time.Duration(envInt("ARCMILL_RELIABILITY_REDIS_DOWN_SECONDS", 20)) * time.Second}
	sc.malformed = max(3, sc.events/1000)
	sc.timeout = time.Duration(120+sc.events/200)*time.Second + sc.redisDown
	if !sc.restartPostgres {
		t.Log("PostgreSQL is not restarted: it is shared with the other tests; " +
			"ARCMILL_RELIABILITY_RESTART_POSTGRES=1 restarts the local cluster (long run, nothing else running)")
	}
	runFaults(t, sc)
}

// privateRedis is a redis-server of the test's own, with an append-only
// file synced on every write, so that it can be restarted without losing
// what it acknowledged (the shared one keeps nothing on disk).
type privateRedis struct {
	addr, dir string
	cmd       *exec.Cmd
}

func startRedis(t *testing.T, dir, addr string) *privateRedis {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if testenv.Required() {
			t.Fatalf("redis-server is not installed: %v", err)
		}
		t.Skip("redis-server is not installed")
	}
	_, port, _ := net.SplitHostPort(addr)
	r := &privateRedis{addr: addr, dir: dir}
	r.cmd = exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
		"--appendfsync", "always", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	// It dies with the test process, however that ends.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, r.cmd.Start())
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	require.Eventually(t, func() bool { return client.Ping(context.Background()).Err() == nil },
		10*time.Second, 20*time.Millisecond, "private redis-server on %s", addr)
	return r
}

func (r *privateRedis) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	_ = r.cmd.Wait()
}

// crash kills redis-server with SIGKILL: only the append-only file, synced
// on every write, keeps what it acknowledged.
func (r *privateRedis) crash() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	_ = r.cmd.Wait()
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// children runs the relay and consumer processes and kills them on demand.
type children struct {
	t     *testing.T
	mu    sync.Mutex
	procs map[string]*exec.Cmd
	specs map[string]roleSpec
}

func (c *children) start(spec roleSpec) {
	raw, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestRole$", "-test.count", "1")
	cmd.Env = append(os.Environ(), roleEnv+"="+string(raw))
	logf, err := os.Create(filepath.Join(c.t.TempDir(), spec.Name+".log"))
	require.NoError(c.t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(c.t, cmd.Start())
	c.mu.Lock()
	c.procs[spec.Name], c.specs[spec.Name] = cmd, spec
	c.mu.Unlock()
	go func() { _ = cmd.Wait(); _ = logf.Close() }()
}

// killAndRestart SIGKILLs one child and starts its replacement.
func (c *children) killAndRestart(name string) {
	c.mu.Lock()
	cmd, spec := c.procs[name], c.specs[name]
	c.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	time.Sleep(50 * time.Millisecond)
	c.start(spec)
}

func (c *children) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cmd := range c.procs {
		_ = cmd.Process.Signal(syscall.SIGKILL)
	}
}

func (c *children) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for n := range c.specs {
		out = append(out, n)
	}
	return out
}

// report is the scenario's results table.
type report struct {
	sent, malformed, expected, handled, applied, lost, duplicates int
	deadRepeats, publishedTwice, outboxDead                       int
	dead                                                          map[string]int
	kills, redisRestarts, pgRestarts                              int
	elapsed, redisDown                                            time.Duration
}

func (r report) markdown() string {
	var b strings.Builder
	fmt.Fprintln(&b, "| events written | outbox rows dead-lettered | foreign entries injected | expected effects | effects applied | lost | duplicate deliveries (absorbed by the guard) | published twice by a relay | dead letters: retry_exhausted / validation_failed / malformed (repeats) | SIGKILLs | Redis crashes (time down) | PostgreSQL restarts | time |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	fmt.Fprintf(&b, "| %d | %d | %d | %d | %d | %d | %d | %d | %d / %d / %d (%d) | %d | %d (%s) | %d | %s |\n", r.sent, r.outboxDead, r.malformed, r.expected,
		r.applied, r.lost, r.duplicates, r.publishedTwice, r.dead[middleware.ReasonRetryExhausted], r.dead[middleware.ReasonValidationFailed],
		r.dead[middleware.ReasonMalformed], r.deadRepeats, r.kills, r.redisRestarts, r.redisDown, r.pgRestarts, r.elapsed.Round(100*time.Millisecond))
	return b.String()
}

func runFaults(t *testing.T, sc scenario) {
	start := time.Now()
	ctx := context.Background()
	dsn := testenv.PostgresDSN(t)
	rdir := t.TempDir()
	rds := startRedis(t, rdir, freeAddr(t))
	t.Cleanup(func() { rds.stop() })
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() }) // after the tables are dropped (cleanups run last first)

	prefix := "rel_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.PostgreSQL, Table: prefix})
	require.NoError(t, err)
	require.NoError(t, ob.Migrate(ctx))
	for _, s := range []string{
		`CREATE TABLE ` + prefix + `_orders (id TEXT PRIMARY KEY)`,
		`CREATE TABLE ` + prefix + `_effects (event_id TEXT PRIMARY KEY)`,
		`CREATE TABLE ` + prefix + `_deliveries (event_id TEXT PRIMARY KEY, n INT NOT NULL)`,
		`CREATE TABLE ` + prefix + `_ledger (seq BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL)`,
	} {
		_, err := db.Exec(s)
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		for _, s := range []string{"_orders", "_effects", "_deliveries", "_ledger", "", "_lock"} {
			_, _ = db.Exec("DROP TABLE IF EXISTS " + prefix + s)
		}
		_, _ = db.Exec("DROP FUNCTION IF EXISTS " + prefix + "_notify()")
	})
	stream := "rel:" + prefix + ":events"
	client := redis.NewClient(&redis.Options{Addr: rds.addr})
	defer client.Close()
	require.NoError(t, client.XGroupCreateMkStream(ctx, stream, "rel", "0").Err())

	kids := &children{t: t, procs: map[string]*exec.Cmd{}, specs: map[string]roleSpec{}}
	t.Cleanup(kids.stopAll)
	for i := 0; i < sc.relays; i++ {
		kids.start(roleSpec{Role: "relay", Name: fmt.Sprintf("relay-%d", i), DSN: dsn, Table: prefix, Redis: rds.addr, Stream: stream})
	}
	for i := 0; i < sc.consumers; i++ {
		kids.start(roleSpec{Role: "consumer", Name: fmt.Sprintf("consumer-%d", i), DSN: dsn, Table: prefix, Redis: rds.addr, Stream: stream})
	}

	// The producer: business transactions of 20 events each, spread over
	// the chaos; some poison, some schema-invalid, and foreign entries
	// written straight to the stream.
	var rep report
	rep.dead = map[string]int{}
	want := map[string]string{} // event id → the dead-letter reason it must end with ("" = handled)
	var wantMu sync.Mutex
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; i < sc.events; {
			var entries []outbox.Entry
			for j := 0; j < 20 && i < sc.events; j, i = j+1, i+1 {
				typ, total, reason := "order.created", 10, ""
				switch {
				case i%397 == 7:
					typ, reason = poisonType, middleware.ReasonRetryExhausted
				case i%331 == 5:
					total, reason = -1, middleware.ReasonValidationFailed
				}
				// The request's idempotency key makes a retried transaction
				// (the database restarted under it) a no-op where it had
				// committed after all.
				ev, eerr := arc.NewEvent(typ, map[string]int{"n": i, "total": total}, arc.Meta{
					PartitionKey: strconv.Itoa(i % 16), IdempotencyKey: prefix + "-" + strconv.Itoa(i)})
				if eerr != nil {
					t.Error(eerr)
					return
				}
				wantMu.Lock()
				want[ev.Meta.ID] = reason
				wantMu.Unlock()
				entries = append(entries, outbox.Entry{Topic: stream, Event: ev})
			}
			if err := writeRetrying(ctx, db, ob, prefix, entries); err != nil {
				t.Error(err)
				return
			}
			if i%(sc.events/sc.malformed+1) < 20 {
				// Counted only when written: Redis may be restarting.
				if client.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"type", "foreign.bytes", "data", "\x00{not json"}}).Err() == nil {
					rep.malformed++
				}
			}
			// Spread the writes over the chaos (about 550 ms per kill).
			time.Sleep(time.Duration(sc.kills) * 550 * time.Millisecond * 20 / time.Duration(sc.events))
		}
	}()

	// Chaos: SIGKILL a random relay or consumer, restart it; Redis once
	// halfway (and PostgreSQL, when allowed).
	names := kids.names()
	for k := 0; k < sc.kills; k++ {
		time.Sleep(time.Duration(300+rand.IntN(500)) * time.Millisecond)
		kids.killAndRestart(names[rand.IntN(len(names))])
		rep.kills++
		if k == sc.kills/2 && sc.restartRedis {
			rds.crash()
			time.Sleep(sc.redisDown) // the outage itself: nothing to wait for

			rds = startRedis(t, rdir, rds.addr)
			rep.redisRestarts++
			rep.redisDown += sc.redisDown
		}
		if k == sc.kills/3 && sc.restartPostgres {
			out, err := exec.Command("bash", "-c", "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart").CombinedOutput()
			require.NoError(t, err, "%s", out)
			rep.pgRestarts++
		}
	}
	<-produced
	wantMu.Lock()
	rep.sent = len(want)
	for _, reason := range want {
		if reason == "" {
			rep.expected++
		}
	}
	wantMu.Unlock()

	// Wait until every event has ended: handled, or dead-lettered.
	deadline := time.Now().Add(sc.timeout)
	var effects int
	for time.Now().Before(deadline) {
		if err := db.QueryRow(`SELECT COUNT(*) FROM ` + prefix + `_effects`).Scan(&effects); err == nil &&
			effects >= rep.expected && len(deadLetters(client, stream)) >= rep.sent-rep.expected+rep.malformed {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // late duplicates show up in the counts too
	kids.stopAll()
	rep.elapsed = time.Since(start)

	// Count.
	handled := map[string]bool{}
	rows, err := db.Query(`SELECT event_id FROM ` + prefix + `_effects`)
	require.NoError(t, err)
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		handled[id] = true
	}
	require.NoError(t, rows.Err())
	require.NoError(t, db.QueryRow(`SELECT COALESCE(SUM(n - 1), 0) FROM `+prefix+`_deliveries`).Scan(&rep.duplicates))
	require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM `+prefix+`_ledger`).Scan(&rep.applied))
	rep.handled = len(handled)
	// Every dead letter, with every reason it was given (a repeat counts).
	dead := deadLetters(client, stream)
	for id, reasons := range dead {
		if id == "" {
			t.Errorf("%d dead letter(s) without an event id", len(reasons))
		}
		for _, reason := range reasons {
			rep.dead[reason]++
		}
		rep.deadRepeats += len(reasons) - 1
	}
	entries, err := client.XLen(ctx, stream).Result()
	require.NoError(t, err)
	rep.publishedTwice = int(entries) - rep.sent - rep.malformed
	for id, reason := range want {
		got := dead[id]
		switch {
		case reason == "" && !handled[id]:
			rep.lost++
			t.Errorf("event %s was never handled (dead letters: %v)", id, got)
		case reason == "" && len(got) > 0:
			t.Errorf("good event %s was dead-lettered as %v", id, got)
		case reason != "" && len(got) == 0:
			t.Errorf("poison event %s: no dead letter (want reason %s)", id, reason)
		case reason != "" && handled[id]:
			t.Errorf("poison event %s had an effect", id)
		}
		for _, r := range got {
			if reason != "" && r != reason {
				t.Errorf("poison event %s: dead letter with reason %s, want %s", id, r, reason)
			}
		}
	}
	poison, invalid := 0, 0
	for _, reason := range want {
		switch reason {
		case middleware.ReasonRetryExhausted:
			poison++
		case middleware.ReasonValidationFailed:
			invalid++
		}
	}
	st, err := ob.Status(ctx)
	require.NoError(t, err)
	t.Logf("outbox at the end: %+v", st)
	rep.outboxDead = int(st.Dead)
	t.Logf("results:\n%s", rep.markdown())
	assert.Zero(t, rep.lost, "lost events")
	assert.Equal(t, rep.expected, rep.handled, "every good event handled")
	assert.Equal(t, rep.expected, rep.applied, "each good event's effect applied exactly once, duplicates absorbed by the guard")
	assert.Equal(t, poison, len(deadOf(dead, want, middleware.ReasonRetryExhausted)), "every poison event dead-lettered, and nothing else as retry_exhausted")
	assert.Equal(t, invalid, len(deadOf(dead, want, middleware.ReasonValidationFailed)), "every invalid event dead-lettered, and nothing else as validation_failed")
	assert.Equal(t, rep.malformed, len(deadOf(dead, nil, middleware.ReasonMalformed)), "every foreign entry dead-lettered as malformed, once")
	assert.EqualValues(t, rep.sent, st.Delivered, "the outbox delivered every row")
	assert.Zero(t, st.Dead, "the Redis outage dead-lettered no outbox row")
}

// deadOf returns the ids dead-lettered with reason (malformed entries are
// keyed by their stream entry; want, when given, must agree).
func deadOf(dead map[string][]string, want map[string]string, reason string) map[string]bool {
	out := map[string]bool{}
	for id, reasons := range dead {
		for _, r := range reasons {
			if r == reason && (want == nil || want[id] == reason) {
				out[id] = true
			}
		}
	}
	return out
}

// writeRetrying commits a business row and entries, retrying for up to a
// minute while the database is unreachable, as a service would retry a
// request.
func writeRetrying(ctx context.Context, db *sql.DB, ob *outbox.Outbox, prefix string, entries []outbox.Entry) error {
	var err error
	for try := 0; try < 600; try++ {
		var tx *sql.Tx
		if tx, err = db.BeginTx(ctx, nil); err == nil {
			if _, err = tx.Exec(`INSERT INTO `+prefix+`_orders (id) VALUES ($1)`, uuid.NewString()); err == nil {
				if err = ob.Write(ctx, tx, entries...); err == nil {
					if err = tx.Commit(); err == nil {
						return nil
					}
				}
			}
			_ = tx.Rollback()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// deadLetters reads the dead-letter stream: event id → the reasons of its
// dead letters, one per entry (a foreign entry is keyed by its stream
// entry id). Unreadable entries are keyed "unreadable:<id>".
func deadLetters(client *redis.Client, stream string) map[string][]string {
	out := map[string][]string{}
	entries, err := client.XRange(context.Background(), stream+":dlq", "-", "+").Result()
	if err != nil {
		return out
	}
	for _, e := range entries {
		dl, err := redisstream.ReadDeadLetter(e)
		if err != nil {
			out["unreadable:"+e.ID] = append(out["unreadable:"+e.ID], "unreadable")
			continue
		}
		id := dl.Envelope.Event.Meta.ID
		if dl.Envelope.Reason == middleware.ReasonMalformed {
			id = "malformed:" + dl.OriginalID
		}
		out[id] = append(out[id], dl.Envelope.Reason)
	}
	return out
}
