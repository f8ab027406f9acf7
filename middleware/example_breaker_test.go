package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

func ExampleBreaker() {
	logger := watermill.NopLogger{}
	pubSub := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, logger)
	defer pubSub.Close()
	router := must(message.NewRouter(message.RouterConfig{}, logger))

	// The billing subscription's kill switch: it trips when half of at
	// least 3 calls fail, and lets one probe through after 50 ms (the
	// defaults are MassTransit's: 15 % of 10 calls in a minute, then a
	// minute's cool-down). Set Redis to share it across instances.
	closed := make(chan struct{})
	breaker := must(middleware.NewBreaker(middleware.BreakerConfig{
		Name: "billing/charge", MinRequests: 3, Threshold: 0.5, CoolDown: 50 * time.Millisecond,
		SyncInterval: 10 * time.Millisecond,
		OnStateChange: func(from, to middleware.BreakerState) {
			fmt.Println("breaker:", from, "->", to)
			if to == middleware.BreakerClosed {
				close(closed)
			}
		},
	}))
	stack := must(middleware.NewStack(middleware.StackConfig{
		Retry:      middleware.RetryConfig{MaxRetries: 5, Backoff: time.Millisecond},
		DeadLetter: middleware.DeadLetterConfig{Publisher: pubSub, Topic: "arc:events:dlq"},
		Breaker:    breaker,
	}))
	events := must(wildcard.NewRouter(router, wildcard.Config{Workers: 1, OnMalformed: stack.DeadLetter.Malformed}))

	// The payment API fails its first four calls: three trip the breaker,
	// the fourth is the first probe's.
	var failures atomic.Int32
	failures.Store(4)
	must(events.Handle(wildcard.HandlerConfig{
		Name: "charge", Topic: "arc:events", Patterns: []string{"billing.*"},
		Subscriber: breaker.Subscriber(pubSub), // intake pauses while the breaker is open
		Middleware: stack.Middleware,
	}, func(ctx context.Context, ev arc.Event) error {
		if failures.Add(-1) >= 0 {
			return errors.New("payment API answers 503")
		}
		fmt.Println("charged", ev.Type)
		return nil
	}))
	go func() { check(events.Run(context.Background())) }()
	defer events.Close()
	<-events.Running()

	ev := must(arc.NewEvent("billing.charge", map[string]int{"amount": 99}, arc.Meta{}))
	check(pubSub.Publish("arc:events", must(arc.ToMessage(ev))))
	<-closed
	fmt.Println("dead letters:", stack.DeadLetter.Stats().DeadLettered, "held:", breaker.Stats().Held)
	// Output:
	// breaker: closed -> open
	// breaker: open -> half-open
	// breaker: half-open -> open
	// breaker: open -> half-open
	// charged billing.charge
	// breaker: half-open -> closed
	// dead letters: 0 held: 2
}
