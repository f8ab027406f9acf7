package cloudevents

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// events covers every meta field, extra keys of every JSON kind, each
// payload kind, and the absent ones.
func events(t *testing.T) map[string]arc.Event {
	full, err := arc.NewEvent("order.created", map[string]any{"orderId": "o-1", "total": 99.5}, arc.Meta{
		SchemaVersion: 3, CorrelationID: "req-1", CausationID: "cmd-1", PartitionKey: "o-1", Source: "shop",
		IdempotencyKey: "k-1", Resource: "order", ResourceID: "o-1", UserID: "u-7", OrganizationID: "org-1",
		Aggregate: &arc.Aggregate{Type: "Order", ID: "o-1"},
		Extra: map[string]json.RawMessage{"tenantTier": json.RawMessage(`"gold"`), "Weird-Key_Too-Long-For-CE": json.RawMessage(`{"a":[1,2]}`),
			"count": json.RawMessage(`7`), "traceparent": json.RawMessage(`"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"`)},
	})
	require.NoError(t, err)
	bare, err := arc.NewEvent("ping", nil, arc.Meta{})
	require.NoError(t, err)
	bare.Payload = nil // absent, as when an Arc host emits undefined
	null, err := arc.NewEvent("x.null", json.RawMessage(`null`), arc.Meta{})
	require.NoError(t, err)
	arr, err := arc.NewEvent("x.arr", json.RawMessage(`[1,"two",{"3":true}]`), arc.Meta{Source: "svc"})
	require.NoError(t, err)
	str, err := arc.NewEvent("x.str", "just a string", arc.Meta{})
	require.NoError(t, err)
	return map[string]arc.Event{"full": full, "no payload": bare, "null payload": null, "array": arr, "string": str}
}

// Every event survives each encoding (SDK event, binary message,
// structured JSON) unchanged.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	var c Codec
	for name, ev := range events(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e, err := c.ToCloudEvent(ev)
			require.NoError(t, err)
			require.NoError(t, e.Validate())
			for ext := range e.Extensions() {
				assert.LessOrEqual(t, len(ext), 20, ext)
				assert.Equal(t, strings.ToLower(ext), ext)
			}
			back, err := c.FromCloudEvent(e)
			require.NoError(t, err)
			assert.True(t, ev.Equal(back), "SDK event:\n%+v\n%+v", ev, back)

			msg, err := c.ToBinaryMessage(ev)
			require.NoError(t, err)
			assert.Equal(t, ev.Meta.ID, msg.UUID)
			assert.Equal(t, "1.0", msg.Metadata.Get("ce_specversion"))
			back, err = c.FromBinaryMessage(msg)
			require.NoError(t, err)
			assert.True(t, ev.Equal(back), "binary:\n%+v\n%+v", ev, back)

			b, err := c.MarshalStructured(ev)
			require.NoError(t, err)
			back, err = c.UnmarshalStructured(b)
			require.NoError(t, err)
			assert.True(t, ev.Equal(back), "structured %s:\n%+v\n%+v", b, ev, back)
		})
	}
}

// oddEvent is an event with meta made to trip the mapping.
func oddEvent(t *testing.T, typ string, m arc.Meta) arc.Event {
	t.Helper()
	ev, err := arc.NewEvent(typ, map[string]int{"a": 1}, m)
	require.NoError(t, err)
	return ev
}

