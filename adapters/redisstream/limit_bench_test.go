package redisstream

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// limitEvents is how many events each case of BenchmarkConsumeLimit
// consumes: ARCMILL_BENCH_EVENTS, else 20,000 (the stream), small
// enough for `make bench` to stay within minutes.
func limitEvents(b *testing.B) int {
	if s := os.Getenv("ARCMILL_BENCH_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(b, err)
		return n
	}
	return 20000
}

// limitRounds is how many rounds BenchmarkConsumeLimit runs per iteration,
// each case once a round, in a rotating order, so that every case sees the
// same load on a shared machine: ARCMILL_BENCH_ROUNDS, else 3.
func limitRounds(b *testing.B) int {
	if s := os.Getenv("ARCMILL_BENCH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(b, err)
		return n
	}
	return 3
}

// rawConsume is the physical reference: a plain go-redis loop, XREADGROUP
// COUNT 100 then one XACK per batch, one consumer, nothing done with the
// entries. It returns the time to consume n entries.
func rawConsume(b *testing.B, addr, stream, group string, n int) time.Duration {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	start := time.Now()
	require.NoError(b, client.XGroupCreate(ctx, stream, group, "0").Err())
	for got := 0; got < n; {
		res, err := client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "c",
			Streams: []string{stream, ">"}, Count: 100, Block: time.Second}).Result()
		require.NoError(b, err)
		ids := make([]string, 0, len(res[0].Messages))
		for _, m := range res[0].Messages {
			ids = append(ids, m.ID)
		}
		require.NoError(b, client.XAck(ctx, stream, group, ids...).Err())
		got += len(ids)
	}
	return time.Since(start)
}

// routerConsume runs a wildcard router with its defaults and one no-op Arc
// handler on "order.*" (with mw as its middleware) over sub until n events
// are handled, and returns the time it took, subscription included.
func routerConsume(b *testing.B, sub message.Subscriber, stream string, n int, mw []message.HandlerMiddleware) time.Duration {
	_, events, wait := noopRouter(b, sub, stream, n, mw)
	start := time.Now()
	go func() { _ = events.Run(context.Background()) }()
	wait()
	elapsed := time.Since(start)
	_ = events.Close()
	return elapsed
}

// noopRouter builds, without running it, a wildcard router with its
// defaults and one no-op Arc handler on "order.*" (with mw as its
// middleware) over sub; wait returns once n events are handled.
func noopRouter(b *testing.B, sub message.Subscriber, stream string, n int,
	mw []message.HandlerMiddleware) (router *message.Router, events *wildcard.Router, wait func()) {
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(b, err)
	events, err = wildcard.NewRouter(router, wildcard.Config{})
	require.NoError(b, err)
	var handled atomic.Int64
	done := make(chan struct{})
	_, err = events.Handle(wildcard.HandlerConfig{Name: "noop", Subscriber: sub, Topic: stream,
		Patterns: []string{"order.*"}, Middleware: mw}, func(context.Context, arc.Event) error {
		if handled.Add(1) == int64(n) {
			close(done)
		}
		return nil
	})
	require.NoError(b, err)
	return router, events, func() {
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatalf("handled %d of %d", handled.Load(), n)
		}
	}
}

// outsideConsume is a probe, not a product path: it gives the wildcard
// router's dispatch of one no-op Arc handler on "order.*" (the Watermill
// handler func wildcard registers, taken from message.Router.Handlers; the
// message.Router never runs) the messages of sub, read directly as the
// wildcard source reads a KeyOrderedSubscriber, from workers goroutines
// that ack or nack each message as Watermill's handleMessage does. It
// returns the time until n events are handled, subscription included.
func outsideConsume(b *testing.B, sub message.Subscriber, stream string, n, workers int) time.Duration {
	ko, ok := sub.(wildcard.KeyOrderedSubscriber)
	require.True(b, ok && ko.OrdersByPartitionKey(), "the source reads only a KeyOrderedSubscriber directly")
	router, _, wait := noopRouter(b, sub, stream, n, nil)
	handlers := router.Handlers()
	require.Len(b, handlers, 1)
	var dispatch message.HandlerFunc
	for _, h := range handlers {
		dispatch = h
	}
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	in, err := sub.Subscribe(ctx, stream)
	require.NoError(b, err)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for m := range in {
				if _, err := dispatch(m); err != nil {
					m.Nack()
				} else {
					m.Ack()
				}
			}
		})
	}
	wait()
	elapsed := time.Since(start)
	cancel()
	_ = sub.Close()
	wg.Wait()
	return elapsed
}

