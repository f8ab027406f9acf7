// Command redis-interop runs a Go service beside Arc (Node) services on one
// Redis: it writes and reads Arc's Redis Streams entries (type + data on
// arc:events) and Arc's Pub/Sub messages (arc-events:<type>), byte for
// byte, and shows what each side sees. See README.md for the Node side.
//
// By default it uses a stream, group and channel prefix of its own, so that
// it never touches the events of real services: its handler dead-letters
// every order.refunded it reads. Point it at Arc's names (-stream arc:events
// -channel arc-events) only on a Redis where that is harmless.
//
//	go run ./examples/redis-interop [-stream s] [-group g] [-channel prefix]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
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
	stream := flag.String("stream", defaultStream, "the stream (Arc's is "+redisstream.ArcStream+"; this one dead-letters every order.refunded on it)")
	group := flag.String("group", defaultGroup, "this service's consumer group")
	prefix := flag.String("channel", defaultPrefix, "the Pub/Sub channel prefix (Arc's is "+redispubsub.ArcPrefix+")")
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

// The example's own names, so that a run touches no real service's events.
const (
	defaultStream = "arcmill-example:interop:events"
	defaultGroup  = "arcmill-example-billing"
	defaultPrefix = "arcmill-example-interop"
)

// run is the whole demonstration; main_test.go runs it against real Redis,
// twice. Whatever it waits for is this run's own event (by id), so that a
// re-run, which finds earlier runs' entries, dead letters and an existing
// group, does the same thing.
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
	received := make(chan arc.Event, 16)
	if _, err := events.Handle(wildcard.HandlerConfig{Name: "billing", Subscriber: sub, Topic: stream,
		Patterns: []string{"order.*"}, Middleware: stack.Middleware},
		func(_ context.Context, ev arc.Event) error {
			if ev.Type == "order.refunded" {
				return errors.New("refunds are not supported yet") // retried, then dead-lettered
			}
			select {
			case received <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}); err != nil {
		return err
	}
	go func() { _ = events.Run(ctx) }()
	<-router.Running()
	defer router.Close()
	// Publish only once the group exists (created at "$": new entries only,
	// as Arc creates groups; a re-run finds it where the last run left it).
	if err := waitGroup(ctx, client, stream, group); err != nil {
		return err
	}
	dlqTip, err := lastID(ctx, client, stream+":dlq")
	if err != nil {
		return err
	}

	// An Arc service publishes: exactly the XADD of Arc's RedisStreamTransport.
	arcID := watermill.NewUUID()
	arcJSON := `{"type":"order.created","payload":{"orderId":"o-1","total":99},"meta":{"id":"` + arcID +
		`","timestamp":"2026-04-28T10:00:00.000Z","correlationId":"req-abc","userId":"u-7","organizationId":"org-1"}}`
	if err := client.Do(ctx, "XADD", stream, "MAXLEN", "~", redisstream.ArcMaxLen, "*",
		"type", "order.created", "data", arcJSON).Err(); err != nil {
		return err
	}
	fmt.Fprintf(out, "Arc wrote to %s:\n  type=order.created data=%s\n", stream, arcJSON)
	got, err := waitEvent(ctx, received, arcID)
	if err != nil {
		return fmt.Errorf("the Go handler did not receive Arc's entry: %w", err)
	}
	fmt.Fprintf(out, "Go handler on order.* got: %s id=%s correlation=%s user=%s\n\n",
		got.Type, got.Meta.ID, got.Meta.CorrelationID, got.Meta.UserID)

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
	if _, err := waitEvent(ctx, received, ev.Meta.ID); err != nil { // our own group sees it too
		return fmt.Errorf("the Go handler did not receive its own event: %w", err)
	}

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
	if err := waitDeadLetter(ctx, client, stream+":dlq", dlqTip, refund.Meta.ID); err != nil {
		return err
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

// waitGroup waits until group exists on stream.
func waitGroup(ctx context.Context, client *redis.Client, stream, group string) error {
	for {
		groups, err := client.XInfoGroups(ctx, stream).Result()
		if err != nil && !strings.Contains(err.Error(), "no such key") {
			return fmt.Errorf("reading the groups of %s: %w", stream, err)
		}
		for _, g := range groups {
			if g.Name == group {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("group %s was not created on %s: %w", group, stream, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitEvent returns the handled event with id, passing over others (a
// re-run may first be handed what an interrupted run left pending).
func waitEvent(ctx context.Context, received <-chan arc.Event, id string) (arc.Event, error) {
	for {
		select {
		case ev := <-received:
			if ev.Meta.ID == id {
				return ev, nil
			}
		case <-ctx.Done():
			return arc.Event{}, ctx.Err()
		}
	}
}

// lastID is the id of a stream's last entry ("0-0" when there is none).
func lastID(ctx context.Context, client *redis.Client, stream string) (string, error) {
	last, err := client.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", stream, err)
	}
	if len(last) == 0 {
		return "0-0", nil
	}
	return last[0].ID, nil
}

// waitDeadLetter waits for the dead letter of event id on dlq, after the
// entry `after`.
func waitDeadLetter(ctx context.Context, client *redis.Client, dlq, after, id string) error {
	for {
		entries, err := redisstream.RangeEntries(ctx, client, dlq, "("+after, "+", 100)
		if err != nil {
			return fmt.Errorf("reading %s: %w", dlq, err)
		}
		for _, e := range entries {
			after = e.ID
			if dl, err := redisstream.ReadDeadLetterEntry(e); err == nil && dl.Envelope.Event.Meta.ID == id {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the failing event was not dead-lettered: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