// Values at the edges of CloudEvents' attribute rules survive every
// encoding: other meta keys and traceparent keep their bytes (no HTML
// escaping), the schema version survives types CloudEvents trims or cannot
// put in a URN, whitespace ids and empty aggregates round-trip, Arc's
// milliseconds are kept, sources that are no valid URI reference are kept.
func TestOddValuesSurviveEveryEncoding(t *testing.T) {
	t.Parallel()
	extra := func(k, v string) map[string]json.RawMessage { return map[string]json.RawMessage{k: json.RawMessage(v)} }
	cases := map[string]arc.Event{
		"html in another meta key":       oddEvent(t, "x", arc.Meta{Extra: extra("note", `"a<b>&c"`)}),
		"html in traceparent":            oddEvent(t, "x", arc.Meta{Extra: extra("traceparent", `"a&b"`)}),
		"escaped traceparent":            oddEvent(t, "x", arc.Meta{Extra: extra("traceparent", `"\u0041"`)}),
		"type with a space, schema":      oddEvent(t, " order.created", arc.Meta{SchemaVersion: 2}),
		"type with a percent, schema":    oddEvent(t, "100%done", arc.Meta{SchemaVersion: 2}),
		"source with a bad escape":       oddEvent(t, "x", arc.Meta{Source: "%zz"}),
		"whitespace id":                  oddEvent(t, "x", arc.Meta{ID: "   "}),
		"milliseconds":                   oddEvent(t, "x", arc.Meta{Timestamp: time.Date(2024, 1, 1, 0, 0, 0, 123000000, time.UTC)}),
		"dataschema as another meta key": oddEvent(t, "x", arc.Meta{Extra: extra("dataschema", `"u"`)}),
		"unicode everywhere": oddEvent(t, "ü.事件", arc.Meta{SchemaVersion: 1, Source: "ü/事", ResourceID: "\u2028",
			CorrelationID: " c "}),
		"control character in the type": oddEvent(t, "a\tb", arc.Meta{SchemaVersion: 1}),
		"whitespace correlation, DEL":   oddEvent(t, "x", arc.Meta{CorrelationID: "  ", UserID: "\x7f"}),
		"empty aggregate":               oddEvent(t, "x", arc.Meta{Aggregate: &arc.Aggregate{}}),
		"source with a fragment":        oddEvent(t, "x", arc.Meta{Source: "a#b c"}),
		"source URL in upper case":      oddEvent(t, "x", arc.Meta{Source: "HTTP://Example.com/%41"}),
	}
	var c Codec
	for name, ev := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e, err := c.ToCloudEvent(ev)
			require.NoError(t, err)
			back, err := c.FromCloudEvent(e)
			require.NoError(t, err)
			assert.True(t, ev.Equal(back), "SDK event:\n%+v\n%+v", ev, back)
			msg, err := c.ToBinaryMessage(ev)
			require.NoError(t, err)
			back, err = c.FromBinaryMessage(msg)
			require.NoError(t, err)
			assert.True(t, ev.Equal(back), "binary:\n%+v\n%+v", ev, back)
			b, err := c.MarshalStructured(ev)
			require.NoError(t, err)
			back, err = c.UnmarshalStructured(b)
			require.NoError(t, err)
			assert.True(t, ev.Equal(back), "structured %s:\n%+v\n%+v", b, ev, back)
		})
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	var c Codec
	ev := events(t)["full"]
	b, err := c.MarshalStructured(ev)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(b, &doc))
	assert.Equal(t, "1.0", doc["specversion"])
	assert.Equal(t, ev.Meta.ID, doc["id"])
	assert.Equal(t, "shop", doc["source"])
	assert.Equal(t, "order.created", doc["type"])
	when, err := time.Parse(time.RFC3339Nano, doc["time"].(string))
	require.NoError(t, err)
	assert.True(t, when.Equal(ev.Meta.Timestamp), "time %v", doc["time"])
	assert.Equal(t, "o-1", doc["subject"])
	assert.Equal(t, "urn:arc:schema:order.created:3", doc["dataschema"])
	assert.Equal(t, "application/json", doc["datacontenttype"])
	assert.Equal(t, map[string]any{"orderId": "o-1", "total": 99.5}, doc["data"], "data inline as JSON")
	for ext, want := range map[string]string{"partitionkey": "o-1", "correlationid": "req-1", "causationid": "cmd-1",
		"idempotencykey": "k-1", "resource": "order", "userid": "u-7", "organizationid": "org-1",
		"aggregatetype": "Order", "aggregateid": "o-1",
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"} {
		assert.Equal(t, want, doc[ext], ext)
	}
	assert.JSONEq(t, `{"tenantTier":"gold","Weird-Key_Too-Long-For-CE":{"a":[1,2]},"count":7}`, doc["arcmeta"].(string))

	msg, err := c.ToBinaryMessage(ev)
	require.NoError(t, err)
	assert.Equal(t, "application/json", msg.Metadata.Get("content-type"))
	assert.Equal(t, "req-1", msg.Metadata.Get("ce_correlationid"))
	assert.JSONEq(t, `{"orderId":"o-1","total":99.5}`, string(msg.Payload))

	bare, err := c.ToCloudEvent(events(t)["no payload"])
	require.NoError(t, err)
	assert.Equal(t, "arcmill", bare.Source(), "a default source, as CloudEvents requires one")
	assert.Nil(t, bare.Data())
}

