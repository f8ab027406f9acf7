package arc

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewEventFillsIDAndTimestamp(t *testing.T) {
	before := time.Now()
	ev, err := NewEvent("order.created", map[string]any{"orderId": "o-1"}, Meta{UserID: "u-7"})
	require.NoError(t, err)
	id, err := uuid.Parse(ev.Meta.ID)
	require.NoError(t, err)
	assert.Equal(t, uuid.Version(4), id.Version())
	assert.False(t, ev.Meta.Timestamp.Before(before.Truncate(time.Millisecond)))
	assert.False(t, ev.Meta.Timestamp.After(time.Now()))
	assert.Equal(t, time.UTC, ev.Meta.Timestamp.Location())
	assert.Zero(t, ev.Meta.Timestamp.Nanosecond()%1e6, "to the millisecond, as the wire carries it")
	assert.Equal(t, "u-7", ev.Meta.UserID)
	assert.Zero(t, ev.Meta.SchemaVersion, "createEvent sets no schemaVersion")

	other, err := NewEvent("order.created", nil, Meta{})
	require.NoError(t, err)
	assert.NotEqual(t, ev.Meta.ID, other.Meta.ID)

	// The wire form of a fresh event decodes to the same event.
	assert.Equal(t, ev, mustUnmarshal(t, mustMarshal(t, ev)))
}

func TestNewEventKeepsCallerIDAndTimestamp(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	ev, err := NewEvent("x", nil, Meta{ID: "mine", Timestamp: ts, SchemaVersion: 2})
	require.NoError(t, err)
	assert.Equal(t, "mine", ev.Meta.ID)
	assert.Equal(t, ts, ev.Meta.Timestamp)
	assert.Equal(t, 2, ev.Meta.SchemaVersion)
}

func TestNewEventPayloadKinds(t *testing.T) {
	type order struct {
		ID    string `json:"id"`
		Note  string `json:"note"`
		Total int    `json:"total"`
	}
	cases := []struct {
		name    string
		payload any
		want    string
	}{
		{"struct, no HTML escaping", order{"o-1", "<a> & b", 3}, `{"id":"o-1","note":"<a> & b","total":3}`},
		{"map", map[string]int{"b": 2, "a": 1}, `{"a":1,"b":2}`},
		{"raw message", json.RawMessage(`{"x": [1, 2]}`), `{"x": [1, 2]}`},
		{"bytes, trimmed", []byte(" \n[1,2]\n"), `[1,2]`},
		{"nil is null", nil, `null`},
		{"string", "hello", `"hello"`},
		{"number", 4.5, `4.5`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, err := NewEvent("x", c.payload, Meta{})
			require.NoError(t, err)
			assert.Equal(t, c.want, string(ev.Payload))
		})
	}

	raw := []byte(`{"a":1}`)
	ev, err := NewEvent("x", raw, Meta{})
	require.NoError(t, err)
	raw[2] = 'b'
	assert.Equal(t, `{"a":1}`, string(ev.Payload), "the payload is copied")

	for name, bad := range map[string]any{
		"invalid bytes": []byte(`{"a":`), "empty bytes": []byte(" "), "invalid raw": json.RawMessage(`nope`),
		"unencodable": map[string]any{"f": func() {}}, "NaN": struct{ F float64 }{F: nan()},
	} {
		_, err := NewEvent("x", bad, Meta{})
		assert.ErrorIs(t, err, ErrInvalidEvent, name)
	}
}

func nan() float64 { var z float64; return z / z }

func TestNewEventTypeRules(t *testing.T) {
	for _, ok := range []string{"order.created", "order:placed", "$deadLetter", strings.Repeat("é", MaxTypeLength)} {
		_, err := NewEvent(ok, nil, Meta{})
		assert.NoError(t, err, ok)
	}
	for _, bad := range []string{"", "$internal", strings.Repeat("a", MaxTypeLength+1)} {
		_, err := NewEvent(bad, nil, Meta{})
		assert.ErrorIs(t, err, ErrInvalidEvent, bad)
	}
}

