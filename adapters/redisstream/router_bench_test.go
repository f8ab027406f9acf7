package redisstream

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// plainConsume runs a plain Watermill router with one no-op handler over
// sub until n messages are handled, and returns the time it took,
// subscription included: routerConsume without the wildcard router. With
// decode, the handler first reads the message's event (arc.FromMessage)
// and passes it to a no-op Arc handler, as a Watermill handler of Arc
// events would without the wildcard router.
func plainConsume(b *testing.B, sub message.Subscriber, stream string, n int, decode bool) time.Duration {
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(b, err)
	var handled atomic.Int64
	done := make(chan struct{})
	handle := func(context.Context, arc.Event) error { return nil }
	router.AddConsumerHandler("noop", stream, sub, func(msg *message.Message) error {
		if decode {
			ev, err := arc.FromMessage(msg)
			if err != nil {
				return err
			}
			if err := handle(msg.Context(), ev); err != nil {
				return err
			}
		}
		if handled.Add(1) == int64(n) {
			close(done)
		}
		return nil
	})
	start := time.Now()
	go func() { _ = router.Run(context.Background()) }()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("handled %d of %d", handled.Load(), n)
	}
	elapsed := time.Since(start)
	_ = router.Close()
	return elapsed
}

// BenchmarkRouterOneHandler measures what the wildcard router costs with
// one handler, against plain Watermill, on the same subscriber: arcmill's
// default subscriber (the ArcSubscriber preset) read by
//
//   - wildcard: the wildcard router with its defaults and one no-op Arc
//     handler on "order.*" (the event the subscriber decoded, the match,
//     the handler's Info and metadata, the call);
//   - plain: a plain message.Router with one no-op handler on the topic
//     (nothing read from the message);
//   - plain_decode: the same, its handler reading the event
//     (arc.FromMessage) and passing it to a no-op Arc handler, which is
//     what a Watermill handler of Arc events does without the router.
//
// Each case reads its own group of one stream of Arc events; every round
// runs each case, each first in turn; a ratio is the median of the rounds'
// ratios. wildcard_of_plain is the wildcard router's events/s over plain
// Watermill's (target ≥ 0.90); the CPU and allocations per event (the
// whole process's) are steadier than the rates on a shared machine.
//
//	go test -run '^$' -bench BenchmarkRouterOneHandler -benchtime 1x ./adapters/redisstream
func BenchmarkRouterOneHandler(b *testing.B) {
	addr := testenv.RedisAddr(b)
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	n, rounds := limitEvents(b), limitRounds(b)
	msgs := benchEvents(b, n)

	subscriber := func(group string) *Subscriber {
		cfg := ArcSubscriber(redis.NewClient(&redis.Options{Addr: addr}), group, true)
		cfg.CloseClient = true
		sub, err := NewSubscriber(cfg)
		require.NoError(b, err)
		return sub
	}
	cases := map[string]func(stream, group string) time.Duration{
		"wildcard": func(stream, group string) time.Duration {
			sub := subscriber(group)
			defer sub.Close()
			return routerConsume(b, sub, stream, n, nil)
		},
		"plain": func(stream, group string) time.Duration {
			sub := subscriber(group)
			defer sub.Close()
			return plainConsume(b, sub, stream, n, false)
		},
		"plain_decode": func(stream, group string) time.Duration {
			sub := subscriber(group)
			defer sub.Close()
			return plainConsume(b, sub, stream, n, true)
		},
	}
	// ARCMILL_BENCH_ONLY runs one case, for profiling it alone.
	only := os.Getenv("ARCMILL_BENCH_ONLY")
	cpu := map[string]time.Duration{}
	allocs := map[string]uint64{}
	runs := map[string]int{}
	var ratios, decRatios, wild, plain, plainDec []float64
	for b.Loop() {
		stream := fill(b, admin, msgs)
		for round := 0; round < rounds; round++ {
			order := []string{"wildcard", "plain", "plain_decode"}
			for range round % len(order) { // each case first in turn
				order = append(order[1:], order[0])
			}
			rate := map[string]float64{}
			for _, name := range order {
				if only != "" && only != name {
					continue
				}
				var before, after syscall.Rusage
				var mBefore, mAfter runtime.MemStats
				runtime.ReadMemStats(&mBefore)
				require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &before))
				rate[name] = float64(n) / cases[name](stream, fmt.Sprint(name, "-", round)).Seconds()
				require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &after))
				runtime.ReadMemStats(&mAfter)
				cpu[name] += time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
				allocs[name] += mAfter.Mallocs - mBefore.Mallocs
				runs[name]++
			}
			wild, plain, plainDec = append(wild, rate["wildcard"]), append(plain, rate["plain"]),
				append(plainDec, rate["plain_decode"])
			if rate["wildcard"] > 0 && rate["plain"] > 0 {
				ratios = append(ratios, rate["wildcard"]/rate["plain"])
			}
			if rate["wildcard"] > 0 && rate["plain_decode"] > 0 {
				decRatios = append(decRatios, rate["wildcard"]/rate["plain_decode"])
			}
		}
		admin.Del(context.Background(), stream)
	}
	for name, d := range cpu {
		b.ReportMetric(float64(d.Nanoseconds())/1e3/float64(n*runs[name]), name+"_cpu_us/event")
		b.ReportMetric(float64(allocs[name])/float64(n*runs[name]), name+"_allocs/event")
	}
	b.ReportMetric(median(wild), "wildcard_events/s")
	b.ReportMetric(median(plain), "plain_events/s")
	b.ReportMetric(median(plainDec), "plain_decode_events/s")
	if len(ratios) > 0 {
		b.ReportMetric(median(ratios), "wildcard_of_plain")
		b.ReportMetric(slices.Min(ratios), "wildcard_of_plain_worst")
	}
	if len(decRatios) > 0 {
		b.ReportMetric(median(decRatios), "wildcard_of_plain_decode")
	}
}
