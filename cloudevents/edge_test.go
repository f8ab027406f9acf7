package cloudevents

import (
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

// structured builds a structured-mode document with the given
// datacontenttype and raw data member.
func structured(contentType, dataMember string) []byte {
	doc := `{"specversion":"1.0","id":"j-1","source":"/x","type":"t"`
	if contentType != "" {
		doc += `,"datacontenttype":` + string(jsonString(contentType))
	}
	return []byte(doc + `,` + dataMember + `}`)
}

// data is read by the JSON event format's rule: */json and */*+json
// declare JSON, whose data member is the payload's JSON value as it
// stands (a string stays a JSON string, never parsed as a document);
// other types carry a string whose text must be JSON.
func TestStructuredDataFollowsJSONFormatRules(t *testing.T) {
	t.Parallel()
	var c Codec
	for _, tc := range []struct {
		name, contentType, member, payload string
	}{
		{"+json object", "application/vnd.x+json", `"data":{"a":1}`, `{"a":1}`},
		{"+json string stays a string", "application/vnd.x+json", `"data":"{\"a\":1}"`, `"{\"a\":1}"`},
		{"cloudevents+json", "application/cloudevents+json", `"data":[1,2]`, `[1,2]`},
		{"text/json", "text/json", `"data":{"a":1}`, `{"a":1}`},
		{"json with parameters", "application/json; charset=utf-8", `"data":{"a":1}`, `{"a":1}`},
		{"no content type is JSON", "", `"data":"plain"`, `"plain"`},
		{"json null", "application/json", `"data":null`, `null`},
		{"base64 of a JSON document", "application/json", `"data_base64":"eyJhIjoxfQ=="`, `{"a":1}`},
	} {
		ev, err := c.UnmarshalStructured(structured(tc.contentType, tc.member))
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.payload, string(ev.Payload), tc.name)
		assert.True(t, IsJSONMediaType(tc.contentType), tc.name)
	}
	for _, tc := range []struct {
		name, contentType, member string
		err                       error
	}{
		{"text", "text/plain", `"data":"hello"`, ErrNotJSON},
		{"JSON text under a non-JSON type", "text/plain", `"data":"{\"a\":1}"`, ErrNotJSON},
		{"non-JSON type, data no string", "application/xml", `"data":{"a":1}`, ErrInvalid},
		{"base64 of no JSON", "application/json", `"data_base64":"AAE="`, ErrNotJSON},
		{"both data members", "application/json", `"data":1,"data_base64":"MQ=="`, ErrInvalid},
	} {
		_, err := c.UnmarshalStructured(structured(tc.contentType, tc.member))
		assert.ErrorIs(t, err, tc.err, tc.name)
	}
	// Binary mode reads the body as the JSON document, under any JSON type.
	for _, ct := range []string{"text/json", "application/vnd.x+json", "application/json; charset=utf-8"} {
		msg := message.NewMessage("b-1", []byte(`{"a":1}`))
		for k, v := range map[string]string{"ce_specversion": "1.0", "ce_id": "b-1", "ce_source": "/x", "ce_type": "t",
			MetadataContentType: ct} {
			msg.Metadata.Set(k, v)
		}
		ev, err := c.FromBinaryMessage(msg)
		require.NoError(t, err, ct)
		assert.Equal(t, `{"a":1}`, string(ev.Payload), ct)
	}
	assert.False(t, IsJSONMediaType("application/jsonx"))
	assert.False(t, IsJSONMediaType("text/plain"))
}

// noForbidden fails t when a String attribute of e holds a code point the
// String type excludes.
func noForbidden(t *testing.T, name string, e ce.Event) {
	t.Helper()
	check := func(attr, v string) {
		for _, r := range v {
			assert.False(t, forbidden(r), "%s: attribute %s holds %U: %q", name, attr, r, v)
		}
	}
	check("id", e.ID())
	check("type", e.Type())
	check("subject", e.Subject())
	check("source", e.Source())
	for ext, v := range e.Extensions() {
		if s, ok := v.(string); ok {
			check(ext, s)
		}
	}
}