// A CloudEvent from another system maps onto an Arc event as well as it
// can; what cannot be an Arc event is refused clearly.
func TestForeignCloudEvents(t *testing.T) {
	t.Parallel()
	var c Codec
	back, err := c.UnmarshalStructured([]byte(`{"specversion":"1.0","id":"f-1","source":"/billing","type":"invoice.paid",
		"time":"2026-01-02T03:04:05.678Z","dataschema":"https://schemas.example/invoice","comexampleflag":"on",
		"datacontenttype":"application/json","data":{"amount":3}}`))
	require.NoError(t, err)
	assert.Equal(t, "invoice.paid", back.Type)
	assert.Equal(t, "/billing", back.Meta.Source)
	assert.Equal(t, `"on"`, string(back.Meta.Extra["comexampleflag"]))
	assert.Equal(t, `"https://schemas.example/invoice"`, string(back.Meta.Extra["dataschema"]))
	assert.JSONEq(t, `{"amount":3}`, string(back.Payload))

	_, err = c.UnmarshalStructured([]byte(`{"specversion":"1.0","id":"f-2","source":"/x","type":"blob","datacontenttype":"text/plain","data":"hello"}`))
	assert.ErrorIs(t, err, ErrNotJSON)
	_, err = c.UnmarshalStructured([]byte(`{"specversion":"1.0","source":"/x","type":"t"}`))
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = c.UnmarshalStructured([]byte(`not json`))
	assert.ErrorIs(t, err, ErrInvalid)
	msg := message.NewMessage("m", []byte(`{}`))
	msg.Metadata.Set("ce_specversion", "0.3")
	_, err = c.FromBinaryMessage(msg)
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = c.ToCloudEvent(arc.Event{Type: "", Meta: arc.Meta{ID: "x"}})
	assert.ErrorIs(t, err, arc.ErrInvalidEvent)
	var empty ce.Event
	_, err = c.FromCloudEvent(empty)
	assert.ErrorIs(t, err, ErrInvalid)
}

// FuzzUnmarshalStructured: any bytes are read or refused, never a panic;
// what is read writes back and reads again the same.
func FuzzUnmarshalStructured(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"a","source":"/s","type":"t","data":{"x":1}}`))
	f.Add([]byte(`{"specversion":"1.0","id":"a","source":"/s","type":"t","arcmeta":"{\"k\":1}","arcnullpayload":"true"}`))
	f.Add([]byte(`{"specversion":"1.0","id":"a","source":"/s","type":"t","datacontenttype":"text/plain","data_base64":"AAE="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Codec
		ev, err := c.UnmarshalStructured(data)
		if err != nil {
			return
		}
		b, err := c.MarshalStructured(ev)
		if err != nil {
			return // an event arc itself refuses to write (a reserved type, say)
		}
		again, err := c.UnmarshalStructured(b)
		if err != nil {
			t.Fatalf("re-reading %s: %v", b, err)
		}
		// Structured mode keeps the payload as a JSON value, not its bytes.
		var p1, p2 bytes.Buffer
		for _, c := range []struct {
			dst *bytes.Buffer
			src []byte
		}{{&p1, ev.Payload}, {&p2, again.Payload}} {
			if len(c.src) == 0 {
				continue // an absent payload stays absent
			}
			if err := json.Compact(c.dst, c.src); err != nil {
				t.Fatalf("payload %q: %v", c.src, err)
			}
		}
		ev.Payload, again.Payload = p1.Bytes(), p2.Bytes()
		if !again.Equal(ev) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", ev, again)
		}
	})
}
