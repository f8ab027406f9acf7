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

func ExampleNewStack() {
	logger := watermill.NopLogger{}
	pubSub := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, logger)
	defer pubSub.Close()
	router, _ := message.NewRouter(message.RouterConfig{}, logger)

	stack, _ := middleware.NewStack(middleware.StackConfig{
		Retry:      middleware.RetryConfig{MaxRetries: 2, Backoff: time.Millisecond},
		DeadLetter: middleware.DeadLetterConfig{Publisher: pubSub, Topic: "arc:events:dlq"},
	})
	events, _ := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
	_, _ = events.Handle(wildcard.HandlerConfig{
		Name: "charge", Subscriber: pubSub, Topic: "arc:events", Patterns: []string{"billing.*"},
		Middleware: stack.Middleware,
	}, func(ctx context.Context, ev arc.Event) error {
		return errors.New("payment provider down")
	})
	go func() { _ = events.Run(context.Background()) }()
	defer router.Close()

	ev, _ := arc.NewEvent("billing.charge", map[string]int{"amount": 99}, arc.Meta{})
	msg, _ := arc.ToMessage(ev)
	_ = pubSub.Publish("arc:events", msg)

	dlq, _ := pubSub.Subscribe(context.Background(), "arc:events:dlq")
	dead := <-dlq
	dead.Ack()
	var dl middleware.DeadLetteredEvent
	_ = json.Unmarshal(dead.Payload, &dl)
	fmt.Println(dl.Reason, dl.Attempts, dl.HandlerName, dl.Pattern, dl.Error.Message)
	// Output:
	// retry_exhausted 3 charge billing.* payment provider down
}

func ExampleChild() {
	parent, _ := arc.NewEvent("order.created", nil, arc.Meta{ID: "evt-1", UserID: "u-7"})
	in, _ := arc.ToMessage(parent)

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
	_, _ = handler(in)
	// Output:
	// evt-1 evt-1 u-7
}
