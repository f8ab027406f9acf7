package wildcard

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// stubSubscriber does the least a Watermill subscriber can: it makes each
// message (a fresh message with the decoded event in its context, so the
// router decodes nothing), keeps at most 64 unsettled, as arcmill's
// subscriber does, and learns of each ack with a goroutine. It reads no
// Redis: a consumer built on it is the ceiling of any consumer built on
// message.Router. Every message has its own UUID and no partition key or
// aggregate id, so each is its own key and the order per key holds
// trivially: it is a KeyOrderedSubscriber, read directly as arcmill's
// Redis Streams subscriber is.
type stubSubscriber struct {
	n    int
	tmpl *message.Message
	ev   arc.Event
}

func (s *stubSubscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	slots := make(chan struct{}, 64)
	go func() {
		// Watermill's router waits for the channel to close when it stops.
		defer close(out)
		defer func() { <-ctx.Done() }()
		for i := 0; i < s.n; i++ {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			m := message.NewMessage(strconv.Itoa(i), s.tmpl.Payload)
			m.Metadata = maps.Clone(s.tmpl.Metadata)
			m.SetContext(ContextWithEvent(ctx, m, s.ev, arc.Limits{}))
			go func() {
				select {
				case <-m.Acked():
				case <-m.Nacked():
				case <-ctx.Done():
				}
				<-slots
			}()
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func (s *stubSubscriber) Close() error { return nil }

func (s *stubSubscriber) OrdersByPartitionKey() bool { return true }

// ceilingEvents is ARCMILL_BENCH_EVENTS, else 20,000.
func ceilingEvents(b *testing.B) int {
	if v := os.Getenv("ARCMILL_BENCH_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	return 20000
}

// BenchmarkRouterCeiling bounds what any consumer built on Watermill's
// message.Router can reach against the physical reference of issue 17,
// in one run, rounds alternating:
//
//   - raw: the plain go-redis loop (XREADGROUP COUNT 100, one XACK a
//     batch, one consumer) over a stream of Arc events;
//   - wildcard: the wildcard router with its defaults and one no-op Arc
//     handler on a message.Router, fed by stubSubscriber (no Redis, no
//     decode, no XACK);
//   - plain: a plain message.Router no-op handler fed the same way;
//   - outside: the wildcard source's dispatch called by 64 workers that
//     read the source directly, outside message.Router (a probe of that
//     design, not a product path).
//
// The router cases do strictly less than a real consumer, and share the
// two cores with nothing; their ratio to raw is an upper bound for the
// default consumer's.
//
//	go test -run '^$' -bench BenchmarkRouterCeiling -benchtime 1x ./wildcard/
func BenchmarkRouterCeiling(b *testing.B) {
	n := ceilingEvents(b)
	ev, err := arc.NewEvent("order.created", map[string]any{"orderId": "o-1", "total": 99},
		arc.Meta{UserID: "u-1", CorrelationID: "req-1"})
	if err != nil {
		b.Fatal(err)
	}
	tmpl, err := arc.ToMessage(ev)
	if err != nil {
		b.Fatal(err)
	}
	data, err := arc.Marshal(ev)
	if err != nil {
		b.Fatal(err)
	}
	addr := testenv.RedisAddr(b)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	ctx := context.Background()
	stream := "arcmill-bench:" + uuid.NewString()
	defer client.Del(ctx, stream)
	for i := 0; i < n; i += 500 {
		if _, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j := i; j < min(i+500, n); j++ {
				p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"type", ev.Type, "data", data}})
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}

	raw := func(round int) time.Duration {
		group := fmt.Sprint("raw-", round)
		start := time.Now()
		if err := client.XGroupCreate(ctx, stream, group, "0").Err(); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < n; {
			res, err := client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "c",
				Streams: []string{stream, ">"}, Count: 100, Block: time.Second}).Result()
			if err != nil {
				b.Fatal(err)
			}
			ids := make([]string, 0, len(res[0].Messages))
			for _, m := range res[0].Messages {
				ids = append(ids, m.ID)
			}
			if err := client.XAck(ctx, stream, group, ids...).Err(); err != nil {
				b.Fatal(err)
			}
			got += len(ids)
		}
		return time.Since(start)
	}
	// routed runs n events through a message.Router: via the wildcard
	// router, or a plain no-op handler.
	routed := func(viaWildcard bool) time.Duration {
		router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		if err != nil {
			b.Fatal(err)
		}
		var handled atomic.Int64
		done := make(chan struct{})
		count := func() {
			if handled.Add(1) == int64(n) {
				close(done)
			}
		}
		sub := &stubSubscriber{n: n, tmpl: tmpl, ev: ev}
		start := time.Now()
		var run func(context.Context) error
		var closeAll func() error
		if viaWildcard {
			wr, err := NewRouter(router, Config{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := wr.Subscribe(sub, "events", "order.*", func(context.Context, arc.Event) error {
				count()
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			run, closeAll = wr.Run, wr.Close
		} else {
			router.AddConsumerHandler("noop", "events", sub, func(*message.Message) error { count(); return nil })
			run, closeAll = router.Run, router.Close
		}
		go func() { _ = run(context.Background()) }()
		<-done
		took := time.Since(start)
		_ = closeAll()
		return took
	}
	outside := func() time.Duration {
		router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		if err != nil {
			b.Fatal(err)
		}
		wr, err := NewRouter(router, Config{})
		if err != nil {
			b.Fatal(err)
		}
		var handled atomic.Int64
		done := make(chan struct{})
		sub := &stubSubscriber{n: n, tmpl: tmpl, ev: ev}
		if _, err := wr.Subscribe(sub, "events", "order.*", func(context.Context, arc.Event) error {
			if handled.Add(1) == int64(n) {
				close(done)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		src := wr.sources[sourceKey{sub: sub, topic: "events"}]
		sctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		start := time.Now()
		in, err := src.Subscribe(sctx, "events")
		if err != nil {
			b.Fatal(err)
		}
		for range 64 {
			go func() {
				for m := range in {
					if src.dispatch(m) == nil {
						m.Ack()
					} else {
						m.Nack()
					}
				}
			}()
		}
		<-done
		return time.Since(start)
	}

	type rates struct{ raw, wildcard, plain, outside float64 }
	var all []rates
	round := 0
	for b.Loop() {
		for range 3 {
			var r rates
			cases := []func(){
				func() { r.raw = float64(n) / raw(round).Seconds() },
				func() { r.wildcard = float64(n) / routed(true).Seconds() },
				func() { r.plain = float64(n) / routed(false).Seconds() },
				func() { r.outside = float64(n) / outside().Seconds() },
			}
			for i := range cases {
				cases[(i+round)%len(cases)]()
			}
			all = append(all, r)
			round++
		}
	}
	median := func(f func(rates) float64) float64 {
		v := make([]float64, len(all))
		for i, r := range all {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	b.ReportMetric(median(func(r rates) float64 { return r.raw }), "raw_events/s")
	b.ReportMetric(median(func(r rates) float64 { return r.wildcard / r.raw }), "wildcard_of_raw")
	b.ReportMetric(median(func(r rates) float64 { return r.plain / r.raw }), "plain_of_raw")
	b.ReportMetric(median(func(r rates) float64 { return r.outside / r.raw }), "outside_of_raw")
}