// Control characters (tab, newline, DEL, C1) and noncharacters never reach
// a String attribute: the attribute holds a clean form and arcattrs the
// Arc value, so every encoding gives the event back exactly.
func TestControlCharactersNeverInStringAttributes(t *testing.T) {
	t.Parallel()
	var c Codec
	extra := func(k, v string) map[string]json.RawMessage { return map[string]json.RawMessage{k: json.RawMessage(v)} }
	cases := map[string]arc.Event{
		"tab in the type":                 oddEvent(t, "a\tb", arc.Meta{SchemaVersion: 1}),
		"newline in the id":               oddEvent(t, "x", arc.Meta{ID: "id\n1"}),
		"DEL in the subject":              oddEvent(t, "x", arc.Meta{ResourceID: "r\x7f"}),
		"C1 in the correlation id":        oddEvent(t, "x", arc.Meta{CorrelationID: "c\u0085"}),
		"noncharacter in the user":        oddEvent(t, "x", arc.Meta{UserID: "u\ufdd0\uffff"}),
		"newline in a foreign extension":  oddEvent(t, "x", arc.Meta{Extra: extra("note", `"a\nb"`)}),
		"raw DEL in another meta value":   oddEvent(t, "x", arc.Meta{Extra: extra("Note", "\"a\x7fb\"")}),
		"newlines between meta JSON":      oddEvent(t, "x", arc.Meta{Extra: extra("Obj", "{\n\t\"a\": [1,\n2]\n}")}),
		"a replacement character is kept": oddEvent(t, "x\ufffd", arc.Meta{CorrelationID: "\ufffd"}),
	}
	for name, ev := range cases {
		e, err := c.ToCloudEvent(ev)
		require.NoError(t, err, name)
		noForbidden(t, name, e)
		back, err := c.FromCloudEvent(e)
		require.NoError(t, err, name)
		assert.True(t, ev.Equal(back), "%s, SDK event:\n%+v\n%+v", name, ev, back)
		msg, err := c.ToBinaryMessage(ev)
		require.NoError(t, err, name)
		for k, v := range msg.Metadata {
			for _, r := range v {
				assert.False(t, forbidden(r), "%s: metadata %s holds %U", name, k, r)
			}
		}
		back, err = c.FromBinaryMessage(msg)
		require.NoError(t, err, name)
		assert.True(t, ev.Equal(back), "%s, binary:\n%+v\n%+v", name, ev, back)
		b, err := c.MarshalStructured(ev)
		require.NoError(t, err, name)
		back, err = c.UnmarshalStructured(b)
		require.NoError(t, err, name)
		assert.True(t, ev.Equal(back), "%s, structured %s:\n%+v\n%+v", name, b, ev, back)
	}
}

