package wildcard

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/arcmill/arcmill/arc"
)

// dispatchRun publishes n events spread over `handlers` types and returns
// how long until every one was handled. wildcard: one subscription, one
// exact-pattern handler per type; plain: Watermill with one handler (and
// one topic) per type, the way one subscribes per type without arcmill.
func dispatchRun(b *testing.B, wildcard bool, handlers, n int) time.Duration {
	logger := watermill.NopLogger{}
	pubSub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: int64(n)}, logger)
	defer pubSub.Close()
	router, err := message.NewRouter(message.RouterConfig{}, logger)
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
	wr, _ := NewRouter(router, Config{})
	for h := 0; h < handlers; h++ {
		typ := fmt.Sprintf("svc.type%d", h)
		if wildcard {
			_, err = wr.Subscribe(pubSub, "events", typ, func(context.Context, arc.Event) error { count(); return nil })
		} else {
			router.AddConsumerHandler(typ, typ, pubSub, func(msg *message.Message) error {
				if _, err := arc.FromMessage(msg); err != nil {
					return err
				}
				count()
				return nil
			})
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = router.Run(ctx) }()
	<-router.Running()
	for _, h := range router.Handlers() {
		_ = h
	}
	time.Sleep(20 * time.Millisecond) // every subscription listening
	msgs := make([]*message.Message, n)
	topics := make([]string, n)
	for i := range msgs {
		typ := fmt.Sprintf("svc.type%d", i%handlers)
		ev, _ := arc.NewEvent(typ, map[string]int{"i": i}, arc.Meta{})
		msgs[i], _ = arc.ToMessage(ev)
		topics[i] = typ
		if wildcard {
			topics[i] = "events"
		}
	}
	start := time.Now()
	for i, m := range msgs {
		if err := pubSub.Publish(topics[i], m); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	elapsed := time.Since(start)
	_ = router.Close()
	return elapsed
}

// BenchmarkDispatch: events/s through the wildcard router against plain
// Watermill with one handler per topic, in one run; reports the ratio.
func BenchmarkDispatch(b *testing.B) {
	for _, handlers := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("handlers=%d", handlers), func(b *testing.B) {
			const n = 20000
			var wild, plain time.Duration
			for b.Loop() {
				wild += dispatchRun(b, true, handlers, n)
				plain += dispatchRun(b, false, handlers, n)
			}
			runs := float64(b.N)
			b.ReportMetric(n*runs/wild.Seconds(), "wildcard_events/s")
			b.ReportMetric(n*runs/plain.Seconds(), "plain_events/s")
			b.ReportMetric(plain.Seconds()/wild.Seconds(), "x_plain")
		})
	}
}
