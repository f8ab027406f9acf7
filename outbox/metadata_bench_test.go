package outbox

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
)

// BenchmarkMetadataCodec writes and reads the metadata of a typical Arc
// event (the relay's hot path per row): plain text, no escapes.
func BenchmarkMetadataCodec(b *testing.B) {
	ev, err := arc.NewEvent("order.created", map[string]int{"n": 1}, arc.Meta{CorrelationID: "c-1",
		CausationID: "p-1", UserID: "u-1", Source: "billing", IdempotencyKey: "k-1"})
	if err != nil {
		b.Fatal(err)
	}
	msg, err := arc.ToMessage(ev)
	if err != nil {
		b.Fatal(err)
	}
	md := msg.Metadata
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = appendMetadata(buf[:0], md)
		var got message.Metadata
		if got, err = decodeMetadata(buf); err != nil || len(got) != len(md) {
			b.Fatal(err)
		}
	}
}
