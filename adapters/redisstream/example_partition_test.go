package redisstream_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
)

// clusterAddrs are the Redis Cluster nodes the examples run against (make
// test starts a cluster on 7000–7005).
func clusterAddrs() []string {
	if v := os.Getenv("ARCMILL_REDIS_CLUSTER_ADDRS"); v != "" {
		return strings.Split(v, ",")
	}
	return []string{"127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"}
}

// customerEvent is an event of a customer, keyed by the customer
// (meta.partitionKey): all of one customer's events go to one partition.
func customerEvent(typ, customer string) *message.Message {
	ev, err := arc.NewEvent(typ, map[string]string{"customer": customer}, arc.Meta{PartitionKey: customer})
	if err != nil {
		panic(err)
	}
	msg, err := arc.ToMessage(ev)
	if err != nil {
		panic(err)
	}
	return msg
}

// A PartitionPublisher spreads a stream over six partitions on a Redis
// Cluster, each event in the partition of its key (meta.partitionKey, else
// the aggregate id, else resourceId, else the event id), so one
// customer's events stay in one stream, in order.
func ExamplePartitionPublisher() {
	ctx := context.Background()
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: clusterAddrs()})
	defer client.Close()
	topic := "example:" + uuid.NewString() // "arc:events" in production
	parts := redisstream.Partitions{Stream: topic, N: 6}
	defer func() {
		for i := range parts.N {
			client.Del(ctx, parts.Key(i))
		}
	}()

	pub, err := redisstream.NewPartitionPublisher(redisstream.PartitionPublisherConfig{
		Partitions: 6, Publisher: redisstream.PublisherConfig{Client: client}})
	if err != nil {
		panic(err)
	}
	defer pub.Close()
	err = pub.Publish(topic, customerEvent("order.placed", "cust-42"), customerEvent("order.paid", "cust-42"),
		customerEvent("order.placed", "cust-7"))
	if err != nil {
		panic(err)
	}
	for _, customer := range []string{"cust-42", "cust-7"} {
		i := parts.Of(customer)
		n, _ := client.XLen(ctx, parts.Key(i)).Result()
		fmt.Printf("%s → %s (slot %d): %d event(s)\n", customer, strings.TrimPrefix(parts.Key(i), topic), parts.Slot(i), n)
	}
	// Output:
	// cust-42 → :{3} (slot 1584): 2 event(s)
	// cust-7 → :{2} (slot 5649): 1 event(s)
}

// A PartitionSubscriber reads every partition of its group (or those in
// Assign) and hands the Watermill router, or the wildcard router, one
// channel; each key's events come one at a time, in order.
func ExamplePartitionSubscriber() {
	ctx := context.Background()
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: clusterAddrs()})
	defer client.Close()
	topic := "example:" + uuid.NewString()
	parts := redisstream.Partitions{Stream: topic, N: 6}
	defer func() {
		for i := range parts.N {
			client.Del(ctx, parts.Key(i), parts.DeadLetterKey(i))
		}
	}()
	pub, err := redisstream.NewPartitionPublisher(redisstream.PartitionPublisherConfig{
		Partitions: 6, Publisher: redisstream.PublisherConfig{Client: client}})
	if err != nil {
		panic(err)
	}
	if err := pub.Publish(topic, customerEvent("order.placed", "cust-42"), customerEvent("order.paid", "cust-42"),
		customerEvent("order.shipped", "cust-42")); err != nil {
		panic(err)
	}

	sub, err := redisstream.NewPartitionSubscriber(redisstream.PartitionSubscriberConfig{
		Partitions: 6,
		// This process, member 1 of 2, reads partitions 1, 3 and 5; member
		// 0 reads 0, 2 and 4. cust-42's events are in partition 3.
		Assign:      redisstream.AssignPartitions(1, 2, 6),
		DeadLetters: true, // what claims give up on goes to <partition>:dlq
		Subscriber:  redisstream.SubscriberConfig{Client: client, ConsumerGroup: "billing"},
	})
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		panic(err)
	}
	for range 3 {
		var msg *message.Message
		select {
		case msg = <-msgs:
		case <-time.After(10 * time.Second):
			fmt.Println("nothing read")
			return
		}
		fmt.Println(msg.Metadata.Get(arc.MetadataType), "from",
			strings.TrimPrefix(msg.Metadata.Get(redisstream.MetadataPartitionStream), topic))
		msg.Ack()
	}
	// Output:
	// order.placed from :{3}
	// order.paid from :{3}
	// order.shipped from :{3}
}
