package redisstream

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// A typical event body, byte for byte as Arc's JSON.stringify writes it and its stream
// entry holds it in data.
const arcData = `{"type":"order.created","payload":{"orderId":"o-1","total":99},"meta":{"id":"7b0f2a8e-5a1e-4c1b-9d7e-2f4b7c9d1e00","timestamp":"2026-04-28T10:00:00.000Z","correlationId":"req-abc","userId":"u-7","organizationId":"org-1"}}`

func TestMarshalWritesArcsEntry(t *testing.T) {
	var ev arc.Event
	require.NoError(t, arc.Unmarshal([]byte(arcData), &ev))
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	fields, err := Marshaller{}.Marshal("arc:events", msg)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"type": "order.created", "data": arcData}, fields)

	fields, err = Marshaller{WatermillUUID: true}.Marshal("arc:events", msg)
	require.NoError(t, err)
	assert.Equal(t, ev.Meta.ID, fields[wredis.UUIDHeaderKey])

	_, err = Marshaller{}.Marshal("arc:events", message.NewMessage("1", []byte("x")))
	assert.ErrorIs(t, err, arc.ErrMalformedEvent, "a message that is not an Arc event is refused")
}

func TestUnmarshalReadsArcsEntry(t *testing.T) {
	msg, err := Marshaller{}.Unmarshal(map[string]any{"type": "order.created", "data": arcData, "extra": "ignored"})
	require.NoError(t, err)
	ev, err := arc.FromMessage(msg)
	require.NoError(t, err)
	out, err := arc.Marshal(ev)
	require.NoError(t, err)
	assert.Equal(t, arcData, string(out))
	assert.Equal(t, ev.Meta.ID, msg.UUID)
}

// Arc's malformed cases (its RedisStreamTransport's processEntry): Arc acks and
// drops them; we flag them, never fail the read, and keep the fields.
func TestUnmarshalIsTotal(t *testing.T) {
	cases := map[string]map[string]any{
		"no type":          {"data": arcData},
		"empty type":       {"type": "", "data": arcData},
		"no data":          {"type": "order.created"},
		"empty data":       {"type": "order.created", "data": ""},
		"not JSON":         {"type": "t", "data": "{nope"},
		"not an object":    {"type": "t", "data": `[1]`},
		"inner type":       {"type": "t", "data": `{"type":5,"meta":{"id":"1"}}`},
		"id zero":          {"type": "t", "data": `{"type":"t","meta":{"id":0}}`},
		"id empty":         {"type": "t", "data": `{"type":"t","meta":{"id":""}}`},
		"id null":          {"type": "t", "data": `{"type":"t","meta":{"id":null}}`},
		"bom":              {"type": "t", "data": "\ufeff" + arcData},
		"trailing garbage": {"type": "t", "data": arcData + "x"},
		"watermill layout": {"_watermill_message_uuid": "u", "payload": "x", "metadata": ""},
		"non-string field": {"type": 7, "data": arcData},
	}
	for name, fields := range cases {
		t.Run(name, func(t *testing.T) {
			msg, err := Marshaller{}.Unmarshal(fields)
			require.NoError(t, err, "a read never fails")
			why := msg.Metadata.Get(arc.MetadataMalformed)
			assert.NotEmpty(t, why)
			_, err = arc.FromMessage(msg)
			require.ErrorIs(t, err, arc.ErrMalformedEvent)
			// FromMessage says "arc: malformed event" once, where the reason
			// quotes arc's decode error.
			assert.Contains(t, err.Error(), strings.ReplaceAll(why, "arc: malformed event: ", ""))
			var raw map[string]string
			require.NoError(t, json.Unmarshal([]byte(msg.Metadata.Get(MetadataRawFields)), &raw))
			assert.Len(t, raw, len(fields))
			assert.NotEmpty(t, msg.UUID)
		})
	}
}

// Every meta field, unknown meta keys, unicode and a timestamp key inside
// the payload survive Arc's layout both ways.
func TestEntryRoundTrip(t *testing.T) {
	data := `{"type":"commande.créée","payload":{"timestamp":"2026-04-28T09:00:00.000Z","note":"日本 🎉 <b>"},"meta":{"id":"e-1","timestamp":"2026-04-28T10:00:00.123Z","schemaVersion":2,"correlationId":"c","causationId":"p","partitionKey":"pk","source":"s","idempotencyKey":"k","resource":"r","resourceId":"ri","userId":"u","organizationId":"o","aggregate":{"type":"A","id":"1"},"hostTier":"gold"}}`
	msg, err := Marshaller{}.Unmarshal(map[string]any{"type": "commande.créée", "data": data})
	require.NoError(t, err)
	fields, err := Marshaller{}.Marshal("arc:events", msg)
	require.NoError(t, err)
	assert.Equal(t, data, fields["data"])
	assert.Equal(t, "commande.créée", fields["type"])
}

