package redispubsub_test

import (
	"context"
	"fmt"
	"os"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/adapters/redispubsub"
	"github.com/arcmill/arcmill/arc"
)

// redisAddr is the Redis the examples run against (make test starts one).
func redisAddr() string {
	if addr := os.Getenv("ARCMILL_REDIS_ADDR"); addr != "" {
		return addr
	}
	return "127.0.0.1:6379"
}

// Arc's Pub/Sub transport in both directions: a prefix subscription
// (PSUBSCRIBE <prefix>:order.*) receives what is published on
// <prefix>:<type>, in the body an Arc service writes. Subscribe returns once
// Redis confirmed the subscription, so the publish that follows is not
// missed; Pub/Sub keeps nothing for a subscriber that is not there.
func ExampleNew() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer client.Close()
	prefix := "example-" + uuid.NewString() // redispubsub.ArcPrefix ("arc-events") in production

	ps, err := redispubsub.New(redispubsub.Config{Client: client})
	if err != nil {
		panic(err)
	}
	msgs, err := ps.Subscribe(ctx, prefix+":order.*")
	if err != nil {
		panic(err)
	}

	ev, err := arc.NewEvent("order.created", map[string]string{"orderId": "o-1"}, arc.Meta{ID: "evt-1"})
	if err != nil {
		panic(err)
	}
	msg, err := arc.ToMessage(ev)
	if err != nil {
		panic(err)
	}
	counts, err := ps.PublishCount(prefix, msg) // PUBLISH <prefix>:order.created
	if err != nil {
		panic(err)
	}
	fmt.Println("received by", counts[0], "subscriber")

	m := <-msgs
	got, err := arc.FromMessage(m)
	if err != nil {
		panic(err)
	}
	fmt.Println(got.Type, got.Meta.ID, string(got.Payload))
	m.Ack()
	fmt.Println("close:", ps.Close())
	// Output:
	// received by 1 subscriber
	// order.created evt-1 {"orderId":"o-1"}
	// close: <nil>
}

// What Subscribe sends for a topic. Only "*", ".*" and ":*" topics are
// prefixes, with the glob characters before them escaped; any other topic
// is one exact channel, so a type such as "order[1]" gets its own events.
// Config.RedisGlob reads topics as Arc's transport does: a raw glob.
func ExampleSubscription() {
	for _, topic := range []string{"arc-events:order.*", "arc-events:*", "arc-events:order[1]", "arc-events:a[b.*"} {
		pattern, channel := redispubsub.Subscription(topic, false)
		fmt.Println(topic, "->", pattern, channel)
	}
	pattern, channel := redispubsub.Subscription("arc-events:order[1]", true)
	fmt.Println("RedisGlob:", pattern, channel)
	// Output:
	// arc-events:order.* -> true arc-events:order.*
	// arc-events:* -> true arc-events:*
	// arc-events:order[1] -> false arc-events:order[1]
	// arc-events:a[b.* -> true arc-events:a\[b.*
	// RedisGlob: true arc-events:order[1]
}