// schemaVersion -1 and timestamps finer than a millisecond come back as
// they were, in every encoding. Whitespace around a meta value's JSON is
// the documented exception: JSON gives it no meaning, and it comes back
// without.
func TestFormerLossesAndTheDocumentedException(t *testing.T) {
	t.Parallel()
	var c Codec
	for name, ev := range map[string]arc.Event{
		"schemaVersion -1": oddEvent(t, "x", arc.Meta{SchemaVersion: -1}),
		"nanoseconds":      oddEvent(t, "x", arc.Meta{Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.UTC)}),
		"microseconds":     oddEvent(t, "x", arc.Meta{Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC)}),
		"arc's schema URN as another meta key": oddEvent(t, "x",
			arc.Meta{Extra: map[string]json.RawMessage{"dataschema": json.RawMessage(`"urn:arc:schema:x:1"`)}}),
		"a foreign dataschema": oddEvent(t, "x",
			arc.Meta{Extra: map[string]json.RawMessage{"dataschema": json.RawMessage(`"https://s.example/x"`)}}),
	} {
		e, err := c.ToCloudEvent(ev)
		require.NoError(t, err, name)
		back, err := c.FromCloudEvent(e)
		require.NoError(t, err, name)
		assert.True(t, ev.Equal(back), "%s, SDK event:\n%+v\n%+v", name, ev, back)
		msg, err := c.ToBinaryMessage(ev)
		require.NoError(t, err, name)
		back, err = c.FromBinaryMessage(msg)
		require.NoError(t, err, name)
		assert.True(t, ev.Equal(back), "%s, binary", name)
		b, err := c.MarshalStructured(ev)
		require.NoError(t, err, name)
		back, err = c.UnmarshalStructured(b)
		require.NoError(t, err, name)
		assert.True(t, ev.Equal(back), "%s, structured %s", name, b)
	}

	ev := oddEvent(t, "x", arc.Meta{Extra: map[string]json.RawMessage{"Padded": json.RawMessage(` "v" `)}})
	b, err := c.MarshalStructured(ev)
	require.NoError(t, err)
	back, err := c.UnmarshalStructured(b)
	require.NoError(t, err)
	assert.Equal(t, `"v"`, string(back.Meta.Extra["Padded"]), "the value, without the whitespace around it")
}

// A bridge (CloudEvents in, Arc, CloudEvents out) gives a foreign event
// back as sdk-go wrote it: its extensions top-level, not nested in
// arcmeta, its dataschema, subject, time and data, through the SDK event
// and through sdk-go's own structured JSON.
func TestBridgeRoundTripOfSDKEvents(t *testing.T) {
	t.Parallel()
	var c Codec
	in := ce.New()
	in.SetID("inv-42")
	in.SetSource("https://billing.example/invoices")
	in.SetType("com.example.invoice.paid")
	in.SetSubject("invoice/42")
	in.SetTime(time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC))
	in.SetDataSchema("https://schemas.example/invoice/v2")
	in.SetExtension("comexampleflag", "on")
	in.SetExtension("tenant", "acme")
	in.SetExtension("comexamplecount", 3)
	in.SetExtension("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	in.SetExtension("partitionkey", "inv-42")
	require.NoError(t, in.SetData(ce.ApplicationJSON, map[string]any{"amount": 3, "currency": "EUR"}))
	require.NoError(t, in.Validate())

	check := func(how string, out ce.Event) {
		t.Helper()
		assert.Equal(t, in.ID(), out.ID(), how)
		assert.Equal(t, in.Source(), out.Source(), how)
		assert.Equal(t, in.Type(), out.Type(), how)
		assert.Equal(t, in.Subject(), out.Subject(), how)
		assert.True(t, in.Time().Equal(out.Time()), "%s: time %v", how, out.Time())
		assert.Equal(t, in.DataSchema(), out.DataSchema(), how)
		assert.JSONEq(t, string(in.Data()), string(out.Data()), how)
		want := map[string]string{}
		for k, v := range in.Extensions() {
			s, err := toString(v)
			require.NoError(t, err)
			want[k] = s
		}
		got := map[string]string{}
		for k, v := range out.Extensions() {
			s, err := toString(v)
			require.NoError(t, err)
			got[k] = s
		}
		assert.Equal(t, want, got, "%s: the same extensions, top-level (canonical string forms)", how)
	}

	ev, err := c.FromCloudEvent(in)
	require.NoError(t, err)
	out, err := c.ToCloudEvent(ev)
	require.NoError(t, err)
	check("SDK event", out)

	wire, err := json.Marshal(in) // sdk-go's structured JSON
	require.NoError(t, err)
	ev, err = c.UnmarshalStructured(wire)
	require.NoError(t, err)
	b, err := c.MarshalStructured(ev)
	require.NoError(t, err)
	var again ce.Event
	require.NoError(t, json.Unmarshal(b, &again), "sdk-go reads what the bridge writes")
	check("structured", again)
	assert.NotContains(t, string(b), ExtArcMeta)
	assert.False(t, strings.Contains(string(b), ExtArcAttrs))
}
