package redisstream

import (
	"encoding/json"
	"testing"

	"github.com/redis/go-redis/v9"
)

// FuzzReadDeadLetter: any dead-letter entry (Arc's, ours, or foreign bytes)
// is read or refused with an error, never a panic; what is read survives a
// round trip through the envelope's JSON.
func FuzzReadDeadLetter(f *testing.F) {
	f.Add("order.created", `{"event":{"type":"order.created","payload":{"a":1},"meta":{"id":"e-1","timestamp":"2026-01-01T00:00:00.000Z"}},"error":{"message":"boom"},"attempts":3,"reason":"retry_exhausted"}`)
	f.Add("order.created", `{"event":{"type":"order.created","payload":null,"meta":{"id":"e-2","timestamp":"2026-01-01T00:00:00.000Z"}},"error":{"message":"x","code":"E1","stack":"s"},"attempts":5,"firstFailedAt":"2026-01-01T00:00:00.000Z","lastFailedAt":"2026-01-01T00:00:01.000Z"}`)
	f.Add("<unknown>", `{"event":{"type":"<unknown>","payload":null,"meta":{"id":"m"}},"error":{"message":"malformed"},"attempts":1,"reason":"malformed","raw":{"uuid":"m","payload":"AAE="}}`)
	f.Add("", "")
	f.Add("x", "{not json")
	f.Add("x", `{"event":{"type":1}}`)
	f.Fuzz(func(t *testing.T, typ, data string) {
		e := redis.XMessage{ID: "1-0", Values: map[string]any{FieldType: typ, FieldData: data,
			FieldOriginalStream: "s", FieldOriginalID: "0-1", FieldGroup: "g"}}
		dl, err := ReadDeadLetter(e)
		if err != nil {
			return
		}
		again, err := json.Marshal(dl.Envelope)
		if err != nil {
			return // a read envelope may hold an event arc cannot write (an odd meta key, say)
		}
		e.Values[FieldData] = string(again)
		dl2, err := ReadDeadLetter(e)
		if err != nil {
			t.Fatalf("re-reading %s: %v", again, err)
		}
		if dl2.Envelope.Event.Meta.ID != dl.Envelope.Event.Meta.ID || dl2.Envelope.Attempts != dl.Envelope.Attempts {
			t.Fatalf("round trip changed the envelope: %+v → %+v", dl.Envelope, dl2.Envelope)
		}
	})
}
