package redisstream_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// redisAddr is the Redis the examples run against (make test starts one).
func redisAddr() string {
	if addr := os.Getenv("ARCMILL_REDIS_ADDR"); addr != "" {
		return addr
	}
	return "127.0.0.1:6379"
}

// mustEvent is a new Arc event as a message; examples panic on errors.
func mustEvent(typ string, payload any) *message.Message {
	ev, err := arc.NewEvent(typ, payload, arc.Meta{})
	if err != nil {
		panic(err)
	}
	msg, err := arc.ToMessage(ev)
	if err != nil {
		panic(err)
	}
	return msg
}

// A Subscriber in Arc's preset reads what an Arc service publishes on its
// stream; a message is acknowledged (XACK) once it is acked.
func ExampleSubscriber() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer client.Close()
	stream := "example:" + uuid.NewString() // arc:events in production
	defer client.Del(ctx, stream)

	// An Arc service's publish: XADD <stream> MAXLEN ~ 10000 * type … data ….
	client.XAdd(ctx, &redis.XAddArgs{Stream: stream, MaxLen: 10000, Approx: true, Values: []any{
		"type", "order.created",
		"data", `{"type":"order.created","payload":{"orderId":"o-1"},"meta":{"id":"evt-1","timestamp":"2026-04-28T10:00:00.000Z"}}`}})

	cfg := redisstream.ArcSubscriber(client, "billing", true) // group "billing", from the start
	sub, err := redisstream.NewSubscriber(cfg)
	if err != nil {
		panic(err)
	}
	msgs, err := sub.Subscribe(ctx, stream)
	if err != nil {
		panic(err)
	}
	m := <-msgs
	ev, err := arc.FromMessage(m)
	if err != nil {
		panic(err)
	}
	fmt.Println(ev.Type, ev.Meta.ID, string(ev.Payload))
	m.Ack()
	fmt.Println("close:", sub.Close())
	fmt.Println("pending:", client.XPending(ctx, stream, "billing").Val().Count)
	// Output:
	// order.created evt-1 {"orderId":"o-1"}
	// close: <nil>
	// pending: 0
}

// Graceful shutdown: Close stops reading at once; a handler still working
// keeps a live context for CloseTimeout, after which its context is
// cancelled with ErrClosed as the cause and Close reports what was left
// pending (it is delivered again later, never lost).
func ExampleSubscriber_Close() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer client.Close()
	stream := "example:" + uuid.NewString()
	defer client.Del(ctx, stream)
	pub, err := redisstream.NewPublisher(redisstream.ArcPublisher(client))
	if err != nil {
		panic(err)
	}
	for _, typ := range []string{"order.created", "order.paid"} {
		if err := pub.Publish(stream, mustEvent(typ, nil)); err != nil {
			panic(err)
		}
	}
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client, ConsumerGroup: "billing",
		MaxInFlight: 2, CloseTimeout: time.Second})
	if err != nil {
		panic(err)
	}
	msgs, err := sub.Subscribe(ctx, stream)
	if err != nil {
		panic(err)
	}
	finished, stuck := <-msgs, <-msgs
	closed := make(chan error)
	go func() { closed <- sub.Close() }()
	finished.Ack() // a handler that finishes within CloseTimeout: acked as usual
	<-stuck.Context().Done()
	fmt.Println("stuck handler cancelled by shutdown:", errors.Is(context.Cause(stuck.Context()), redisstream.ErrClosed))
	err = <-closed
	fmt.Println("close:", errors.Is(err, redisstream.ErrCloseTimeout), err)
	fmt.Println("pending:", client.XPending(ctx, stream, "billing").Val().Count)
	// Output:
	// stuck handler cancelled by shutdown: true
	// close: true redisstream: close timed out with messages unsettled: 1 message(s) left pending
	// pending: 1
}

// DeadLetterPublisher writes middleware.DeadLetter's dead letters in Arc's
// dead-letter layout (type, originalStream, originalId, group, data), so
// Arc's tooling and `arcmill dlq` read them.
func ExampleDeadLetterPublisher() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer client.Close()
	stream := "example:" + uuid.NewString()
	dlq := stream + ":dlq"
	defer client.Del(ctx, stream, dlq)

	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry: middleware.RetryConfig{MaxRetries: middleware.NoRetries},
		DeadLetter: middleware.DeadLetterConfig{Publisher: &redisstream.DeadLetterPublisher{Client: client},
			Topic: dlq, ConsumerGroup: "billing"},
	})
	if err != nil {
		panic(err)
	}
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client, ConsumerGroup: "billing"})
	if err != nil {
		panic(err)
	}
	router, err := message.NewRouter(message.RouterConfig{}, nil)
	if err != nil {
		panic(err)
	}
	events, err := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
	if err != nil {
		panic(err)
	}
	_, err = events.Handle(wildcard.HandlerConfig{Name: "charge", Subscriber: sub, Topic: stream,
		Patterns: []string{"billing.*"}, Middleware: stack.Middleware},
		func(context.Context, arc.Event) error { return errors.New("card declined") })
	if err != nil {
		panic(err)
	}
	go func() { _ = events.Run(ctx) }()
	defer router.Close()

	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
	if err != nil {
		panic(err)
	}
	msg := mustEvent("billing.charge", map[string]int{"amount": 99})
	if err := pub.Publish(stream, msg); err != nil {
		panic(err)
	}
	for client.XLen(ctx, dlq).Val() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	entries, err := client.XRange(ctx, dlq, "-", "+").Result()
	if err != nil {
		panic(err)
	}
	dl, err := redisstream.ReadDeadLetter(entries[0])
	if err != nil {
		panic(err)
	}
	fmt.Println(dl.Type, dl.Group, dl.OriginalStream == stream, dl.Envelope.Event.Meta.ID == msg.UUID)
	fmt.Println(dl.Envelope.Error.Message, dl.Envelope.Reason)
	// Output:
	// billing.charge billing true true
	// card declined retry_exhausted
}
