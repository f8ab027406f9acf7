package outbox

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// benchEvent is a typical order event (about 300 bytes on the wire).
func benchEvent(b testing.TB, i int) arc.Event {
	ev, err := arc.NewEvent("order.created", map[string]any{"orderId": fmt.Sprintf("o-%d", i), "total": 99.5,
		"lines": []map[string]any{{"sku": "A-1", "qty": 2}}}, arc.Meta{CorrelationID: "req-1", Source: "shop",
		PartitionKey: fmt.Sprintf("o-%d", i%64), UserID: "u-7"})
	require.NoError(b, err)
	return ev
}

func benchRedis(b testing.TB) (*redis.Client, *redisstream.Publisher, string) {
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(b), PoolSize: 16})
	b.Cleanup(func() { assert.NoError(b, client.Close()) })
	stream := "arcmill-bench:" + uuid.NewString()
	b.Cleanup(func() { client.Del(context.Background(), stream) })
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
	require.NoError(b, err)
	return client, pub, stream
}

// seedOutbox commits n events in transactions of 500.
func seedOutbox(b testing.TB, f *fixture, topic string, n int) {
	ctx := context.Background()
	for i := 0; i < n; i += 500 {
		tx, err := f.db.BeginTx(ctx, nil)
		require.NoError(b, err)
		var es []Entry
		for j := i; j < min(n, i+500); j++ {
			es = append(es, Entry{Topic: topic, Event: benchEvent(b, j)})
		}
		require.NoError(b, f.ob.Write(ctx, tx, es...))
		require.NoError(b, tx.Commit())
	}
}

// relayRate drains n seeded rows to Redis with the given workers and batch
// size (0: the default) and returns events per second.
func relayRate(b *testing.B, d Dialect, n, workers, batch int) float64 {
	f := newFixture(b, d, false)
	client, pub, stream := benchRedis(b)
	seedOutbox(b, f, stream, n)
	relay, err := f.ob.NewRelay(pub, RelayConfig{Workers: workers, BatchSize: batch, DisableNotify: true})
	require.NoError(b, err)
	start, cpu0 := time.Now(), processCPU()
	stop := run(b, relay)
	require.Eventually(b, func() bool { return relay.Totals().Relayed >= n }, 10*waitTimeout, time.Millisecond)
	elapsed := time.Since(start)
	lastRelayCPU = (processCPU() - cpu0) / time.Duration(n)
	stop()
	require.EqualValues(b, n, client.XLen(context.Background(), stream).Val())
	return float64(n) / elapsed.Seconds()
}

// lastRelayCPU is the CPU time (user and system) of this process per
// event during relayRate's last drain: the relay's own cost, the
// databases' and Redis's left out.
var lastRelayCPU time.Duration

// processCPU returns the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// forwarderRate drains n rows through Watermill's forwarder over
// watermill-sql (the same database, the same Redis publisher).
func forwarderRate(b *testing.B, d Dialect, n int) float64 {
	ctx := context.Background()
	db := openDB(b, d)
	topic := "arcmill_bfwd_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	require.NoError(b, MigrateForwarder(ctx, db, d, topic))
	b.Cleanup(func() {
		for _, t := range []string{"watermill_" + topic, "watermill_offsets_" + topic} {
			q := `"` + t + `"`
			if d == MySQL {
				q = "`" + t + "`"
			}
			_, err := db.Exec("DROP TABLE IF EXISTS " + q)
			assert.NoError(b, err)
		}
	})
	client, pub, stream := benchRedis(b)
	for i := 0; i < n; i += 500 {
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(b, err)
		txPub, err := TxPublisher(tx, d, topic)
		require.NoError(b, err)
		var msgs []*message.Message
		for j := i; j < min(n, i+500); j++ {
			m, err := arc.ToMessage(benchEvent(b, j))
			require.NoError(b, err)
			msgs = append(msgs, m)
		}
		require.NoError(b, txPub.Publish(stream, msgs...))
		require.NoError(b, tx.Commit())
	}
	fwd, err := NewForwarder(db, d, pub, ForwarderConfig{Topic: topic})
	require.NoError(b, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- fwd.Run(runCtx) }()
	require.Eventually(b, func() bool { return client.XLen(ctx, stream).Val() >= int64(n) }, 10*waitTimeout, 2*time.Millisecond)
	elapsed := time.Since(start)
	cancel()
	assert.NoError(b, fwd.Close())
	assert.NoError(b, wait(b, done, "the forwarder to stop"))
	return float64(n) / elapsed.Seconds()
}

// BenchmarkRelayToRedis drains a PostgreSQL (and MySQL) outbox into Redis
// Streams: Watermill's forwarder over watermill-sql, then arcmill's relay
// with 1 and 4 workers, in one run. Run with -benchtime 1x.
func BenchmarkRelayToRedis(b *testing.B) {
	for _, d := range []Dialect{PostgreSQL, MySQL} {
		b.Run(d.String(), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				fwd := forwarderRate(b, d, 10000)
				one := relayRate(b, d, 20000, 1, 0)
				four := relayRate(b, d, 40000, 4, 0)
				four100 := relayRate(b, d, 40000, 4, 100)
				b.ReportMetric(fwd, "forwarder_ev/s")
				b.ReportMetric(one, "relay1_ev/s")
				b.ReportMetric(four, "relay4_ev/s")
				b.ReportMetric(four100, "relay4_b100_ev/s")
				b.ReportMetric(four/fwd, "relay4/forwarder")
			}
		})
	}
}