func FuzzUnmarshalEntry(f *testing.F) {
	f.Add("order.created", arcData)
	f.Add("", "")
	f.Add("t", `{"type":"t","meta":{"id":"1","timestamp":"yesterday"}}`)
	f.Add("t", strings.Repeat("[", 100))
	f.Fuzz(func(t *testing.T, typ, data string) {
		msg, err := Marshaller{}.Unmarshal(map[string]any{"type": typ, "data": data})
		if err != nil || msg == nil {
			t.Fatalf("a read failed: %v", err)
		}
		ev, err := arc.FromMessage(msg)
		if err != nil {
			if msg.Metadata.Get(arc.MetadataMalformed) == "" {
				t.Fatalf("undecodable message not flagged: %v", err)
			}
			return
		}
		fields, err := Marshaller{}.Marshal("s", msg)
		if err != nil {
			t.Fatalf("a read event does not write back: %v", err)
		}
		again, err := Marshaller{}.Unmarshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		back, err := arc.FromMessage(again)
		if err != nil || !ev.Equal(back) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// Marshaller.Limits bound what Unmarshal reads: nesting and type length
// over them make the entry malformed, naming the field; the defaults are
// arc's, NoLimit takes any; and a Subscriber refuses invalid Limits.
func TestUnmarshalReadsUnderTheMarshallersLimits(t *testing.T) {
	t.Parallel()
	deep := func(levels int) string {
		return `{"type":"order.deep","payload":` + strings.Repeat("[", levels) + strings.Repeat("]", levels) +
			`,"meta":{"id":"e-1"}}`
	}
	entry := func(typ, data string) map[string]any { return map[string]any{"type": typ, "data": data} }
	malformed := func(m Marshaller, values map[string]any) string {
		msg, err := m.Unmarshal(values)
		require.NoError(t, err, "Unmarshal never fails")
		return msg.Metadata.Get(arc.MetadataMalformed)
	}

	assert.Empty(t, malformed(Marshaller{}, entry("order.deep", deep(10))), "within arc's default depth")
	assert.NotEmpty(t, malformed(Marshaller{}, entry("order.deep", deep(arc.DefaultMaxDepth+1))), "over the default")
	assert.Empty(t, malformed(Marshaller{Limits: arc.Limits{MaxDepth: arc.NoLimit}},
		entry("order.deep", deep(arc.DefaultMaxDepth+1))), "NoLimit takes it")
	assert.NotEmpty(t, malformed(Marshaller{Limits: arc.Limits{MaxDepth: 5}}, entry("order.deep", deep(10))),
		"a lower MaxDepth refuses it")

	long := strings.Repeat("t", 100)
	data := `{"type":"` + long + `","payload":{},"meta":{"id":"e-1"}}`
	assert.Empty(t, malformed(Marshaller{}, entry(long, data)))
	why := malformed(Marshaller{Limits: arc.Limits{MaxTypeBytes: 64}}, entry(long, data))
	assert.Contains(t, why, "longer than 64 bytes", "the reason names the bound")

	client := redis.NewClient(&redis.Options{})
	for _, u := range []wredis.Unmarshaller{Marshaller{Limits: arc.Limits{MaxDepth: -2}},
		&Marshaller{Limits: arc.Limits{MaxTypeBytes: -3}}} {
		err := SubscriberConfig{Client: client, ConsumerGroup: "g", Unmarshaller: u}.Validate()
		require.ErrorIs(t, err, ErrInvalidConfig)
		assert.Contains(t, err.Error(), "SubscriberConfig.Unmarshaller")
	}
}

// A Subscriber reads with its Marshaller's Limits: an event deeper than
// MaxDepth arrives flagged malformed (for the router to dead-letter), and
// the event after it as usual.
func TestSubscriber_ReadsUnderTheMarshallersLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.xadd("type", "order.deep", "data", `{"type":"order.deep","payload":[[[[1]]]],"meta":{"id":"e-1"}}`)
	b.publish("order.flat", 1)
	_, msgs := b.subscribe(SubscriberConfig{Unmarshaller: Marshaller{Limits: arc.Limits{MaxDepth: 3}}})
	var got []string
	for len(got) < 2 {
		select {
		case m := <-msgs:
			got = append(got, m.Metadata.Get(arc.MetadataMalformed))
			m.Ack()
		case <-time.After(testWait):
			t.Fatalf("%d of 2 delivered", len(got))
		}
	}
	assert.Contains(t, got[0], "nested too deeply", "the deep event is malformed under MaxDepth 3")
	assert.Empty(t, got[1], "the flat one is an event")
}
