package natsjs_test

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/arcmill/arcmill/adapters/natsjs"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

// Arc's patterns map onto NATS subjects; where the server cannot match
// exactly (the colon prefix), the subscription takes every subject and
// the wildcard router filters.
func ExampleSubject() {
	for _, pattern := range []string{"order.created", "order.*", "*", "order:*"} {
		subject, exact := natsjs.Subject("arc", pattern)
		fmt.Printf("%-14s %-20s server matches: %v\n", pattern, subject, exact)
	}
	// Output:
	// order.created  arc.order.created    server matches: true
	// order.*        arc.order.>          server matches: true
	// *              arc.>                server matches: true
	// order:*        arc.>                server matches: false
}

// A SegmentMode handler's "*" is one token, as NATS's.
func ExampleSubjectMode() {
	for _, pattern := range []string{"order.*", "*.created", "order.>"} {
		subject, exact := natsjs.SubjectMode("arc", pattern, wildcard.SegmentMode)
		fmt.Printf("%-10s %-15s server matches: %v\n", pattern, subject, exact)
	}
	// Output:
	// order.*    arc.order.*     server matches: true
	// *.created  arc.*.created   server matches: true
	// order.>    arc.order.>     server matches: true
}

// Read the dead letters of a NATS dead-letter stream, oldest first.
func ExampleReadDeadLetters() {
	run := func() error {
		nc, err := nats.Connect(nats.DefaultURL)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := nc.JetStream()
		if err != nil {
			return err
		}
		dead, err := natsjs.ReadDeadLetters(js, "ARC_DEAD_LETTERS", 0, 100)
		for _, d := range dead {
			fmt.Println(d.Seq, d.Envelope.Reason, d.Envelope.Event.Type, d.Envelope.Error.Message)
		}
		return err
	}
	_ = run // needs a NATS server with JetStream: see TestSubscriber_MaxDeliverDeadLettersWithBackOff
}

// Arc handlers on NATS JetStream: one subject per event type, and each
// pattern's subscription a durable consumer filtered by the server. The
// publisher and the subscriber each get a connection of their own, one
// opened by the caller and one by the subscriber: they close it when they
// close.
func ExampleNewSubscriber() {
	run := func(ctx context.Context) error {
		pubConn, err := nats.Connect(nats.DefaultURL)
		if err != nil {
			return err
		}
		js, err := pubConn.JetStream()
		if err != nil {
			return err
		}
		if err := natsjs.EnsureStream(js, "ARC_EVENTS", natsjs.DefaultPrefix); err != nil { // holds arc.>
			return err
		}
		// Dead letters in a stream of their own (arcdlq.>): no "*" consumer sees them.
		if err := natsjs.EnsureStream(js, "ARC_DEAD_LETTERS", natsjs.DefaultDeadLetterPrefix); err != nil {
			return err
		}
		pub, err := natsjs.NewPublisher(natsjs.PublisherConfig{Conn: pubConn}) // order.created goes to arc.order.created
		if err != nil {
			return err
		}
		defer pub.Close()
		// A durable consumer per subject, created here and only bound to:
		// it outlives this process. Messages JetStream gives up on
		// (MaxDeliver) become dead letters on arcdlq.billing.
		// This one opens its own connection, with the options a production
		// server asks for (nats.UserCredentials, nats.RootCAs...).
		sub, err := natsjs.NewSubscriber(natsjs.SubscriberConfig{URL: nats.DefaultURL, Group: "billing",
			Options: []nats.Option{nats.Name("billing")}})
		if err != nil {
			return err
		}
		router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		if err != nil {
			return err
		}
		events, err := wildcard.NewRouter(router, wildcard.Config{})
		if err != nil {
			return err
		}
		subject, _ := natsjs.Subject(natsjs.DefaultPrefix, "order.*") // arc.order.>
		if _, err := events.Subscribe(sub, subject, "order.*", func(ctx context.Context, ev arc.Event) error {
			return nil
		}); err != nil {
			return err
		}
		return events.Run(ctx)
	}
	_ = run // needs a NATS server with JetStream: see TestWildcardRouterOnJetStream
}

// The subject mapping that partitions events by key, for every node's
// configuration file, and where an event of key "cust-42" lands.
func ExamplePartitionMappingConfig() {
	fmt.Print(natsjs.PartitionMappingConfig("arcin", "arcp", 4))
	p := natsjs.Partition("cust-42", 4)
	fmt.Println("cust-42 → partition", p, "read by the consumer of", natsjs.PartitionSubject("arcp", p))
	// Output:
	// mappings = {
	//   "arcin.*.>": "arcp.{{partition(4,1)}}.{{wildcard(1)}}.>"
	// }
	// cust-42 → partition 3 read by the consumer of arcp.3.>
}

// On a 3-node JetStream cluster: the streams with three replicas, the
// events partitioned by key (the mapping above in every node's
// configuration), and one consumer per partition that holds one message
// at a time, so that each key's events are handled in order.
func ExampleEnsureStreamConfig() {
	const partitions = 4
	urls := "nats://n1:4222,nats://n2:4222,nats://n3:4222"
	run := func(ctx context.Context) error {
		nc, err := nats.Connect(urls)
		if err != nil {
			return err
		}
		js, err := nc.JetStream()
		if err != nil {
			return err
		}
		for name, prefix := range map[string]string{"ARC_EVENTS": "arcp", "ARC_DEAD_LETTERS": natsjs.DefaultDeadLetterPrefix} {
			if err := natsjs.EnsureStreamConfig(js, natsjs.StreamConfig{Name: name, Prefix: prefix, Replicas: 3}); err != nil {
				return err
			}
		}
		// An event with meta.partitionKey "cust-42" goes to arcin.cust-42.<type>;
		// the servers store it on arcp.3.cust-42.<type>.
		pub, err := natsjs.NewPublisher(natsjs.PublisherConfig{Conn: nc, Prefix: "arcp", PartitionIngress: "arcin"})
		if err != nil {
			return err
		}
		defer pub.Close()
		sub, err := natsjs.NewSubscriber(natsjs.SubscriberConfig{URL: urls, Group: "billing", MaxAckPending: 1})
		if err != nil {
			return err
		}
		router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		if err != nil {
			return err
		}
		events, err := wildcard.NewRouter(router, wildcard.Config{})
		if err != nil {
			return err
		}
		for p := range partitions {
			if _, err := events.Subscribe(sub, natsjs.PartitionSubject("arcp", p), "order.*",
				func(ctx context.Context, ev arc.Event) error { return nil }); err != nil {
				return err
			}
		}
		return events.Run(ctx)
	}
	_ = run // needs a JetStream cluster: see TestCluster_PartitionsKeepOrderPerKey
}
