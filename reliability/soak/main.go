// Command soak pushes a million events through the whole pipeline in one
// process (business transactions → PostgreSQL outbox → relay → Redis
// Streams → subscriber → wildcard router → handler), samples resident
// memory and goroutines as it goes, and checks that memory stays flat after
// warm-up and that no goroutine outlives Close. Run it without the race
// detector:
//
//	go run ./reliability/soak                 # 1,000,000 events
//	go run ./reliability/soak -events 200000
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
	"github.com/arcmill/arcmill/wildcard"
)

func main() {
	events := flag.Int("events", 1_000_000, "events to push through")
	dsn := flag.String("dsn", envOr("ARCMILL_POSTGRES_DSN", "postgres://postgres:postgres@127.0.0.1:5432/arcmill?sslmode=disable"), "PostgreSQL URL")
	addr := flag.String("redis", envOr("ARCMILL_REDIS_ADDR", "127.0.0.1:6379"), "Redis address")
	flag.Parse()
	res, err := run(context.Background(), os.Stdout, *dsn, *addr, *events, 2*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	if !res.ok() {
		fmt.Fprintln(os.Stderr, "soak: FAILED:", res.verdict())
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// sample is one reading of the process.
type sample struct {
	at         time.Duration
	handled    int64
	rssMB      float64
	heapMB     float64
	goroutines int
}

// result is what the soak measured.
type result struct {
	events, handled, lost     int
	elapsed                   time.Duration
	samples                   []sample
	goroutinesBefore, after   int
	rssWarm, rssEnd, rssMax   float64
	heapWarm, heapEnd         float64
	leakedGoroutineStackHints string
}

// ok: nothing lost, memory flat after warm-up (the Go heap in use at the
// end within 50 %, plus heapSlackMB, of the reading at a quarter of the
// run), and at most two goroutines more than before the pipeline started
// (runtime helpers). The heap is judged rather than resident memory: under
// -race, resident memory also holds the race detector's shadow memory,
// which grows with what the run touches, leak or not; it is reported.
func (r result) ok() bool { return r.verdict() == "" }

func (r result) verdict() string {
	var bad []string
	if r.lost > 0 {
		bad = append(bad, fmt.Sprintf("%d events lost", r.lost))
	}
	if r.heapEnd > r.heapWarm*1.5+heapSlackMB {
		bad = append(bad, fmt.Sprintf("heap in use grew from %.0f MB to %.0f MB after warm-up", r.heapWarm, r.heapEnd))
	}
	if r.after > r.goroutinesBefore+2 {
		bad = append(bad, fmt.Sprintf("%d goroutines after Close, %d before", r.after, r.goroutinesBefore))
	}
	return strings.Join(bad, "; ")
}

// heapSlackMB absorbs the swings of a small heap between two samples
// (a garbage collection just before one of them), which a ratio alone
// would take for growth.
const heapSlackMB = 16

func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseFloat(f[1], 64)
	return pages * float64(os.Getpagesize()) / (1 << 20)
}

func run(ctx context.Context, out io.Writer, dsn, redisAddr string, events int, every time.Duration) (result, error) {
	res := result{events: events, goroutinesBefore: runtime.NumGoroutine()}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return res, err
	}
	defer db.Close()
	db.SetMaxOpenConns(16)
	table := "soak_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.PostgreSQL, Table: table})
	if err != nil {
		return res, err
	}
	if err := ob.Migrate(ctx); err != nil {
		return res, err
	}
	dropTables := func() {
		for _, s := range []string{table, table + "_lock"} {
			_, _ = db.Exec("DROP TABLE IF EXISTS " + s)
		}
		_, _ = db.Exec("DROP FUNCTION IF EXISTS " + table + "_notify()")
	}
	defer dropTables() // on an early return; the normal path drops before closing db
	client := redis.NewClient(&redis.Options{Addr: redisAddr, PoolSize: 32})
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		return res, fmt.Errorf("redis at %s: %w", redisAddr, err)
	}
	stream := "arcmill-soak:" + table
	defer client.Del(context.Background(), stream) // on an early return
	// SafeTrim keeps the stream short once the group has read it, as a
	// long-running service would.
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client, SafeTrimEvery: 10_000})
	if err != nil {
		return res, err
	}
	relay, err := ob.NewRelay(pub, outbox.RelayConfig{Workers: 4})
	if err != nil {
		return res, err
	}
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client, ConsumerGroup: "soak",
		MaxInFlight: 64, CloseTimeout: 5 * time.Second})
	if err != nil {
		return res, err
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return res, err
	}
	events_, err := wildcard.NewRouter(router, wildcard.Config{Workers: 4})
	if err != nil {
		return res, err
	}
	seen := make([]atomic.Bool, events)
	var handled, dups atomic.Int64
	if _, err := events_.Subscribe(sub, stream, "order.*", func(_ context.Context, ev arc.Event) error {
		n, err := strconv.Atoi(ev.Meta.PartitionKey)
		if err != nil || n < 0 || n >= events {
			return fmt.Errorf("unexpected event %s", ev.Meta.PartitionKey)
		}
		if seen[n].Swap(true) {
			dups.Add(1)
		} else {
			handled.Add(1)
		}
		return nil
	}); err != nil {
		return res, err
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = relay.Run(runCtx) }()
	go func() { defer wg.Done(); _ = events_.Run(runCtx) }()
	<-router.Running()

	start := time.Now()
	produceErr := make(chan error, 1)
	go func() { produceErr <- produce(runCtx, db, ob, stream, events) }()

	tick := time.NewTicker(every)
	defer tick.Stop()
	fmt.Fprintln(out, "| time | handled | resident MB | heap MB | goroutines |")
	fmt.Fprintln(out, "|---|---|---|---|---|")
	deadline := time.Now().Add(time.Duration(events/1000+120) * time.Second)
