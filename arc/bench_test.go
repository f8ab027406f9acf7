package arc

import (
	"encoding/json"
	"testing"
	"time"
)

// typicalEvent is the contract's example plus the fields a CRUD event and a
// child carry: about 400 bytes on the wire.
const typicalEvent = `{"type":"order.created","payload":{"orderId":"o-1","total":99,"items":[{"sku":"a-1","qty":2},{"sku":"b-7","qty":1}],"currency":"EUR"},"meta":{"id":"7b0f2a8e-5a1e-4c1b-9d7e-2f4b7c9d1e00","timestamp":"2026-04-28T10:00:00.000Z","schemaVersion":1,"correlationId":"req-abc","causationId":"0d2c4f3e-1b7a-4e55-8c2d-9a0b1c2d3e4f","source":"commerce","resource":"order","resourceId":"o-1","userId":"u-7","organizationId":"org-1"}}`

// stdEvent is how one would decode Arc events with encoding/json alone,
// keeping unknown meta keys: the reference the codec is measured against.
type stdEvent struct {
	Type    string                     `json:"type"`
	Payload json.RawMessage            `json:"payload,omitempty"`
	Meta    map[string]json.RawMessage `json:"meta"`
}

func arcRoundTrip(b *testing.B, data, buf []byte) []byte {
	var ev Event
	if err := Unmarshal(data, &ev); err != nil {
		b.Fatal(err)
	}
	buf, err := ev.AppendJSON(buf[:0])
	if err != nil {
		b.Fatal(err)
	}
	return buf
}

func stdRoundTrip(b *testing.B, data []byte) {
	var ev stdEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		b.Fatal(err)
	}
	var ts string
	if err := json.Unmarshal(ev.Meta["timestamp"], &ts); err != nil {
		b.Fatal(err)
	}
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		b.Fatal(err)
	}
	if _, err := json.Marshal(ev); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCodec decodes and re-encodes a typical event (target ≤ 5 µs, BENCHMARKS.md).
func BenchmarkCodec(b *testing.B) {
	data := []byte(typicalEvent)
	b.Run("arcmill", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			buf = arcRoundTrip(b, data, buf)
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			stdRoundTrip(b, data)
		}
	})
}

// BenchmarkCodecRatio times both codecs in interleaved batches of one run
// and reports each one's ns/op and how many times faster arcmill's is.
func BenchmarkCodecRatio(b *testing.B) {
	data := []byte(typicalEvent)
	buf := make([]byte, 0, 1024)
	const batch = 200
	var arcNs, stdNs time.Duration
	n := 0
	for b.Loop() {
		start := time.Now()
		for range batch {
			buf = arcRoundTrip(b, data, buf)
		}
		arcNs += time.Since(start)
		start = time.Now()
		for range batch {
			stdRoundTrip(b, data)
		}
		stdNs += time.Since(start)
		n += batch
	}
	b.ReportMetric(float64(arcNs.Nanoseconds())/float64(n), "arcmill_ns/op")
	b.ReportMetric(float64(stdNs.Nanoseconds())/float64(n), "encoding_json_ns/op")
	b.ReportMetric(float64(stdNs)/float64(arcNs), "x_faster")
}

func BenchmarkMessageMapping(b *testing.B) {
	var ev Event
	if err := Unmarshal([]byte(typicalEvent), &ev); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		msg, err := ToMessage(ev)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := FromMessage(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewEvent(b *testing.B) {
	payload := map[string]any{"orderId": "o-1", "total": 99}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewEvent("order.created", payload, Meta{UserID: "u-7"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeMessage writes a typical event's message as Arc JSON:
// AppendMessageJSON (direct, from the metadata) against FromMessage then
// AppendJSON, into a reused buffer.
func BenchmarkEncodeMessage(b *testing.B) {
	var ev Event
	if err := Unmarshal([]byte(typicalEvent), &ev); err != nil {
		b.Fatal(err)
	}
	msg, err := ToMessage(ev)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if buf, err = AppendMessageJSON(buf[:0], msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("via_event", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ev, err := FromMessage(msg)
			if err != nil {
				b.Fatal(err)
			}
			if buf, err = ev.AppendJSON(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
