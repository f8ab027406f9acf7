package redisstream

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/wildcard"
)

func benchEvents(b *testing.B, n int) []*message.Message { return benchEventsT(b, n) }

func benchEventsT(b testing.TB, n int) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		ev, err := arc.NewEvent("order.created", map[string]any{"orderId": fmt.Sprint("o-", i), "total": 99},
			arc.Meta{UserID: "u-1", CorrelationID: "req-1"})
		if err != nil {
			b.Fatal(err)
		}
		msg, err := arc.ToMessage(ev)
		require.NoError(b, err)
		msgs[i] = msg
	}
	return msgs
}

// fill writes n Arc events to a new stream, pipelined, and returns its key.
func fill(b *testing.B, client *redis.Client, msgs []*message.Message) string {
	stream := "arcmill-bench:" + uuid.NewString()
	pub, err := NewPublisher(PublisherConfig{Client: client})
	require.NoError(b, err)
	for i := 0; i < len(msgs); i += 500 {
		if err := pub.Publish(stream, msgs[i:min(i+500, len(msgs))]...); err != nil {
			b.Fatal(err)
		}
	}
	return stream
}

// consume runs the wildcard router with a no-op Arc handler over sub until
// n events are handled, and returns the time it took.
func consume(b *testing.B, sub message.Subscriber, stream string, n int) time.Duration {
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(b, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{Workers: benchWorkers})
	require.NoError(b, err)
	var handled atomic.Int64
	done := make(chan struct{})
	_, err = events.Subscribe(sub, stream, "order.*", func(context.Context, arc.Event) error {
		if handled.Add(1) == int64(n) {
			close(done)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	go func() { _ = events.Run(context.Background()) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("handled %d of %d", handled.Load(), n)
	}
	elapsed := time.Since(start)
	_ = router.Close()
	return elapsed
}

// The configuration measured: one consumer, 64 messages in flight, the
// router's events spread over 4 lanes (per partition key in order).
var (
	benchConsumers = 1
	benchInFlight  = 64
	benchWorkers   = 64
)

// BenchmarkConsume: events/s through the wildcard router with a no-op Arc
// handler, arcmill's subscriber against watermill-redisstream's default
// one (COUNT 1, one XACK per message), both reading Arc's layout from the
// same Redis, in one run (targets, BENCHMARKS.md: ≥ 100k/s, ≥ 9× the default).
//
// It also measures what the byte bounds cost: arcmill with its defaults
// (the bounded read script) against arcmill with MaxEntryBytes and
// MaxBatchBytes None (plain XREADGROUP), in consumePairs pairs over the same
// stream, each pair in turn order, so both see the same load on a shared
// machine; bounded_vs_plain is the median of the pairs' ratios.
func BenchmarkConsume(b *testing.B) {
	addr := testenv.RedisAddr(b)
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	const n = 50000
	msgs := benchEvents(b, n)
	var ours, plain, theirs time.Duration
	var ratios []float64
	arcmill := func(stream, group string, bounds int) time.Duration {
		sub, err := NewSubscriber(SubscriberConfig{Client: redis.NewClient(&redis.Options{Addr: addr}),
			ConsumerGroup: group, CloseClient: true, Consumers: benchConsumers,
			MaxInFlight: benchInFlight, MaxEntryBytes: bounds, MaxBatchBytes: bounds})
		require.NoError(b, err)
		defer sub.Close()
		return consume(b, sub, stream, n)
	}
	for b.Loop() {
		stream := fill(b, admin, msgs)
		for i := 0; i < consumePairs; i++ {
			var o, p time.Duration
			if i%2 == 0 {
				o = arcmill(stream, fmt.Sprint("bench-bounded-", i), 0)
				p = arcmill(stream, fmt.Sprint("bench-plain-", i), None)
			} else {
				p = arcmill(stream, fmt.Sprint("bench-plain-", i), None)
				o = arcmill(stream, fmt.Sprint("bench-bounded-", i), 0)
			}
			ours, plain = ours+o, plain+p
			ratios = append(ratios, p.Seconds()/o.Seconds())
		}

		wsub, err := wredis.NewSubscriber(wredis.SubscriberConfig{Client: redis.NewClient(&redis.Options{Addr: addr}),
			ConsumerGroup: "bench-watermill", Unmarshaller: Marshaller{}}, watermill.NopLogger{})
		require.NoError(b, err)
		theirs += consume(b, wsub, stream, n)
		_ = wsub.Close()
		admin.Del(context.Background(), stream)
	}
	runs := float64(b.N)
	slices.Sort(ratios)
	b.ReportMetric(n*runs*consumePairs/ours.Seconds(), "arcmill_events/s")
	b.ReportMetric(n*runs*consumePairs/plain.Seconds(), "plain_events/s")
	b.ReportMetric(ratios[len(ratios)/2], "bounded_vs_plain")
	b.ReportMetric(n*runs/theirs.Seconds(), "watermill_events/s")
	b.ReportMetric(theirs.Seconds()*consumePairs/ours.Seconds(), "x_faster")
}

// consumePairs is how many bounded/plain pairs BenchmarkConsume runs.
const consumePairs = 3

// BenchmarkPublish: events/s published in batches of 100 (one pipelined
// round trip each) and one by one, against watermill-redisstream's
// publisher (one XADD per message) with the same Arc marshaller.
func BenchmarkPublish(b *testing.B) {
	addr := testenv.RedisAddr(b)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	const n = 20000
	msgs := benchEvents(b, n)
	ours, err := NewPublisher(PublisherConfig{Client: client})
	require.NoError(b, err)
	theirs, err := wredis.NewPublisher(wredis.PublisherConfig{Client: client, Marshaller: Marshaller{}}, watermill.NopLogger{})
	require.NoError(b, err)
	run := func(pub message.Publisher, batch int) time.Duration {
		stream := "arcmill-bench:" + uuid.NewString()
		defer client.Del(context.Background(), stream)
		start := time.Now()
		for i := 0; i < n; i += batch {
			if err := pub.Publish(stream, msgs[i:min(i+batch, n)]...); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	var oursBatch, theirsBatch, oursOne, theirsOne time.Duration
	for b.Loop() {
		oursBatch += run(ours, 100)
		theirsBatch += run(theirs, 100)
		oursOne += run(ours, 1)
		theirsOne += run(theirs, 1)
	}
	runs := float64(b.N)
	b.ReportMetric(n*runs/oursBatch.Seconds(), "arcmill_batch_events/s")
	b.ReportMetric(n*runs/theirsBatch.Seconds(), "watermill_batch_events/s")
	b.ReportMetric(n*runs/oursOne.Seconds(), "arcmill_single_events/s")
	b.ReportMetric(n*runs/theirsOne.Seconds(), "watermill_single_events/s")
	b.ReportMetric(theirsBatch.Seconds()/oursBatch.Seconds(), "x_faster_batch")
}

// BenchmarkArcPresetSlowHandler replays, at full scale, the run that found
// handled entries claimed back: Arc's preset (ClaimIdle 30 s, BatchSize
// 100), 110 events, a 350 ms handler, two processes of one group. A read
// batch outlasts ClaimIdle; it reports how many events were handled twice
// (96 of 110 before acks settled ahead of claims). About 40 s a run.
func BenchmarkArcPresetSlowHandler(b *testing.B) {
	addr := testenv.RedisAddr(b)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	const events, work = 110, 350 * time.Millisecond
	twice := 0
	for b.Loop() {
		stream := "arcmill-bench:" + uuid.NewString()
		pub, err := NewPublisher(PublisherConfig{Client: client})
		if err != nil {
			b.Fatal(err)
		}
		if err := pub.Publish(stream, benchEvents(b, events)...); err != nil {
			b.Fatal(err)
		}
		var handled counter
		var subs []*Subscriber
		for i := 0; i < 2; i++ {
			cfg := ArcSubscriber(client, "arc-preset", true)
			cfg.DeadLetterStream = stream + ":dlq"
			sub, err := NewSubscriber(cfg)
			if err != nil {
				b.Fatal(err)
			}
			msgs, err := sub.Subscribe(context.Background(), stream)
			if err != nil {
				b.Fatal(err)
			}
			subs = append(subs, sub)
			go func() {
				for m := range msgs {
					handled.add(m.Metadata.Get(MetadataEntryID))
					time.Sleep(work)
					m.Ack()
				}
			}()
		}
		deadline := time.Now().Add(3 * time.Minute)
		for handled.len() < events || client.XPending(context.Background(), stream, "arc-preset").Val().Count > 0 {
			if time.Now().After(deadline) {
				b.Fatal("not all handled")
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, s := range subs {
			_ = s.Close()
		}
		twice += len(handled.twice())
		client.Del(context.Background(), stream, stream+":dlq")
	}
	b.ReportMetric(float64(twice)/float64(b.N), "handled_twice")
	b.ReportMetric(events, "events")
}

// BenchmarkReadBatch isolates what the bounded read costs per batch of
// BatchSize small Arc events against plain XREADGROUP COUNT 100: two
// groups read the same stream, one batch each in turn, so both see the
// same load; it reports ns per batch of each and their ratio.
func BenchmarkReadBatch(b *testing.B) {
	addr := testenv.RedisAddr(b)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	const n = 50000
	ctx := context.Background()
	stream := fill(b, client, benchEvents(b, n))
	defer client.Del(ctx, stream)
	for _, g := range []string{"plain", "bounded"} {
		require.NoError(b, client.XGroupCreate(ctx, stream, g, "0").Err())
	}
	bounded := &boundedReader{client: client, stream: stream, group: "bounded", consumer: "c",
		maxEntry: DefaultMaxEntryBytes, budget: DefaultMaxBatchBytes}
	var plainTime, boundedTime time.Duration
	batches := 0
	for b.Loop() {
		if batches == n/DefaultBatchSize {
			b.Fatal("stream exhausted: run with a smaller -benchtime")
		}
		start := time.Now()
		p, err := readGroup(ctx, client, "plain", "c", stream, ">", DefaultBatchSize, -1)
		plainTime += time.Since(start)
		require.NoError(b, err)
		start = time.Now()
		q, err := bounded.read(ctx, ">", DefaultBatchSize)
		boundedTime += time.Since(start)
		require.NoError(b, err)
		if len(p) != DefaultBatchSize || len(q) != DefaultBatchSize {
			b.Fatalf("read %d and %d entries", len(p), len(q))
		}
		batches++
	}
	b.ReportMetric(float64(plainTime.Nanoseconds())/float64(batches), "plain_ns/batch")
	b.ReportMetric(float64(boundedTime.Nanoseconds())/float64(batches), "bounded_ns/batch")
	b.ReportMetric(plainTime.Seconds()/boundedTime.Seconds(), "bounded_vs_plain")
}

// BenchmarkConsumeCPU measures what BenchmarkConsume's bounded and plain
// reads cost in CPU, which a shared, busy machine disturbs far less than it
// disturbs wall time: Go's (the whole process: subscriber, router, no-op
// handler) and Redis's, on a private redis-server so that no other client
// counts. Pairs alternate as in BenchmarkConsume; it reports µs of CPU per
// event for each read, and the bounded read's total over the plain one's.
func BenchmarkConsumeCPU(b *testing.B) {
	testenv.RedisAddr(b) // the shared server is up, so redis-server is installed
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(b, l.Close())
	server := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", b.TempDir())
	require.NoError(b, server.Start())
	defer func() { _ = server.Process.Kill(); _ = server.Wait() }()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	require.Eventually(b, func() bool { return admin.Ping(context.Background()).Err() == nil }, time.Minute,
		10*time.Millisecond)
	redisCPU := func() time.Duration {
		info, err := admin.Info(context.Background(), "cpu").Result()
		require.NoError(b, err)
		var total float64
		for _, line := range strings.Split(info, "\r\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
				f, err := strconv.ParseFloat(v, 64)
				require.NoError(b, err)
				total += f
			}
		}
		return time.Duration(total * float64(time.Second))
	}
	goCPU := func() time.Duration {
		var ru syscall.Rusage
		require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	const n = 50000
	msgs := benchEvents(b, n)
	type cost struct{ wall, goCPU, redisCPU time.Duration }
	var bounded, plain cost
	measure := func(stream, group string, bounds int, into *cost) {
		sub, err := NewSubscriber(SubscriberConfig{Client: redis.NewClient(&redis.Options{Addr: addr}),
			ConsumerGroup: group, CloseClient: true, Consumers: benchConsumers,
			MaxInFlight: benchInFlight, MaxEntryBytes: bounds, MaxBatchBytes: bounds})
		require.NoError(b, err)
		defer sub.Close()
		g, r := goCPU(), redisCPU()
		into.wall += consume(b, sub, stream, n)
		into.goCPU += goCPU() - g
		into.redisCPU += redisCPU() - r
	}
	pairs := 0
	for b.Loop() {
		stream := fill(b, admin, msgs)
		for i := 0; i < consumePairs; i++ {
			first, second := func() { measure(stream, fmt.Sprint("bounded-", i), 0, &bounded) },
				func() { measure(stream, fmt.Sprint("plain-", i), None, &plain) }
			if i%2 == 1 {
				first, second = second, first
			}
			first()
			second()
			pairs++
		}
		admin.Del(context.Background(), stream)
	}
	events := float64(n * pairs)
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / events }
	b.ReportMetric(events/bounded.wall.Seconds(), "bounded_events/s")
	b.ReportMetric(events/plain.wall.Seconds(), "plain_events/s")
	b.ReportMetric(per(bounded.goCPU), "bounded_go_cpu_us/event")
	b.ReportMetric(per(plain.goCPU), "plain_go_cpu_us/event")
	b.ReportMetric(per(bounded.redisCPU), "bounded_redis_cpu_us/event")
	b.ReportMetric(per(plain.redisCPU), "plain_redis_cpu_us/event")
	b.ReportMetric(float64(bounded.goCPU+bounded.redisCPU)/float64(plain.goCPU+plain.redisCPU), "bounded_cpu_vs_plain")
}
