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

type dispatchMode int

const (
	viaWildcard    dispatchMode = iota // one subscription, one exact-pattern handler per type
	plainPerTopic                      // Watermill, one handler and one topic per type
	plainOneStream                     // Watermill, every handler on one topic, filtering by type
)

// dispatchRun publishes n events spread over `handlers` types and returns
// how long until every one was handled.
func dispatchRun(b *testing.B, mode dispatchMode, handlers, n int) time.Duration {
	wildcard := mode == viaWildcard
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
	wr, err := NewRouter(router, Config{})
	if err != nil {
		b.Fatal(err)
	}
	for h := 0; h < handlers; h++ {
		typ := fmt.Sprintf("svc.type%d", h)
		if wildcard {
			_, err = wr.Subscribe(pubSub, "events", typ, func(context.Context, arc.Event) error { count(); return nil })
		} else {
			subTopic := typ
			if mode == plainOneStream {
				subTopic = "events"
			}
			router.AddConsumerHandler(typ, subTopic, pubSub, func(msg *message.Message) error {
				ev, err := arc.FromMessage(msg)
				if err != nil {
					return err
				}
				if ev.Type == typ {
					count()
				}
				return nil
			})
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = wr.Run(ctx) }() // runs the router; Close ends it
	<-wr.Running()                  // every subscription listening
	msgs := make([]*message.Message, n)
	topics := make([]string, n)
	for i := range msgs {
		typ := fmt.Sprintf("svc.type%d", i%handlers)
		ev, err := arc.NewEvent(typ, map[string]int{"i": i}, arc.Meta{})
		if err != nil {
			b.Fatal(err)
		}
		if msgs[i], err = arc.ToMessage(ev); err != nil {
			b.Fatal(err)
		}
		topics[i] = typ
		if mode != plainPerTopic {
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
	if err := router.Close(); err != nil {
		b.Fatal(err)
	}
	return elapsed
}

// BenchmarkDispatch: events/s through the wildcard router against plain
// Watermill with one handler per topic, and with every handler on one
// stream filtering by type, in one run; reports the ratios.
func BenchmarkDispatch(b *testing.B) {
	for _, handlers := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("handlers=%d", handlers), func(b *testing.B) {
			const n = 20000
			var wild, perTopic, oneStream time.Duration
			for b.Loop() {
				wild += dispatchRun(b, viaWildcard, handlers, n)
				perTopic += dispatchRun(b, plainPerTopic, handlers, n)
				oneStream += dispatchRun(b, plainOneStream, handlers, n)
			}
			runs := float64(b.N)
			b.ReportMetric(n*runs/wild.Seconds(), "wildcard_events/s")
			b.ReportMetric(n*runs/perTopic.Seconds(), "per_topic_events/s")
			b.ReportMetric(n*runs/oneStream.Seconds(), "one_stream_events/s")
			b.ReportMetric(perTopic.Seconds()/wild.Seconds(), "x_per_topic")
			b.ReportMetric(oneStream.Seconds()/wild.Seconds(), "x_one_stream")
		})
	}
}

// BenchmarkDispatchOverhead: the dispatcher's own cost per event, without a
// transport, against decoding the event and calling the handler directly.
func BenchmarkDispatchOverhead(b *testing.B) {
	ev, _ := arc.NewEvent("order.created", map[string]string{"orderId": "o-1"}, arc.Meta{UserID: "u-1"})
	msg, _ := arc.ToMessage(ev)
	noop := func(context.Context, arc.Event) error { return nil }
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e, err := arc.FromMessage(msg)
			if err != nil {
				b.Fatal(err)
			}
			_ = noop(msg.Context(), e)
		}
	})
	for _, handlers := range []int{1, 3} {
		b.Run(fmt.Sprintf("wildcard/matching=%d", handlers), func(b *testing.B) {
			router, _ := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
			wr, _ := NewRouter(router, Config{})
			pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
			defer pubSub.Close()
			for i := 0; i < handlers; i++ {
				_, _ = wr.Subscribe(pubSub, "t", "order.*", noop)
			}
			for i := 0; i < 1000; i++ { // patterns that do not match
				_, _ = wr.Subscribe(pubSub, "t", fmt.Sprintf("svc%d.*", i), noop)
			}
			src := wr.sources[sourceKey{pubSub, "t"}]
			ctx := msg.Context()
			b.ReportAllocs()
			for b.Loop() {
				// A lone handler gets the message itself, its context
				// wrapped: as a new delivery would, start from the
				// delivery's context, or the chain grows with every
				// iteration and each lookup walks it.
				msg.SetContext(ctx)
				if err := src.dispatch(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
