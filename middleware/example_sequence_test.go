package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// exampleRedis is the Redis the examples run against (make test starts
// one).
func exampleRedis() string {
	if addr := os.Getenv("ARCMILL_REDIS_ADDR"); addr != "" {
		return addr
	}
	return "127.0.0.1:6379"
}

// waitUntil polls cond for up to a minute; examples have no testing.T.
func waitUntil(cond func() bool) {
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			panic("timed out")
		}
	}
}

// Sequenced dead letters: order.created of o-1 fails and is dead-lettered,
// so o-1's later events park instead of running before it; redriving the
// dead letter runs it, then the parked events, in order.
func ExampleSequencer() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: exampleRedis()})
	defer client.Close()
	stream := "example:" + uuid.NewString() // arc:events in production
	prefix := stream + ":seq:"
	defer func() {
		keys, _ := client.Keys(ctx, prefix+"*").Result()
		client.Del(ctx, append(keys, stream, stream+":dlq")...)
	}()

	stack := must(middleware.NewStack(middleware.StackConfig{
		Retry: middleware.RetryConfig{MaxRetries: middleware.NoRetries},
		DeadLetter: middleware.DeadLetterConfig{Publisher: &redisstream.DeadLetterPublisher{Client: client},
			Topic: stream + ":dlq", ConsumerGroup: "shipping"},
		// The handler "ship" is sequenced by partition key (else aggregate id).
		Sequence: &middleware.SequenceConfig{Handler: "ship", Prefix: prefix},
	}))
	defer stack.Close()
	router := must(message.NewRouter(message.RouterConfig{}, watermill.NopLogger{}))
	events := must(wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed}))
	sub := must(redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client, ConsumerGroup: "shipping"}))
	var mu sync.Mutex
	broken, ran := true, []string{}
	must(events.Handle(wildcard.HandlerConfig{Name: "ship", Subscriber: sub, Topic: stream,
		Patterns: []string{"order.*"}, Middleware: stack.Middleware},
		func(ctx context.Context, ev arc.Event) error {
			mu.Lock()
			defer mu.Unlock()
			if broken && ev.Type == "order.created" {
				return fmt.Errorf("%w: warehouse rejected it", arc.ErrUnrecoverable)
			}
			ran = append(ran, ev.Type)
			return nil
		}))
	go func() { _ = events.Run(ctx) }()
	<-router.Running()
	defer router.Close()

	pub := must(redisstream.NewPublisher(redisstream.PublisherConfig{Client: client}))
	for _, typ := range []string{"order.created", "order.paid", "order.shipped"} {
		ev := must(arc.NewEvent(typ, nil, arc.Meta{Aggregate: &arc.Aggregate{Type: "order", ID: "o-1"}}))
		check(pub.Publish(stream, must(arc.ToMessage(ev))))
	}

	admin := middleware.SequenceAdmin{Client: client, Prefix: prefix}
	var seqs []middleware.ParkedSequence
	waitUntil(func() bool {
		seqs = must(admin.List(ctx, middleware.ParkedFilter{}))
		return len(seqs) == 1 && seqs[0].Parked == 2
	})
	fmt.Printf("%s parked for %s: %d events behind %s (%s)\n", seqs[0].Key, seqs[0].Handler, seqs[0].Parked,
		seqs[0].Head.Type, seqs[0].Head.Error)

	// Fix the cause, then redrive the dead letter (arcmill dlq redrive).
	mu.Lock()
	broken = false
	mu.Unlock()
	dls := must(client.XRange(ctx, stream+":dlq", "-", "+").Result())
	dl, err := redisstream.ReadDeadLetter(dls[0])
	fields, ok := redisstream.RedriveFields(dl, err)
	if !ok {
		panic(errors.New("not redrivable"))
	}
	must(redisstream.RedriveEntry(ctx, client, stream+":dlq", dls[0].ID, stream, 0, fields))
	waitUntil(func() bool { mu.Lock(); defer mu.Unlock(); return len(ran) == 3 })
	fmt.Println(ran)
	// Output:
	// o-1 parked for ship: 2 events behind order.created (arc: unrecoverable: warehouse rejected it)
	// [order.created order.paid order.shipped]
}