// BenchmarkConsumeLimit measures the consumer against its physical limit,
// in one run: the raw go-redis loop (rawConsume), arcmill as a user gets
// it (the ArcSubscriber preset and wildcard.Config{}, one no-op Arc
// handler), the same under middleware.NewStack, and watermill-redisstream's
// default subscriber (Arc's layout, the same router), and a probe
// (outsideConsume: the defaults' subscriber, the wildcard dispatch called
// by DefaultMaxInFlight workers outside message.Router), each over its own
// group of one stream of Arc events. Every round runs each case once, in a
// rotating order; a ratio is the median of the rounds' ratios.
//
// of_raw is arcmill's events/s over the raw loop's (targets: ≥ 0.70,
// ≥ 0.60 under NewStack); x_watermill is arcmill's over Watermill's
// default (target ≥ 12); outside_of_raw and outside_of_default are the
// probe's, which bound what bypassing message.Router could gain.
//
//	go test -run '^$' -bench BenchmarkConsumeLimit -benchtime 1x ./adapters/redisstream
func BenchmarkConsumeLimit(b *testing.B) {
	addr := testenv.RedisAddr(b)
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	n, rounds := limitEvents(b), limitRounds(b)
	// Watermill's default reads one entry per round trip: a quarter of the
	// events tells its rate as well, in a quarter of the time.
	nWatermill := max(n/4, 1000)
	msgs := benchEvents(b, n)

	stack, err := middleware.NewStack(middleware.StackConfig{DeadLetter: middleware.DeadLetterConfig{
		Publisher: &DeadLetterPublisher{Client: admin}, Topic: "arcmill-bench:dlq-unused"}})
	require.NoError(b, err)

	arcmill := func(stream, group string, mw []message.HandlerMiddleware) time.Duration {
		client := redis.NewClient(&redis.Options{Addr: addr})
		cfg := ArcSubscriber(client, group, true)
		cfg.CloseClient = true
		sub, err := NewSubscriber(cfg)
		require.NoError(b, err)
		defer sub.Close()
		return routerConsume(b, sub, stream, n, mw)
	}
	watermillDefault := func(stream, group string) time.Duration {
		sub, err := wredis.NewSubscriber(wredis.SubscriberConfig{Client: redis.NewClient(&redis.Options{Addr: addr}),
			ConsumerGroup: group, Unmarshaller: Marshaller{}}, watermill.NopLogger{})
		require.NoError(b, err)
		defer sub.Close()
		return routerConsume(b, sub, stream, nWatermill, nil)
	}
	// The defaults' subscriber; message.Router would run one goroutine per
	// message, at most MaxInFlight (the preset leaves DefaultMaxInFlight).
	outside := func(stream, group string) time.Duration {
		client := redis.NewClient(&redis.Options{Addr: addr})
		cfg := ArcSubscriber(client, group, true)
		cfg.CloseClient = true
		sub, err := NewSubscriber(cfg)
		require.NoError(b, err)
		defer sub.Close()
		return outsideConsume(b, sub, stream, n, DefaultMaxInFlight)
	}

	// ARCMILL_BENCH_ONLY runs one case, for profiling it alone.
	only, names := os.Getenv("ARCMILL_BENCH_ONLY"), []string{"raw", "default", "stack", "watermill", "outside"}
	type rates struct{ raw, def, stack, wm, out float64 }
	// The process's CPU per event of each case, which a loaded machine
	// disturbs less than wall time.
	cpu := map[string]time.Duration{}
	// And the allocations per event, which load does not move at all.
	allocs := map[string]uint64{}
	timed := func(name string, f func()) {
		var before, after syscall.Rusage
		var mBefore, mAfter runtime.MemStats
		runtime.ReadMemStats(&mBefore)
		require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &before))
		f()
		require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &after))
		runtime.ReadMemStats(&mAfter)
		cpu[name] += time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
		allocs[name] += mAfter.Mallocs - mBefore.Mallocs
	}
	var all []rates
	for b.Loop() {
		stream := fill(b, admin, msgs)
		for round := 0; round < rounds; round++ {
			var r rates
			cases := []func(){
				func() { r.raw = float64(n) / rawConsume(b, addr, stream, fmt.Sprint("raw-", round), n).Seconds() },
				func() { r.def = float64(n) / arcmill(stream, fmt.Sprint("default-", round), nil).Seconds() },
				func() {
					r.stack = float64(n) / arcmill(stream, fmt.Sprint("stack-", round), stack.Middleware).Seconds()
				},
				func() {
					r.wm = float64(nWatermill) / watermillDefault(stream, fmt.Sprint("watermill-", round)).Seconds()
				},
				func() { r.out = float64(n) / outside(stream, fmt.Sprint("outside-", round)).Seconds() },
			}
			for i := range cases {
				if c := (i + round) % len(cases); only == "" || only == names[c] {
					timed(names[c], cases[c])
				}
			}
			all = append(all, r)
		}
		admin.Del(context.Background(), stream)
	}
	median := func(f func(rates) float64) float64 {
		v := make([]float64, len(all))
		for i, r := range all {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	for i, name := range names {
		events := n
		if i == 3 {
			events = nWatermill
		}
		if cpu[name] > 0 {
			b.ReportMetric(float64(cpu[name].Nanoseconds())/1e3/float64(events*len(all)), name+"_cpu_us/event")
			b.ReportMetric(float64(allocs[name])/float64(events*len(all)), name+"_allocs/event")
		}
	}
	b.ReportMetric(median(func(r rates) float64 { return r.raw }), "raw_events/s")
	b.ReportMetric(median(func(r rates) float64 { return r.def }), "default_events/s")
	b.ReportMetric(median(func(r rates) float64 { return r.stack }), "stack_events/s")
	b.ReportMetric(median(func(r rates) float64 { return r.wm }), "watermill_events/s")
	b.ReportMetric(median(func(r rates) float64 { return r.out }), "outside_events/s")
	b.ReportMetric(median(func(r rates) float64 { return r.def / r.raw }), "default_of_raw")
	b.ReportMetric(median(func(r rates) float64 { return r.stack / r.raw }), "stack_of_raw")
	b.ReportMetric(median(func(r rates) float64 { return r.def / r.wm }), "default_x_watermill")
	b.ReportMetric(median(func(r rates) float64 { return r.stack / r.wm }), "stack_x_watermill")
	b.ReportMetric(median(func(r rates) float64 { return r.out / r.raw }), "outside_of_raw")
	b.ReportMetric(median(func(r rates) float64 { return r.out / r.def }), "outside_of_default")
}
