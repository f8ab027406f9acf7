package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// BenchmarkPoisonDelay measures how much poison events (always failing,
// retried, then dead-lettered) delay the good events around them: 3,000
// events at 1,500 per second through Redis Streams, the wildcard router (8
// lanes) and the middleware stack, without poison and with 2 % poison, in
// one run. It reports the good events' delay from publish to handler (p50,
// p99, max) and the retry budget (the time one poison event spends in
// retries). Run with -benchtime 1x.
func BenchmarkPoisonDelay(b *testing.B) {
	retry := middleware.RetryConfig{MaxRetries: 2, Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Jitter: middleware.NoJitter}
	budget := 5*time.Millisecond + 10*time.Millisecond // two waits, doubling
	for i := 0; i < b.N; i++ {
		base := poisonDelays(b, retry, 0)
		with := poisonDelays(b, retry, 50)
		b.ReportMetric(ms(base[len(base)*99/100]), "clean_p99_ms")
		b.ReportMetric(ms(with[len(with)/2]), "poison_p50_ms")
		b.ReportMetric(ms(with[len(with)*99/100]), "poison_p99_ms")
		b.ReportMetric(ms(with[len(with)-1]), "poison_max_ms")
		b.ReportMetric(ms(budget), "retry_budget_ms")
		b.ReportMetric(ms(with[len(with)*99/100]-base[len(base)*99/100]), "p99_added_ms")
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// poisonDelays runs the pipeline with every poisonEvery-th event poison (0:
// none) and returns the good events' delays, sorted.
func poisonDelays(b *testing.B, retry middleware.RetryConfig, poisonEvery int) []time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(b)})
	defer client.Close()
	stream := "arcmill-poison:" + uuid.NewString()
	defer client.Del(context.Background(), stream, stream+":dlq")
	stack, err := middleware.NewStack(middleware.StackConfig{Retry: retry,
		DeadLetter: middleware.DeadLetterConfig{Publisher: &redisstream.DeadLetterPublisher{Client: client}, Topic: stream + ":dlq"}})
	require.NoError(b, err)
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client, ConsumerGroup: "g", MaxInFlight: 32})
	require.NoError(b, err)
	defer sub.Close()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 2 * time.Second}, watermill.NopLogger{})
	require.NoError(b, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{Workers: 8})
	require.NoError(b, err)
	const total = 3000
	var mu sync.Mutex
	var delays []time.Duration
	done := make(chan struct{})
	good := total
	if poisonEvery > 0 {
		good = total - total/poisonEvery
	}
	_, err = events.Handle(wildcard.HandlerConfig{Name: "h", Subscriber: sub, Topic: stream, Patterns: []string{"*"},
		Middleware: stack.Middleware}, func(_ context.Context, ev arc.Event) error {
		if ev.Type == poisonType {
			return errors.New("poison")
		}
		var p struct{ At int64 }
		if err := json.Unmarshal(ev.Payload, &p); err != nil {
			return err
		}
		d := time.Since(time.Unix(0, p.At))
		mu.Lock()
		defer mu.Unlock()
		delays = append(delays, d)
		if len(delays) == good {
			close(done)
		}
		return nil
	})
	require.NoError(b, err)
	go func() { _ = events.Run(ctx) }()
	<-router.Running()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
	require.NoError(b, err)
	tick := time.NewTicker(time.Second / 1500)
	defer tick.Stop()
	for i := 0; i < total; i++ {
		<-tick.C
		typ := "order.created"
		if poisonEvery > 0 && i%poisonEvery == poisonEvery-1 {
			typ = poisonType
		}
		// The publish time, to the nanosecond (meta.timestamp has milliseconds).
		ev, err := arc.NewEvent(typ, map[string]int64{"n": int64(i), "at": time.Now().UnixNano()},
			arc.Meta{PartitionKey: strconv.Itoa(i % 64)})
		require.NoError(b, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(b, err)
		require.NoError(b, pub.Publish(stream, msg))
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		b.Fatal("the good events did not all arrive")
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(delays)
	return delays
}
