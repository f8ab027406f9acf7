package crud

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// Values are written as JSON.stringify writes them, and String(x) is
// JavaScript's.
func TestValue_JSONAndJSString(t *testing.T) {
	t.Parallel()
	raw := func(s string) Value {
		v, err := RawValue(json.RawMessage(s))
		require.NoError(t, err)
		return v
	}
	for _, tc := range []struct {
		v        Value
		json, js string
	}{
		{String("u<7>&"), `"u<7>&"`, "u<7>&"},
		{String("a\u2028b"), "\"a\u2028b\"", "a\u2028b"},
		{String(""), `""`, ""},
		{Int(42), `42`, "42"},
		{Int(-7), `-7`, "-7"},
		{Null(), `null`, "null"},
		{raw(` 1.0 `), `1`, "1"},
		{raw(`1e21`), `1e+21`, "1e+21"},
		{raw(`0.000001`), `0.000001`, "0.000001"},
		{raw(`1e-7`), `1e-7`, "1e-7"},
		{raw(`"\u0041\u003c"`), `"A<"`, "A<"},
		{raw(`true`), `true`, "true"},
		{raw(`{"a":1}`), `{"a":1}`, "[object Object]"},
		{raw(`[1,null,"x",[2,3],{}]`), `[1,null,"x",[2,3],{}]`, "1,,x,2,3,[object Object]"},
	} {
		assert.Equal(t, tc.json, string(tc.v.JSON()), "%#v", tc.v)
		assert.Equal(t, tc.js, tc.v.JSString(), "%#v", tc.v)
		assert.False(t, tc.v.IsAbsent())
	}
	assert.True(t, Absent.IsAbsent())
	assert.Nil(t, Absent.JSON())
	assert.Equal(t, "undefined", Absent.JSString())
	assert.Equal(t, "<absent>", fmt.Sprintf("%#v", Absent))
	assert.True(t, Null().IsNull())
	assert.Equal(t, Absent, raw(""))
	assert.Equal(t, Absent, StringOrAbsent(""))
	assert.Equal(t, String("x"), StringOrAbsent("x"))

	_, err := RawValue(json.RawMessage(`{"a":`))
	assert.ErrorIs(t, err, ErrInvalidChange)
	_, err = RawValue(json.RawMessage(`1 2`))
	assert.ErrorIs(t, err, ErrInvalidChange)
}

// RouteUserID is Arc's createRequestContext: String(id) when id is
// truthy, else no user id.
func TestRouteUserID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Value{
		`42`:     String("42"),
		`1.5`:    String("1.5"),
		`"u-7"`:  String("u-7"),
		`true`:   String("true"),
		`{}`:     String("[object Object]"),
		`0`:      Absent,
		`-0`:     Absent,
		`0.0`:    Absent,
		`""`:     Absent,
		`false`:  Absent,
		`null`:   Absent,
		``:       Absent,
		`"0"`:    String("0"), // a non-empty string is truthy
		`[]`:     String(""),  // an empty array is truthy, String([]) is ""
		`"\u00"`: Absent,      // not JSON: RawValue refuses it; Absent goes in
	} {
		v, err := RawValue(json.RawMessage(in))
		if err != nil {
			v = Absent
		}
		assert.Equal(t, want, RouteUserID(v), in)
	}
}

// Scope values reach both payload and meta as Arc writes them; "" and
// null, which the typed meta fields cannot hold, are still written.
func TestChange_ScopeValues(t *testing.T) {
	t.Parallel()
	ev, err := Created("order", map[string]int{"id": 1},
		Scope{UserID: String(""), OrganizationID: Null()})
	require.NoError(t, err)
	var p map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(ev.Payload, &p))
	assert.JSONEq(t, `""`, string(p["userId"]))
	assert.JSONEq(t, `null`, string(p["organizationId"]))
	b, err := arc.Marshal(ev)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"resourceId":"1","userId":"","organizationId":null}`)

	// Decoded by an Arc-layout consumer, the event comes back the same.
	var back arc.Event
	require.NoError(t, arc.Unmarshal(b, &back))
	b2, err := arc.Marshal(back)
	require.NoError(t, err)
	assert.Equal(t, string(b), string(b2))

	ev, err = Created("order", map[string]int{"id": 1}, Scope{UserID: Int(42), OrganizationID: Int(7)})
	require.NoError(t, err)
	assert.Equal(t, "42", ev.Meta.UserID)
	assert.JSONEq(t, `7`, string(ev.Meta.Extra["organizationId"]))
	require.NoError(t, json.Unmarshal(ev.Payload, &p))
	assert.Equal(t, `42`, string(p["userId"]))
}
