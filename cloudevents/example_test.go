package cloudevents_test

import (
	"fmt"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/cloudevents"
)

// An Arc event as a CloudEvent in binary mode (for a Watermill publisher
// on Kafka, AMQP or NATS) and back.
func ExampleCodec_ToBinaryMessage() {
	var codec cloudevents.Codec
	ev, _ := arc.NewEvent("order.created", map[string]string{"orderId": "o-1"},
		arc.Meta{Source: "shop", CorrelationID: "req-7", PartitionKey: "o-1"})
	msg, _ := codec.ToBinaryMessage(ev)
	fmt.Println(msg.Metadata.Get("ce_type"), msg.Metadata.Get("ce_source"), msg.Metadata.Get("ce_correlationid"),
		msg.Metadata.Get("ce_partitionkey"), string(msg.Payload))

	back, _ := codec.FromBinaryMessage(msg)
	fmt.Println(back.Equal(ev))
	// Output:
	// order.created shop req-7 o-1 {"orderId":"o-1"}
	// true
}
