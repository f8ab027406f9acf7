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
	msg, _ := redisstream.Marshaller{}.Unmarshal(entry)
	ev, _ := arc.FromMessage(msg)
	fmt.Println(ev.Type, ev.Meta.ID, string(ev.Payload))

	// A corrupt one does not end the subscription: it is flagged.
	bad, err := redisstream.Marshaller{}.Unmarshal(map[string]any{"type": "order.created"})
	fmt.Println(err, bad.Metadata.Get(arc.MetadataMalformed))

	// And what we write is Arc's layout.
	fields, _ := redisstream.Marshaller{}.Marshal("arc:events", msg)
	fmt.Println(fields["type"], fields["data"] == entry["data"])
	// Output:
	// order.created evt-1 {"orderId":"o-1"}
	// <nil> stream entry has no data field
	// order.created true
}
