package middleware

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

// BenchmarkStackOverhead: a succeeding handler bare, and under the whole
// stack (Causation, DeadLetter, Retry, Timeout, Recoverer; no validation),
// in one run; reports the overhead per message (target ≤ 3 µs, BENCHMARKS.md).
func BenchmarkStackOverhead(b *testing.B) {
	ev, _ := arc.NewEvent("order.created", map[string]string{"orderId": "o-1"}, arc.Meta{UserID: "u-1"})
	msg, _ := arc.ToMessage(ev)
	ctx := wildcard.ContextWithInfo(context.Background(), wildcard.Info{Handler: "h", Pattern: "order.*", Topic: "t", Event: ev})
	msg.SetContext(ctx)
	bare := func(m *message.Message) ([]*message.Message, error) { return nil, nil }
	stack, err := NewStack(StackConfig{DeadLetter: DeadLetterConfig{Publisher: &failingPublisher{}, Topic: "dlq"},
		Timeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	full := chainOf(stack.Middleware, bare)
	const batch = 1000
	var bareNs, fullNs time.Duration
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		for range batch {
			_, _ = bare(msg)
		}
		bareNs += time.Since(start)
		start = time.Now()
		for range batch {
			if _, err := full(msg); err != nil {
				b.Fatal(err)
			}
		}
		fullNs += time.Since(start)
		n += batch
	}
	b.ReportMetric(float64(bareNs.Nanoseconds())/float64(n), "bare_ns/msg")
	b.ReportMetric(float64(fullNs.Nanoseconds())/float64(n), "stack_ns/msg")
	b.ReportMetric(float64((fullNs-bareNs).Nanoseconds())/float64(n), "overhead_ns/msg")
}
