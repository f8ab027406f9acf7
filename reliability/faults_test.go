package reliability

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// scenario sizes the fault run.
type scenario struct {
	mode                             redisMode
	events, relays, consumers, kills int
	foreignPerKind                   int // entries of each foreignKinds kind written while Redis is up
	restartPostgres                  bool
	// redisDown is how long the crashed Redis server stays down: with the
	// default 20 s, longer than the default failure policy's five attempts
	// take (about 15 s), so that a relay charging outages to the events
	// would dead-letter. With a replica, Sentinel promotes the replica
	// within it, and the relays' WAIT fails until the old primary is back
	// as a replica.
	redisDown time.Duration
	timeout   time.Duration
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// modesEnv selects the Redis modes TestFaults runs: a comma-separated list
// of replica, aof and none; all three when unset.
const modesEnv = "ARCMILL_RELIABILITY_REDIS"

func faultModes(t *testing.T) []redisMode {
	v := os.Getenv(modesEnv)
	if v == "" || v == "all" {
		return redisModes
	}
	var modes []redisMode
	for _, m := range strings.Split(v, ",") {
		mode := redisMode(strings.TrimSpace(m))
		if !slices.Contains(redisModes, mode) {
			t.Fatalf("%s=%q: want a comma-separated list of replica, aof and none", modesEnv, v)
		}
		modes = append(modes, mode)
	}
	return modes
}

// scenarioFor sizes mode's run. Unless the environment says otherwise,
// aof runs CI's full short run (5,000 events, 12 kills, Redis down 20 s),
// and replica and none a smaller one (1,000 events, 6 kills, 5 s), which
// keeps make test's cost of the three modes to about a minute more. Each
// run writes 20 entries of each foreign kind (ARCMILL_RELIABILITY_FOREIGN).
func scenarioFor(mode redisMode) scenario {
	events, kills, down := 5000, 12, 20
	if mode != modeAOF {
		events, kills, down = 1000, 6, 5
	}
	sc := scenario{mode: mode, events: envInt("ARCMILL_RELIABILITY_EVENTS", events), relays: 4, consumers: 2,
		kills:           envInt("ARCMILL_RELIABILITY_KILLS", kills),
		restartPostgres: os.Getenv("ARCMILL_RELIABILITY_RESTART_POSTGRES") == "1",
		redisDown:       time.Duration(envInt("ARCMILL_RELIABILITY_REDIS_DOWN_SECONDS", down)) * time.Second}
	sc.foreignPerKind = envInt("ARCMILL_RELIABILITY_FOREIGN", 20)
	sc.timeout = time.Duration(120+sc.events/200)*time.Second + sc.redisDown
	return sc
}

// TestFaults is the fault scenario, once per Redis mode (replica, aof,
// none; ARCMILL_RELIABILITY_REDIS picks some): a business transaction
// writes each event to the outbox; 4 relay processes, with the default
// RelayConfig, move them to Redis Streams; 2 consumer processes run them
// through the wildcard router, retry and dead letters into an Arc handler
// behind arcmill's inbox, which applies its effect and emits one child
// event into the consumer's outbox, once per event; a relay in each
// consumer process publishes those. Meanwhile relays and consumers are
// killed with SIGKILL at random moments (and restarted), and the Redis
// primary is killed with SIGKILL once and stays down for redisDown. At the
// end every event is accounted for: handled (its effect applied once, its
// child published once), dead-lettered with its reason, or (in mode none
// only, which promises nothing through a crash) lost with the server that
// had acknowledged it; the loss is measured, not failed on. So is every
// foreign entry: dead-lettered as malformed with the reason of its kind.
func TestFaults(t *testing.T) {
	for _, mode := range faultModes(t) {
		sc := scenarioFor(mode)
		t.Run(string(mode), func(t *testing.T) {
			if !sc.restartPostgres {
				t.Log("PostgreSQL is not restarted: it is shared with the other tests; " +
					"ARCMILL_RELIABILITY_RESTART_POSTGRES=1 restarts the local cluster (long run, nothing else running)")
			}
			runFaults(t, sc)
		})
	}
}

func runFaults(t *testing.T, sc scenario) {
	start := time.Now()
	ctx := context.Background()
	dsn := testenv.PostgresDSN(t)
	dep := startDeployment(t, sc.mode)
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() }) // after the tables are dropped (cleanups run last first)

	prefix := "rel_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	fx := effects{prefix: prefix}
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.PostgreSQL, Table: prefix})
	require.NoError(t, err)
	require.NoError(t, ob.Migrate(ctx))
	_, err = db.Exec(`CREATE TABLE ` + prefix + `_orders (id TEXT PRIMARY KEY)`)
	require.NoError(t, err)
	require.NoError(t, fx.migrate(ctx, db))
	t.Cleanup(func() {
		fx.drop(db)
		for _, s := range []string{"_orders", "", "_lock"} {
			_, _ = db.Exec("DROP TABLE IF EXISTS " + prefix + s)
		}
		_, _ = db.Exec("DROP FUNCTION IF EXISTS " + prefix + "_notify()")
	})
	stream := "rel:" + prefix + ":events"
	client := dep.conn.client()
	defer client.Close()
	require.NoError(t, client.XGroupCreateMkStream(ctx, stream, "rel", "0").Err())

	kids := &children{t: t, procs: map[string]*exec.Cmd{}, specs: map[string]roleSpec{}}
	t.Cleanup(kids.stopAll)
	for i := 0; i < sc.relays; i++ {
		kids.start(roleSpec{Role: "relay", Name: fmt.Sprintf("relay-%d", i), DSN: dsn, Table: prefix, Redis: dep.conn,
			Stream: stream, Durable: dep.durable})
	}
	for i := 0; i < sc.consumers; i++ {
		kids.start(roleSpec{Role: "consumer", Name: fmt.Sprintf("consumer-%d", i), DSN: dsn, Table: prefix, Redis: dep.conn,
			Stream: stream, Durable: dep.durable})
	}

	// The producer: business transactions of 20 events each, spread over
	// the chaos; some poison, some schema-invalid, and foreign entries
	// written straight to the stream, spread over the run too but only
	// while Redis is up (redisUp, held by the chaos from the crash until
	// the server is back), so that each is meant to be dead-lettered.
	rep := report{mode: sc.mode}
	want := map[string]string{} // event id → the dead-letter reason it must end with ("" = handled)
	var foreign []foreignWrite
	foreignUnknown := 0
	var wantMu sync.Mutex
	var redisUp sync.RWMutex
	foreignTotal, injected := sc.foreignPerKind*len(foreignKinds), 0
	inject := func(upTo int) {
		for ; injected < upTo; injected++ {
			w, err := dep.writeForeign(ctx, client, stream, foreignKinds[injected%len(foreignKinds)])
			wantMu.Lock()
			if err == nil {
				foreign = append(foreign, w)
			} else {
				foreignUnknown++ // Redis may have died before its reply: perhaps written
			}
			wantMu.Unlock()
		}
	}
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		defer func() { // what the outage held back
			redisUp.RLock()
			inject(foreignTotal)
			redisUp.RUnlock()
		}()
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
			if redisUp.TryRLock() { // never wait for Redis: the outbox is written through its outage
				inject(foreignTotal * i / sc.events)
				redisUp.RUnlock()
			}
			// Spread the writes over the chaos (about 550 ms per kill).
			time.Sleep(time.Duration(sc.kills) * 550 * time.Millisecond * 20 / time.Duration(sc.events))
		}
	}()

	// Chaos: SIGKILL a random relay or consumer, restart it; the Redis
	// primary once halfway (and PostgreSQL, when allowed).
	names := kids.names()
	for k := 0; k < sc.kills; k++ {
		time.Sleep(time.Duration(300+rand.IntN(500)) * time.Millisecond)
		kids.killAndRestart(names[rand.IntN(len(names))])
		rep.kills++
		if k == sc.kills/2 {
			redisUp.Lock()
			dep.crash(t, stream, emittedStream(stream))
			if dep.promoted > 0 {
				t.Logf("the primary crashed holding %d entries its replica lacked; Sentinel promoted the replica %s later",
					dep.lagged, dep.promoted.Round(time.Millisecond))
			}
			time.Sleep(time.Until(dep.crashedAt.Add(sc.redisDown))) // the outage itself: nothing to wait for
			dep.restart(t)
			redisUp.Unlock()
			rep.redisDown, rep.promoted, rep.lagged = sc.redisDown, dep.promoted, dep.lagged
		}
		if k == sc.kills/3 && sc.restartPostgres {
			out, err := exec.Command("bash", "-c", "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart").CombinedOutput()
			require.NoError(t, err, "%s", out)
			rep.pgRestarts++
		}
	}
	<-produced

	// Wait until the pipeline is quiet: every outbox row settled, every
	// entry of the stream read by the group and acknowledged (handled or
	// dead-lettered), every emitted event settled. Nothing more can happen
	// after that.
	emitted, err := fx.outbox(db)
	require.NoError(t, err)
	deadline := time.Now().Add(sc.timeout)
	for !quiet(ctx, ob, emitted, client, stream) {
		if time.Now().After(deadline) {
			n, _ := fx.handledCount(ctx, db)
			st, _ := ob.Status(ctx)
			est, _ := emitted.Status(ctx)
			t.Errorf("not quiet after %s: %d events handled; outbox %+v; consumer outbox %+v", sc.timeout, n, st, est)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	kids.stopAll()
	rep.elapsed = time.Since(start)

	// Count.
	res, err := fx.results(ctx, db, client, stream)
	require.NoError(t, err)
	rep.duplicates = res.duplicates
	st, err := ob.Status(ctx)
	require.NoError(t, err)
	est, err := emitted.Status(ctx)
	require.NoError(t, err)
	t.Logf("at the end: outbox %+v; consumer outbox %+v", st, est)
	rep.outboxDead = int(st.Dead + est.Dead)
	in := tally{want: want, effects: res, dead: deadLetters(client, stream), foreign: foreign, foreignUnknown: foreignUnknown}
	if dep.losesOnCrash() {
		// What the crashed server acknowledged: rows delivered (marked so
		// after their publish returned) before its replacement started,
		// the producer's events and the consumers' children alike.
		before := map[string]bool{}
		for _, table := range []string{prefix, fx.outboxTable()} {
			require.NoError(t, deliveredBefore(db, table, dep.restartedAt, before))
		}
		in.mayVanish = func(id string) bool { return before[id] }
		for i := range in.foreign {
			in.foreign[i].mayVanish = in.foreign[i].at.Before(dep.restartedAt)
		}
	} else {
		// A foreign write Redis never confirmed (WAIT timed out while the
		// replica was down) promised nothing: like an unconfirmed relay
		// publish, which stays pending, it may be gone.
		for i := range in.foreign {
			in.foreign[i].mayVanish = !in.foreign[i].confirmed
		}
	}
	rep.verdict = account(in)
	for _, w := range in.foreign {
		if w.mayVanish && !dep.losesOnCrash() && !w.confirmed { // in none, all written before the restart may: they are counted
			t.Logf("foreign entry %s (%s) never confirmed (written %s after the crash): may vanish", w.id, w.kind,
				w.at.Sub(dep.crashedAt).Round(time.Millisecond))
		}
	}
	rep.streamLost = dep.losesOnCrash()
	if !rep.streamLost {
		entries, err := client.XLen(ctx, stream).Result()
		require.NoError(t, err)
		rep.publishedTwice = int(entries) - rep.sent - rep.foreignInjected + rep.foreignGone - rep.foreignUnmatched
	}
	t.Logf("results:\n%s%s", reportHeader, rep.row())
	t.Logf("Redis crashed at %s, restarted at %s", dep.crashedAt.UTC().Format("15:04:05.000"),
		dep.restartedAt.UTC().Format("15:04:05.000"))
	var kinds []string
	for _, k := range foreignKinds {
		if c := rep.foreignByKind[k.name]; c != nil {
			kinds = append(kinds, k.name+": "+c.String())
		}
	}
	t.Logf("foreign entries by kind (%d XADDs unanswered): %s", foreignUnknown, strings.Join(kinds, "; "))
	for _, p := range rep.problems {
		t.Error(p)
	}
	assert.Equal(t, rep.sent, rep.handled+rep.deadLettered+rep.lostByBroker+rep.lost, "every event in one class")
	children := 0
	for _, ids := range res.emitted {
		children += len(ids)
	}
	assert.EqualValues(t, rep.sent, st.Delivered, "the outbox delivered every row")
	assert.EqualValues(t, children, est.Delivered, "the consumer outbox delivered every emitted event")
	assert.Zero(t, st.Dead+est.Dead, "the Redis outage dead-lettered no outbox row")
	if dep.losesOnCrash() {
		t.Logf("Redis without persistence or replica lost %d of the %d events it had acknowledged and not yet handed on "+
			"(%d of them poison or invalid: their dead letters or entries), and %d foreign entries: what it promises",
			rep.lostByBroker, rep.sent, rep.lostPoisonByBroker, rep.foreignGone)
	} else {
		assert.Zero(t, rep.lostByBroker+rep.lost, "lost events")
	}
}

// quiet reports whether the fault run is over, checked in the order in
// which each step feeds the next: no outbox row left to publish (no entry
// of the stream is still to come), the group has read the whole stream and
// acknowledged everything it read (every child is committed, before its
// event's acknowledgement), and no emitted event left to publish.
func quiet(ctx context.Context, ob, emitted *outbox.Outbox, client *redis.Client, stream string) bool {
	return outboxSettled(ctx, ob) && groupDone(ctx, client, stream) && outboxSettled(ctx, emitted)
}

// outboxSettled reports whether every outbox row is delivered or dead.
func outboxSettled(ctx context.Context, ob *outbox.Outbox) bool {
	st, err := ob.Status(ctx)
	return err == nil && st.Pending+st.Delayed+st.InFlight == 0
}

// groupDone reports whether the group has read the whole stream and
// acknowledged everything it read.
func groupDone(ctx context.Context, client *redis.Client, stream string) bool {
	info, err := client.XInfoStream(ctx, stream).Result()
	if err != nil {
		return false
	}
	groups, err := client.XInfoGroups(ctx, stream).Result()
	if err != nil {
		return false
	}
	for _, g := range groups {
		if g.Name == "rel" {
			return g.Pending == 0 && g.LastDeliveredID == info.LastGeneratedID
		}
	}
	return false
}

// deliveredBefore adds to out the event ids of the rows of outbox table
// marked delivered before t.
func deliveredBefore(db *sql.DB, table string, t time.Time, out map[string]bool) error {
	return eachRow(db, `SELECT event_id FROM `+table+` WHERE status = 1 AND delivered_at < $1`, []any{t.UnixMilli()},
		func(rows *sql.Rows) error {
			var id string
			err := rows.Scan(&id)
			out[id] = true
			return err
		})
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

// deadLetters reads the dead-letter stream: event id → its dead letters,
// one per entry (a foreign entry is keyed by its stream entry id).
// Unreadable entries are keyed "unreadable:<id>".
func deadLetters(client *redis.Client, stream string) map[string][]deadLetter {
	out := map[string][]deadLetter{}
	entries, err := client.XRange(context.Background(), stream+":dlq", "-", "+").Result()
	if err != nil {
		return out
	}
	for _, e := range entries {
		dl, err := redisstream.ReadDeadLetter(e)
		if err != nil {
			out["unreadable:"+e.ID] = append(out["unreadable:"+e.ID], deadLetter{reason: "unreadable", message: err.Error()})
			continue
		}
		id := dl.Envelope.Event.Meta.ID
		if dl.Envelope.Reason == middleware.ReasonMalformed {
			id = "malformed:" + dl.OriginalID
		}
		out[id] = append(out[id], deadLetter{reason: dl.Envelope.Reason, message: dl.Envelope.Error.Message, entry: dl.OriginalID,
			at: dl.Envelope.LastFailedAt})
	}
	return out
}