// BenchmarkCommitToPublish measures the time from a transaction's commit
// to its event's publish on Redis, at about 1,000 events/s, woken by
// LISTEN/NOTIFY and by polling (PostgreSQL). Run with -benchtime 1x.
func BenchmarkCommitToPublish(b *testing.B) {
	for _, mode := range []string{"notify", "poll"} {
		b.Run(mode, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				p50, p99 := commitToPublish(b, mode == "poll", 3*time.Second)
				b.ReportMetric(float64(p50.Microseconds())/1000, "p50_ms")
				b.ReportMetric(float64(p99.Microseconds())/1000, "p99_ms")
			}
		})
	}
}

// stampPublisher records when each message was published.
type stampPublisher struct {
	message.Publisher
	mu   sync.Mutex
	when map[string]time.Time
}

func (p *stampPublisher) Publish(topic string, msgs ...*message.Message) error {
	err := p.Publisher.Publish(topic, msgs...)
	now := time.Now()
	p.mu.Lock()
	for _, m := range msgs {
		p.when[m.UUID] = now
	}
	p.mu.Unlock()
	return err
}

func commitToPublish(b *testing.B, poll bool, d time.Duration) (p50, p99 time.Duration) {
	f := newFixture(b, PostgreSQL, false)
	_, pub, stream := benchRedis(b)
	sp := &stampPublisher{Publisher: pub, when: map[string]time.Time{}}
	cfg := RelayConfig{Workers: 2}
	if poll {
		cfg.DisableNotify = true
	}
	relay, err := f.ob.NewRelay(sp, cfg)
	require.NoError(b, err)
	listening := make(chan struct{})
	var once sync.Once
	relay.testListening = func() { once.Do(func() { close(listening) }) }
	stop := run(b, relay)
	if !poll {
		wait(b, listening, "LISTEN to be in place")
	}

	// Sixteen writers, each committing one event every 16 ms: 1,000 events/s.
	var mu sync.Mutex
	committed := map[string]time.Time{}
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			tick := time.NewTicker(16 * time.Millisecond)
			defer tick.Stop()
			end := time.Now().Add(d)
			for i := 0; time.Now().Before(end); i++ {
				<-tick.C
				ev := benchEvent(b, i)
				tx, err := f.db.BeginTx(context.Background(), nil)
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := tx.Exec("INSERT INTO "+f.orders+" (id) VALUES ($1)", ev.Meta.ID); err != nil {
					b.Error(err)
					return
				}
				if err := f.ob.Write(context.Background(), tx, Entry{Topic: stream, Event: ev}); err != nil {
					b.Error(err)
					return
				}
				if err := tx.Commit(); err != nil {
					b.Error(err)
					return
				}
				at := time.Now()
				mu.Lock()
				committed[ev.Meta.ID] = at
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	require.Eventually(b, func() bool { return relay.Totals().Relayed >= len(committed) }, waitTimeout, 5*time.Millisecond)
	stop()
	var lat []time.Duration
	sp.mu.Lock()
	for id, c := range committed {
		lat = append(lat, max(0, sp.when[id].Sub(c)))
	}
	sp.mu.Unlock()
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/d.Seconds(), "events/s")
	return lat[len(lat)/2], lat[len(lat)*99/100]
}

// BenchmarkWriteCost is the business transaction (fsync on) with one
// order row, with two rows (the target: the outbox costs no more than one
// extra row), and with one row plus its event in the outbox (PostgreSQL).
func BenchmarkWriteCost(b *testing.B) {
	for _, d := range []Dialect{PostgreSQL, MySQL, SQLite} {
		b.Run(d.String(), func(b *testing.B) {
			f := newFixture(b, d, false)
			ctx := context.Background()
			ins := f.ob.q.bind("INSERT INTO " + f.orders + " (id) VALUES (?)")
			run := func(b *testing.B, body func(tx *stdsql.Tx, i int) error) {
				for i := 0; i < b.N; i++ {
					tx, err := f.db.BeginTx(ctx, nil)
					require.NoError(b, err)
					_, err = tx.ExecContext(ctx, ins, uuid.NewString())
					require.NoError(b, err)
					require.NoError(b, body(tx, i))
					require.NoError(b, tx.Commit())
				}
			}
			b.Run("1-row", func(b *testing.B) { run(b, func(*stdsql.Tx, int) error { return nil }) })
			b.Run("2-rows", func(b *testing.B) {
				run(b, func(tx *stdsql.Tx, _ int) error { _, err := tx.ExecContext(ctx, ins, uuid.NewString()); return err })
			})
			b.Run("1-row+event", func(b *testing.B) {
				run(b, func(tx *stdsql.Tx, i int) error {
					return f.ob.Write(ctx, tx, Entry{Topic: "orders", Event: benchEvent(b, i)})
				})
			})
			if d == PostgreSQL {
				// The same without the NOTIFY trigger, to show its share.
				_, err := f.db.Exec("DROP TRIGGER " + f.ob.cfg.Table + "_notify ON " + f.ob.cfg.Table)
				require.NoError(b, err)
				b.Run("1-row+event-no-notify", func(b *testing.B) {
					run(b, func(tx *stdsql.Tx, i int) error {
						return f.ob.Write(ctx, tx, Entry{Topic: "orders", Event: benchEvent(b, i)})
					})
				})
			}
		})
	}
}
