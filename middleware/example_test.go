package middleware_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// must stops an example at an error it does not expect.
func must[V any](v V, err error) V {
	check(err)
	return v
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}

func ExampleNewStack() {
	logger := watermill.NopLogger{}
	pubSub := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, logger)
	defer pubSub.Close()
	router := must(message.NewRouter(message.RouterConfig{}, logger))

	stack := must(middleware.NewStack(middleware.StackConfig{
		Retry:      middleware.RetryConfig{MaxRetries: 2, Backoff: time.Millisecond},
		DeadLetter: middleware.DeadLetterConfig{Publisher: pubSub, Topic: "arc:events:dlq"},
	}))
	events := must(wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed}))
	must(events.Handle(wildcard.HandlerConfig{
		Name: "charge", Subscriber: pubSub, Topic: "arc:events", Patterns: []string{"billing.*"},
		Middleware: stack.Middleware,
	}, func(ctx context.Context, ev arc.Event) error {
		return errors.New("payment provider down")
	}))
	go func() { check(events.Run(context.Background())) }()
	defer events.Close()

	ev := must(arc.NewEvent("billing.charge", map[string]int{"amount": 99}, arc.Meta{}))
	check(pubSub.Publish("arc:events", must(arc.ToMessage(ev))))

	dlq := must(pubSub.Subscribe(context.Background(), "arc:events:dlq"))
	dead := <-dlq
	dead.Ack()
	var dl middleware.DeadLetteredEvent
	check(json.Unmarshal(dead.Payload, &dl))
	fmt.Println(dl.Reason, dl.Attempts, dl.HandlerName, dl.Pattern, dl.Error.Message)
	// Output:
	// retry_exhausted 3 charge billing.* payment provider down
}

func ExampleChild() {
	parent := must(arc.NewEvent("order.created", nil, arc.Meta{ID: "evt-1", UserID: "u-7"}))
	in := must(arc.ToMessage(parent))

	// Inside a handler wrapped by Causation, the context carries the parent.
	handler := middleware.Causation(func(msg *message.Message) ([]*message.Message, error) {
		child, err := middleware.Child(msg.Context(), "payment.requested", map[string]int{"amount": 99}, arc.Meta{})
		if err != nil {
			return nil, err
		}
		fmt.Println(child.Metadata.Get(arc.MetadataCausationID), child.Metadata.Get(arc.MetadataCorrelationID),
			child.Metadata.Get(arc.MetadataUserID))
		return nil, nil
	})
	must(handler(in))
	// Output:
	// evt-1 evt-1 u-7
}
