package middleware_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// BenchmarkBreakerOnStream consumes one pre-filled Redis stream of no-op
// events through arcmill's Subscriber and the wildcard router three ways
// in one run: bare, with a closed local Breaker (its gated Subscriber and
// its Middleware), and with the Breaker's state shared through Redis. It
// reports each rate and the ratios to bare.
func BenchmarkBreakerOnStream(b *testing.B) {
	const n = 20000
	addr := testenv.RedisAddr(b)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	msgs := make([]*message.Message, n)
	for i := range msgs {
		ev, err := arc.NewEvent("order.created", map[string]any{"orderId": fmt.Sprint("o-", i), "total": 99}, arc.Meta{})
		if err != nil {
			b.Fatal(err)
		}
		if msgs[i], err = arc.ToMessage(ev); err != nil {
			b.Fatal(err)
		}
	}
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
	if err != nil {
		b.Fatal(err)
	}
	fill := func() string {
		stream := "arcmill-bench:breaker:" + uuid.NewString()
		for i := 0; i < n; i += 500 {
			if err := pub.Publish(stream, msgs[i:min(i+500, n)]...); err != nil {
				b.Fatal(err)
			}
		}
		return stream
	}
	consume := func(stream string, breaker *middleware.Breaker) time.Duration {
		subClient := redis.NewClient(&redis.Options{Addr: addr})
		defer subClient.Close()
		sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: subClient, ConsumerGroup: "bench",
			OldestID: "0"})
		if err != nil {
			b.Fatal(err)
		}
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		if err != nil {
			b.Fatal(err)
		}
		events, err := wildcard.NewRouter(router, wildcard.Config{})
		if err != nil {
			b.Fatal(err)
		}
		var handled atomic.Int64
		done := make(chan struct{})
		cfg := wildcard.HandlerConfig{Name: "h", Subscriber: sub, Topic: stream, Patterns: []string{"order.*"}}
		if breaker != nil {
			cfg.Subscriber = breaker.Subscriber(sub)
			cfg.Middleware = []message.HandlerMiddleware{breaker.Middleware}
		}
		if _, err := events.Handle(cfg, func(context.Context, arc.Event) error {
			if handled.Add(1) == n {
				close(done)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		go func() { _ = events.Run(context.Background()) }()
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			b.Fatalf("handled %d of %d", handled.Load(), n)
		}
		spent := time.Since(start)
		_ = router.Close()
		return spent
	}
	var spent [3]time.Duration
	for b.Loop() {
		for i := range spent {
			stream := fill()
			var breaker *middleware.Breaker
			switch i {
			case 1:
				breaker, err = middleware.NewBreaker(middleware.BreakerConfig{Name: "bench"})
			case 2:
				breaker, err = middleware.NewBreaker(middleware.BreakerConfig{Name: "bench-" + uuid.NewString(), Redis: client})
			}
			if err != nil {
				b.Fatal(err)
			}
			spent[i] += consume(stream, breaker)
			client.Del(context.Background(), stream)
		}
	}
	rate := func(d time.Duration) float64 { return float64(n*b.N) / d.Seconds() }
	b.ReportMetric(rate(spent[0]), "bare_events/s")
	b.ReportMetric(rate(spent[1]), "local_events/s")
	b.ReportMetric(rate(spent[2]), "shared_events/s")
	b.ReportMetric(rate(spent[1])/rate(spent[0]), "local/bare")
	b.ReportMetric(rate(spent[2])/rate(spent[0]), "shared/bare")
}
