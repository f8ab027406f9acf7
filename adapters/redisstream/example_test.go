package redisstream_test

import (
	"fmt"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
)

func ExampleMarshaller() {
	// An entry as Arc's RedisStreamTransport writes it.
	entry := map[string]any{
		"type": "order.created",
		"data": `{"type":"order.created","payload":{"orderId":"o-1"},"meta":{"id":"evt-1","timestamp":"2026-04-28T10:00:00.000Z"}}`,
	}
	msg, err := redisstream.Marshaller{}.Unmarshal(entry)
	if err != nil {
		panic(err)
	}
	ev, err := arc.FromMessage(msg)
	if err != nil {
		panic(err)
	}
	fmt.Println(ev.Type, ev.Meta.ID, string(ev.Payload))

	// A corrupt one does not end the subscription: it is flagged.
	bad, err := redisstream.Marshaller{}.Unmarshal(map[string]any{"type": "order.created"})
	fmt.Println(err, bad.Metadata.Get(arc.MetadataMalformed))

	// And what we write is Arc's layout.
	fields, err := redisstream.Marshaller{}.Marshal("arc:events", msg)
	if err != nil {
		panic(err)
	}
	fmt.Println(fields["type"], fields["data"] == entry["data"])
	// Output:
	// order.created evt-1 {"orderId":"o-1"}
	// <nil> stream entry has no data field
	// order.created true
}
