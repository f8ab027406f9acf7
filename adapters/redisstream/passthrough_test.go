package redisstream

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// passThroughEvents returns the wire JSON of Arc's golden events
// (arc/testdata, written by Arc's createEvent and JSON.stringify) and of
// events whose ids and meta strings are not text: lone surrogates,
// invalid UTF-8, NUL, trailing spaces, U+FFFD and the outbox's escape
// marker, U+2028.
func passThroughEvents(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "arc", "testdata", "events.golden.json"))
	require.NoError(t, err)
	var goldens []struct {
		Want string `json:"want"`
	}
	require.NoError(t, json.Unmarshal(b, &goldens))
	require.NotEmpty(t, goldens)
	var wires []string
	for _, g := range goldens {
		wires = append(wires, g.Want)
	}
	for i, id := range []string{`\ud800`, `\udc00\ud800`, "\xff", "a\xffb", `a\u0000b`, "k ", `\ufffd%FF`,
		`x\ud800y`, `\ud83d\ude00`, "\u2028", `<&>`} {
		wires = append(wires, fmt.Sprintf(`{"type":"order.created","payload":{"n":%d},"meta":{"id":"%s",`+
			`"timestamp":"2026-11-30T12:00:00.000Z","correlationId":"c%s","causationId":"p%s","partitionKey":"pk%s",`+
			`"userId":"u%s","x-%s":"v%s"}}`, i, id, id, id, id, id, id, id))
	}
	return wires
}

func passThroughClient(t *testing.T) (*redis.Client, *Publisher) {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { _ = client.Close() })
	pub, err := NewPublisher(PublisherConfig{Client: client, SkipServerCheck: true})
	require.NoError(t, err)
	return client, pub
}

// entries returns the fields of every entry of stream, in order, and
// deletes the stream at cleanup.
func entries(t *testing.T, client *redis.Client, stream string) [][]string {
	t.Helper()
	es, err := RangeEntries(context.Background(), client, stream, "-", "+", 0)
	require.NoError(t, err)
	out := make([][]string, len(es))
	for i, e := range es {
		out[i] = e.Fields
	}
	return out
}

func newStream(t *testing.T, client *redis.Client) string {
	stream := "arcmill-test:pass:" + uuid.NewString()
	t.Cleanup(func() { client.Del(context.Background(), stream) })
	return stream
}

// A message handed over with its Arc JSON is written with exactly the
// entry an encode gives: for Arc's golden events and for ids that are not
// text, field for field, byte for byte, alone and in batches.
func TestPublisher_PassThroughWritesWhatAnEncodeWrites(t *testing.T) {
	t.Parallel()
	client, pub := passThroughClient(t)
	var encoded, passed []*message.Message
	for _, wire := range passThroughEvents(t) {
		var ev arc.Event
		require.NoError(t, arc.Unmarshal([]byte(wire), &ev), "%q", wire)
		data, err := arc.Marshal(ev)
		require.NoError(t, err)
		a, err := arc.ToMessage(ev)
		require.NoError(t, err)
		encoded = append(encoded, a)
		b, err := arc.ToMessage(ev)
		require.NoError(t, err)
		AttachArcJSON(b, data)
		passed = append(passed, b)
	}
	for _, batch := range []int{1, len(encoded)} {
		plain, through := newStream(t, client), newStream(t, client)
		for i := 0; i < len(encoded); i += batch {
			require.NoError(t, pub.Publish(plain, encoded[i:i+batch]...))
			require.NoError(t, pub.Publish(through, passed[i:i+batch]...))
		}
		want := entries(t, client, plain)
		require.Len(t, want, len(encoded))
		assert.Equal(t, want, entries(t, client, through))
	}

	// The same with Watermill's uuid field, and through EncodeArcJSON.
	wm, err := NewPublisher(PublisherConfig{Client: client, SkipServerCheck: true, Marshaller: Marshaller{WatermillUUID: true}})
	require.NoError(t, err)
	plain, through := newStream(t, client), newStream(t, client)
	for i := range encoded {
		require.NoError(t, wm.Publish(plain, encoded[i]))
		again := encoded[i].Copy()
		_, err := EncodeArcJSON(again)
		require.NoError(t, err)
		require.NoError(t, wm.Publish(through, again))
	}
	assert.Equal(t, entries(t, client, plain), entries(t, client, through))
}

// Publish writes the handed-over bytes themselves (not an encode that
// happens to agree), and only while the message is as it was handed over:
// a change to its metadata, payload (even in place) or UUID, or a context
// not derived from the one it came with, has it encoded again.
func TestPublisher_PassThroughNeverWritesStaleBytes(t *testing.T) {
	t.Parallel()
	client, pub := passThroughClient(t)
	ev, err := arc.NewEvent("order.created", map[string]int{"n": 1}, arc.Meta{CorrelationID: "c-1"})
	require.NoError(t, err)
	const marker = `{"handed":"over"}` // not what any encode gives
	fresh := func() *message.Message {
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		msg.Payload = slices.Clone(msg.Payload) // ToMessage shares ev's bytes: a change in place must stay here
		AttachArcJSON(msg, []byte(marker))
		return msg
	}
	data := func(msg *message.Message) string {
		stream := newStream(t, client)
		require.NoError(t, pub.Publish(stream, msg))
		es := entries(t, client, stream)
		require.Len(t, es, 1)
		require.Equal(t, FieldData, es[0][2])
		return es[0][3]
	}
	require.Equal(t, marker, data(fresh()), "the handed-over bytes are written")
	derived := fresh()
	derived.SetContext(context.WithValue(derived.Context(), struct{}{}, 1))
	assert.Equal(t, marker, data(derived), "a derived context keeps them")

	changes := map[string]func(*message.Message){
		"metadata value": func(m *message.Message) { m.Metadata.Set(arc.MetadataCorrelationID, "c-2") },
		"metadata added": func(m *message.Message) { m.Metadata.Set(arc.MetadataSource, "shop") },
		"metadata gone":  func(m *message.Message) { delete(m.Metadata, arc.MetadataCorrelationID) },
		"payload":        func(m *message.Message) { m.Payload = []byte(`{"n":2}`) },
		"payload in place": func(m *message.Message) {
			m.Payload[len(m.Payload)-2] = '2' // {"n":1} → {"n":2}, same backing array
		},
		"uuid":        func(m *message.Message) { m.UUID = "other-id" },
		"new context": func(m *message.Message) { m.SetContext(context.Background()) },
	}
	for name, change := range changes {
		msg := fresh()
		change(msg)
		want, err := arc.FromMessage(msg)
		require.NoError(t, err, name)
		wantData, err := arc.Marshal(want)
		require.NoError(t, err)
		assert.Equal(t, string(wantData), data(msg), "%s: encoded again", name)
	}
}
