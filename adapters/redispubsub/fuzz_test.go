package redispubsub

import (
	"testing"

	"github.com/arcmill/arcmill/arc"
)

// FuzzDecode: the Pub/Sub body decoders never panic; what the Arc codec
// decodes is an event that encodes back to a body decoding the same.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"type":"order.created","payload":{"a":1},"meta":{"id":"e-1","timestamp":"2026-04-28T10:00:00.000Z"}}`))
	f.Add([]byte(`{"uuid":"u","metadata":{"k":"v"},"payload":"eA=="}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _ = WatermillCodec{}.Decode(body)
		msg, err := ArcCodec{}.Decode(body)
		if err != nil {
			return
		}
		ev, err := arc.FromMessage(msg)
		if err != nil {
			t.Fatalf("decoded message is not an event: %v", err)
		}
		again, err := ArcCodec{}.Encode(msg)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		back, err := ArcCodec{}.Decode(again)
		if err != nil {
			t.Fatal(err)
		}
		ev2, err := arc.FromMessage(back)
		if err != nil || !ev.Equal(ev2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