// Arc's readers turn every "timestamp" key into a Date: we never produce a
// non-date string under one.
func TestNewEventRefusesNonDateTimestampKeys(t *testing.T) {
	good := []any{
		map[string]any{"timestamp": "2026-04-28T10:00:00.000Z"},
		map[string]any{"timestamp": 1714298400000, "nested": map[string]any{"timestamp": nil}},
		map[string]any{"items": []any{map[string]any{"timestamp": "2026-04-28"}}},
		map[string]any{"timestamps": "not a date"}, // another key
	}
	for _, p := range good {
		_, err := NewEvent("x", p, Meta{})
		assert.NoError(t, err, "%v", p)
	}
	bad := map[string]any{
		"top":       map[string]any{"timestamp": "yesterday"},
		"nested":    map[string]any{"a": map[string]any{"b": []any{map[string]any{"timestamp": "soon"}}}},
		"escaped":   json.RawMessage(`{"time\u0073tamp":"nope"}`),
		"epoch str": map[string]any{"timestamp": "1714298400000"},
	}
	for name, p := range bad {
		_, err := NewEvent("x", p, Meta{})
		assert.ErrorIs(t, err, ErrInvalidEvent, name)
		if err != nil {
			assert.Contains(t, err.Error(), "timestamp", name)
		}
	}
	_, err := NewEvent("x", nil, Meta{Extra: map[string]json.RawMessage{"host": json.RawMessage(`{"timestamp":"x"}`)}})
	assert.ErrorIs(t, err, ErrInvalidEvent)
}

func TestNewChild(t *testing.T) {
	root, err := NewEvent("order.created", map[string]int{"n": 1}, Meta{
		UserID: "u", OrganizationID: "org", Source: "shop", IdempotencyKey: "req-1", Resource: "order",
		ResourceID: "o-1", PartitionKey: "o-1", SchemaVersion: 3, Aggregate: &Aggregate{"Order", "o-1"},
		Extra: map[string]json.RawMessage{"host": json.RawMessage(`1`)},
	})
	require.NoError(t, err)

	child, err := NewChild(root, "payment.requested", nil, Meta{})
	require.NoError(t, err)
	assert.Equal(t, root.Meta.ID, child.Meta.CausationID)
	assert.Equal(t, root.Meta.ID, child.Meta.CorrelationID, "the root's id starts the chain")
	assert.Equal(t, "u", child.Meta.UserID)
	assert.Equal(t, "org", child.Meta.OrganizationID)
	assert.Equal(t, "shop", child.Meta.Source)
	assert.Equal(t, "req-1", child.Meta.IdempotencyKey, "inherited on the wire, as Arc does")
	assert.Nil(t, child.Meta.Aggregate)
	assert.Empty(t, child.Meta.Resource)
	assert.Empty(t, child.Meta.ResourceID)
	assert.Empty(t, child.Meta.PartitionKey)
	assert.Zero(t, child.Meta.SchemaVersion)
	assert.Nil(t, child.Meta.Extra)
	assert.NotEqual(t, root.Meta.ID, child.Meta.ID)
	assert.False(t, child.Meta.Timestamp.IsZero())

	grandchild, err := NewChild(child, "payment.captured", nil, Meta{UserID: "system", Aggregate: &Aggregate{"Payment", "p-1"}})
	require.NoError(t, err)
	assert.Equal(t, child.Meta.ID, grandchild.Meta.CausationID)
	assert.Equal(t, root.Meta.ID, grandchild.Meta.CorrelationID, "correlation holds across three levels")
	assert.Equal(t, "system", grandchild.Meta.UserID, "caller's meta wins")
	assert.Equal(t, "org", grandchild.Meta.OrganizationID)
	assert.Equal(t, &Aggregate{"Payment", "p-1"}, grandchild.Meta.Aggregate, "a child may set its own aggregate")

	withCorr, err := NewEvent("a", nil, Meta{CorrelationID: "req-9"})
	require.NoError(t, err)
	c2, err := NewChild(withCorr, "b", nil, Meta{CausationID: "explicit", CorrelationID: "", ID: "fixed"})
	require.NoError(t, err)
	assert.Equal(t, "req-9", c2.Meta.CorrelationID)
	assert.Equal(t, "explicit", c2.Meta.CausationID, "caller's meta wins, causation included")
	assert.Equal(t, "fixed", c2.Meta.ID)

	_, err = NewChild(Event{Type: "x"}, "y", nil, Meta{})
	assert.ErrorIs(t, err, ErrInvalidEvent)
}

