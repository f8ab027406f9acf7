package cloudevents

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/arcmill/arcmill/arc"
)

func rt(t *testing.T, name string, ev arc.Event) {
	t.Helper()
	var c Codec
	e, err := c.ToCloudEvent(ev)
	if err != nil {
		t.Errorf("%s: ToCloudEvent: %v", name, err)
		return
	}
	back, err := c.FromCloudEvent(e)
	if err != nil || !ev.Equal(back) {
		t.Errorf("%s SDK: err=%v\n in %+v\nout %+v", name, err, ev, back)
	}
	msg, err := c.ToBinaryMessage(ev)
	if err == nil {
		back, err = c.FromBinaryMessage(msg)
	}
	if err != nil || !ev.Equal(back) {
		t.Errorf("%s binary: err=%v\n in %+v\nout %+v", name, err, ev, back)
	}
	b, err := c.MarshalStructured(ev)
	if err == nil {
		back, err = c.UnmarshalStructured(b)
	}
	if err != nil || !ev.Equal(back) {
		t.Errorf("%s structured: err=%v\n in %+v\nout %+v", name, err, ev, back)
	}
}

func mk(t *testing.T, typ string, m arc.Meta) arc.Event {
	ev, err := arc.NewEvent(typ, map[string]int{"a": 1}, m)
	if err != nil {
		t.Fatalf("%s: %v", typ, err)
	}
	return ev
}

func TestOddEventsRoundTrip(t *testing.T) {
	rt(t, "html-extra", mk(t, "x", arc.Meta{Extra: map[string]json.RawMessage{"note": json.RawMessage(`"a<b>&c"`)}}))
	rt(t, "html-traceparent", mk(t, "x", arc.Meta{Extra: map[string]json.RawMessage{"traceparent": json.RawMessage(`"a&b"`)}}))
	rt(t, "escaped-traceparent", mk(t, "x", arc.Meta{Extra: map[string]json.RawMessage{"traceparent": json.RawMessage(`"\u0041"`)}}))
	rt(t, "space-type-schema", mk(t, " order.created", arc.Meta{SchemaVersion: 2}))
	rt(t, "percent-type-schema", mk(t, "100%done", arc.Meta{SchemaVersion: 2}))
	rt(t, "percent-source", mk(t, "x", arc.Meta{Source: "%zz"}))
	rt(t, "space-id", mk(t, "x", arc.Meta{ID: "   "}))
	rt(t, "ms-ts", mk(t, "x", arc.Meta{Timestamp: time.Date(2024, 1, 1, 0, 0, 0, 123000000, time.UTC)})) // Arc keeps milliseconds
	rt(t, "extra-dataschema", mk(t, "x", arc.Meta{Extra: map[string]json.RawMessage{"dataschema": json.RawMessage(`"u"`)}}))
	rt(t, "unicode", mk(t, "ü.事件", arc.Meta{SchemaVersion: 1, Source: "ü/事", ResourceID: "\u2028", CorrelationID: " c "}))
	rt(t, "ctl-type", mk(t, "a\tb", arc.Meta{SchemaVersion: 1}))
	rt(t, "corr-space", mk(t, "x", arc.Meta{CorrelationID: "  ", UserID: "\x7f"}))
	rt(t, "agg-empty", mk(t, "x", arc.Meta{Aggregate: &arc.Aggregate{}}))
	rt(t, "src-frag", mk(t, "x", arc.Meta{Source: "a#b c"}))
	rt(t, "src-url", mk(t, "x", arc.Meta{Source: "HTTP://Example.com/%41"}))
}
