// Command redis-interop runs a Go service beside Arc (Node) services on one
// Redis: it writes and reads Arc's Redis Streams entries (type + data on
// arc:events) and Arc's Pub/Sub messages (arc-events:<type>), byte for
// byte, and shows what each side sees. See README.md for the Node side.
//
//	go run ./examples/redis-interop [-stream arc:events] [-group go-billing]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/adapters/redispubsub"
	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

func main() {
	addr := flag.String("redis", envOr("ARCMILL_REDIS_ADDR", "127.0.0.1:6379"), "Redis address")
	stream := flag.String("stream", redisstream.ArcStream, "the stream Arc services use")
	group := flag.String("group", "go-billing", "this service's consumer group")
	prefix := flag.String("channel", redispubsub.ArcPrefix, "the Pub/Sub channel prefix Arc services use")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout, *addr, *stream, *group, *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "redis-interop:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// run is the whole demonstration; main_test.go runs it against real Redis.
func run(ctx context.Context, out io.Writer, addr, stream, group, prefix string) error {
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("Redis does not answer at %s (%w): start it, or pass -redis host:port", addr, err)
	}
	logger := watermill.NopLogger{}

	// --- Redis Streams: a consumer group of its own on Arc's stream. ---
	subCfg := redisstream.ArcSubscriber(client, group, false)
	subCfg.DeadLetterStream = stream + ":dlq"
	sub, err := redisstream.NewSubscriber(subCfg)
	if err != nil {
		return err
	}
	defer sub.Close()
	pubCfg := redisstream.ArcPublisher(client)
	pubCfg.MaxLens = map[string]int64{stream: redisstream.ArcMaxLen}
	pub, err := redisstream.NewPublisher(pubCfg)
	if err != nil {
		return err
	}
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry: middleware.RetryConfig{MaxRetries: 1, Backoff: 10 * time.Millisecond},
		DeadLetter: middleware.DeadLetterConfig{Publisher: &redisstream.DeadLetterPublisher{Client: client},
			Topic: stream + ":dlq", ConsumerGroup: group},
	})
	if err != nil {
		return err
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, logger)
	if err != nil {
		return err
	}
	events, err := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
	if err != nil {
		return err
	}
	received := make(chan arc.Event, 4)
	if _, err := events.Handle(wildcard.HandlerConfig{Name: "billing", Subscriber: sub, Topic: stream,
		Patterns: []string{"order.*"}, Middleware: stack.Middleware},
		func(_ context.Context, ev arc.Event) error {
			if ev.Type == "order.refunded" {
				return errors.New("refunds are not supported yet") // retried, then dead-lettered
			}
			received <- ev
			return nil
		}); err != nil {
		return err
	}
	go func() { _ = events.Run(ctx) }()
	<-router.Running()
	defer router.Close()
	time.Sleep(100 * time.Millisecond) // the group exists (created at "$": new entries only, as Arc)

	// An Arc service publishes: exactly the XADD of Arc's RedisStreamTransport.
	arcJSON := `{"type":"order.created","payload":{"orderId":"o-1","total":99},"meta":{"id":"` + watermill.NewUUID() +
		`","timestamp":"2026-04-28T10:00:00.000Z","correlationId":"req-abc","userId":"u-7","organizationId":"org-1"}}`
	if err := client.Do(ctx, "XADD", stream, "MAXLEN", "~", redisstream.ArcMaxLen, "*",
		"type", "order.created", "data", arcJSON).Err(); err != nil {
		return err
	}
	fmt.Fprintf(out, "Arc wrote to %s:\n  type=order.created data=%s\n", stream, arcJSON)
	select {
	case ev := <-received:
		fmt.Fprintf(out, "Go handler on order.* got: %s id=%s correlation=%s user=%s\n\n",
			ev.Type, ev.Meta.ID, ev.Meta.CorrelationID, ev.Meta.UserID)
	case <-ctx.Done():
		return errors.New("the Go handler did not receive Arc's entry")
	}

	// The Go service publishes: the entry an Arc consumer reads.
	ev, err := arc.NewEvent("order.shipped", map[string]string{"orderId": "o-1", "carrier": "DHL"},
		arc.Meta{CorrelationID: "req-abc", Source: "go-billing"})
	if err != nil {
		return err
	}
	msg, err := arc.ToMessage(ev)
	if err != nil {
		return err
	}
	if err := pub.Publish(stream, msg); err != nil {
		return err
	}
	last, err := client.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Go wrote to %s (what Arc's consumers read):\n  type=%v data=%v\n\n",
		stream, last[0].Values["type"], last[0].Values["data"])
	<-received // our own group sees it too

	// An event the Go handler cannot take: retried, then dead-lettered in
	// Arc's layout, where "arcmill dlq list" and Arc's tooling read it.
	refund, err := arc.NewEvent("order.refunded", map[string]string{"orderId": "o-1"}, arc.Meta{CorrelationID: "req-abc"})
	if err != nil {
		return err
	}
	if msg, err := arc.ToMessage(refund); err != nil {
		return err
	} else if err := pub.Publish(stream, msg); err != nil {
		return err
	}
	for client.XLen(ctx, stream+":dlq").Val() == 0 {
		select {
		case <-ctx.Done():
			return errors.New("the failing event was not dead-lettered")
		case <-time.After(5 * time.Millisecond):
		}
	}
	fmt.Fprintf(out, "The Go handler failed on order.refunded (id=%s): retried, then dead-lettered to %s:dlq\n"+
		"  see it with: arcmill dlq list --stream %s:dlq\n\n", refund.Meta.ID, stream, stream)

	// --- Pub/Sub: Arc's channels. ---
	ps, err := redispubsub.New(redispubsub.Config{Client: client})
	if err != nil {
		return err
	}
	defer ps.Close()
	orders, err := ps.Subscribe(ctx, prefix+":order.*") // PSUBSCRIBE, as Arc does for a glob
	if err != nil {
		return err
	}
	if err := client.Publish(ctx, prefix+":order.created", arcJSON).Err(); err != nil {
		return err
	}
	select {
	case m := <-orders:
		m.Ack()
		got, err := arc.FromMessage(m)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "Arc published on %s; Go got %s id=%s\n", m.Metadata.Get(redispubsub.MetadataChannel), got.Type, got.Meta.ID)
	case <-ctx.Done():
		return errors.New("no Pub/Sub message")
	}
	counts, err := ps.PublishCount(prefix, msg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Go published %s on %s:%s to %d subscriber(s) (Pub/Sub keeps nothing: at most once)\n",
		ev.Type, prefix, ev.Type, counts[0])
	select {
	case m := <-orders:
		m.Ack()
	case <-ctx.Done():
		return errors.New("our own Pub/Sub message did not arrive")
	}
	return nil
}
