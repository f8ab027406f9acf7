package middleware

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/internal/testenv"
)

// BenchmarkBreakerMiddleware: a succeeding handler under a closed breaker,
// with local state and with state shared through the test Redis (one
// Redis read per SyncInterval, successes sent once per SyncInterval), in
// one run beside the bare handler; reports the cost per message.
func BenchmarkBreakerMiddleware(b *testing.B) {
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(b)})
	defer client.Close()
	local, err := NewBreaker(BreakerConfig{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	name := "bench-" + uuid.NewString()
	shared, err := NewBreaker(BreakerConfig{Name: name, Redis: client})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Del(context.Background(), shared.shared.keys()...)
	msg := message.NewMessage("m-1", nil)
	msg.SetContext(context.Background())
	bare := func(*message.Message) ([]*message.Message, error) { return nil, nil }
	calls := []message.HandlerFunc{bare, local.Middleware(bare), shared.Middleware(bare)}
	spent := make([]time.Duration, len(calls))
	const batch = 1000
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		for i, h := range calls {
			start := time.Now()
			for range batch {
				if _, err := h(msg); err != nil {
					b.Fatal(err)
				}
			}
			spent[i] += time.Since(start)
		}
		n += batch
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(n) }
	b.ReportMetric(per(spent[0]), "bare_ns/msg")
	b.ReportMetric(per(spent[1]-spent[0]), "local_overhead_ns/msg")
	b.ReportMetric(per(spent[2]-spent[0]), "shared_overhead_ns/msg")
}