// Arc's createChildEvent: a child inherits its parent's idempotency key, and an
// outbox deduplicating on that key drops the child. DedupeKey cannot.
func TestDedupeKeyKeepsChildrenApart(t *testing.T) {
	parent, err := NewEvent("order.created", nil, Meta{IdempotencyKey: "req-1"})
	require.NoError(t, err)
	child, err := NewChild(parent, "order.created", nil, Meta{}) // even of the same type
	require.NoError(t, err)
	sibling, err := NewChild(parent, "payment.requested", nil, Meta{})
	require.NoError(t, err)
	grandchild, err := NewChild(child, "order.created", nil, Meta{})
	require.NoError(t, err)

	keys := map[string]string{}
	for name, ev := range map[string]Event{"parent": parent, "child": child, "sibling": sibling, "grandchild": grandchild} {
		k := DedupeKey(ev)
		require.Len(t, k, 64)
		for other, ok := range keys {
			assert.NotEqual(t, ok, k, "%s collides with %s", name, other)
		}
		keys[name] = k
	}

	// A true repeat still deduplicates: the same write again, and a child
	// re-created when its parent is redelivered.
	again, err := NewEvent("order.created", nil, Meta{IdempotencyKey: "req-1"})
	require.NoError(t, err)
	assert.Equal(t, DedupeKey(parent), DedupeKey(again))
	redo, err := NewChild(parent, "payment.requested", nil, Meta{})
	require.NoError(t, err)
	assert.Equal(t, DedupeKey(sibling), DedupeKey(redo))

	noKey, err := NewEvent("x", nil, Meta{})
	require.NoError(t, err)
	assert.Empty(t, DedupeKey(noKey), "no key, no deduplication")

	// Length-prefixed parts: moving characters between parts changes the key.
	a := Event{Type: "b:c", Meta: Meta{IdempotencyKey: "a"}}
	b := Event{Type: "c", Meta: Meta{IdempotencyKey: "a:b"}}
	assert.NotEqual(t, DedupeKey(a), DedupeKey(b))
}

func TestEqual(t *testing.T) {
	a := mustUnmarshal(t, `{"type":"t","payload":{},"meta":{"id":"1","timestamp":"2026-04-28T10:00:00.000Z","aggregate":{"type":"A"},"k":1}}`)
	b := a
	b.Meta.Timestamp = a.Meta.Timestamp.In(time.FixedZone("x", 3600))
	assert.True(t, a.Equal(b))
	for name, mutate := range map[string]func(*Event){
		"type": func(e *Event) { e.Type = "u" }, "payload": func(e *Event) { e.Payload = json.RawMessage(`[]`) },
		"id": func(e *Event) { e.Meta.ID = "2" }, "time": func(e *Event) { e.Meta.Timestamp = e.Meta.Timestamp.Add(1) },
		"aggregate": func(e *Event) { e.Meta.Aggregate = &Aggregate{Type: "B"} }, "no aggregate": func(e *Event) { e.Meta.Aggregate = nil },
		"extra": func(e *Event) { e.Meta.Extra = map[string]json.RawMessage{"k": json.RawMessage(`2`)} },
		"user":  func(e *Event) { e.Meta.UserID = "u" }, "version": func(e *Event) { e.Meta.SchemaVersion = 1 },
	} {
		c := a
		mutate(&c)
		assert.False(t, a.Equal(c), name)
	}
}

// A payload built from a Go value carries U+2028 and U+2029 raw, as
// JSON.stringify writes them; an escaped backslash before "u2028" is left
// alone.
func TestNewEventWritesLineSeparatorsRaw(t *testing.T) {
	t.Parallel()
	ev, err := NewEvent("x.y", map[string]string{"a": "1\u2028 2\u2029", "b": `\u2028`}, Meta{})
	require.NoError(t, err)
	assert.Equal(t, `{"a":"1`+"\u2028"+` 2`+"\u2029"+`","b":"\\u2028"}`, string(ev.Payload))
}

func TestTypeLengthCountsUTF16Units(t *testing.T) {
	assert.Error(t, ValidateType(strings.Repeat("😀", 129)), "258 JavaScript characters")
	assert.NoError(t, ValidateType(strings.Repeat("😀", 128)))
}

func TestDedupeKeyKeepsSameTypeSiblings(t *testing.T) {
	parent, err := NewEvent("order.created", nil, Meta{IdempotencyKey: "req-1"})
	require.NoError(t, err)
	child := func(to string) Event {
		ev, err := NewChild(parent, "email.send", map[string]string{"to": to}, Meta{})
		require.NoError(t, err)
		return ev
	}
	a, b, again := child("a@x"), child("b@x"), child("a@x")
	assert.NotEqual(t, DedupeKey(a), DedupeKey(b))
	assert.Equal(t, DedupeKey(a), DedupeKey(again))
}