loop:
	for handled.Load() < int64(events) {
		select {
		case err := <-produceErr:
			if err != nil {
				return res, fmt.Errorf("producing: %w", err)
			}
			produceErr = nil
		case <-tick.C:
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			s := sample{at: time.Since(start), handled: handled.Load(), rssMB: rssMB(),
				heapMB: float64(ms.HeapInuse) / (1 << 20), goroutines: runtime.NumGoroutine()}
			res.samples = append(res.samples, s)
			fmt.Fprintf(out, "| %s | %d | %.0f | %.0f | %d |\n", s.at.Round(time.Second), s.handled, s.rssMB, s.heapMB, s.goroutines)
			if time.Now().After(deadline) {
				fmt.Fprintln(out, "the soak did not finish in time: counting what is missing")
				break loop
			}
		}
	}
	res.elapsed = time.Since(start)
	res.handled = int(handled.Load())

	// Close everything and count what is left running.
	stop()
	wg.Wait()
	_ = relay.Close()
	_ = router.Close()
	_ = sub.Close()
	_ = pub.Close()
	dropTables()
	client.Del(context.Background(), stream)
	client.Close()
	db.Close()
	// Goroutines of closed connections end shortly after Close returns:
	// wait for the count to settle, for at most 5 s.
	for settle := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > res.goroutinesBefore+2 && time.Now().Before(settle); {
		time.Sleep(10 * time.Millisecond)
	}
	res.after = runtime.NumGoroutine()
	if res.after > res.goroutinesBefore+2 {
		buf := make([]byte, 1<<16)
		res.leakedGoroutineStackHints = string(buf[:runtime.Stack(buf, true)])
	}
	for i := range seen {
		if !seen[i].Load() {
			res.lost++
		}
	}
	if n := len(res.samples); n > 0 {
		warm := res.samples[n/4]
		res.rssWarm = warm.rssMB
		res.rssEnd = res.samples[n-1].rssMB
		res.heapWarm, res.heapEnd = warm.heapMB, res.samples[n-1].heapMB
		for _, s := range res.samples {
			res.rssMax = max(res.rssMax, s.rssMB)
		}
	}
	fmt.Fprintf(out, "\n%d events in %s (%.0f events/s end to end), %d lost, %d duplicates; resident memory %.0f MB after warm-up, "+
		"%.0f MB at the end, %.0f MB at most; goroutines %d before, %d after Close\n", res.events,
		res.elapsed.Round(time.Second), float64(res.events)/res.elapsed.Seconds(), res.lost, dups.Load(), res.rssWarm,
		res.rssEnd, res.rssMax, res.goroutinesBefore, res.after)
	if v := res.verdict(); v != "" {
		fmt.Fprintln(out, "verdict: FAIL:", v)
		if res.leakedGoroutineStackHints != "" {
			fmt.Fprintln(out, res.leakedGoroutineStackHints)
		}
	} else {
		fmt.Fprintln(out, "verdict: PASS")
	}
	return res, nil
}

// produce commits events in business transactions of 500, the event's
// number in its partition key.
func produce(ctx context.Context, db *sql.DB, ob *outbox.Outbox, stream string, events int) error {
	for i := 0; i < events; {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		entries := make([]outbox.Entry, 0, 500)
		for ; len(entries) < 500 && i < events; i++ {
			ev, err := arc.NewEvent("order.created", map[string]int{"n": i, "total": 10}, arc.Meta{PartitionKey: strconv.Itoa(i)})
			if err != nil {
				_ = tx.Rollback()
				return err
			}
			entries = append(entries, outbox.Entry{Topic: stream, Event: ev})
		}
		if err := ob.Write(ctx, tx, entries...); err != nil {
			_ = tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}
