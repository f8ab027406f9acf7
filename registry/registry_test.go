package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// An Arc-style schema, as Arc apps write them.
const orderSchemaV1 = `{"type":"object","properties":{"orderId":{"type":"string"},"total":{"type":"number"}},"required":["orderId"]}`
const orderSchemaV2 = `{"type":"object","properties":{"orderId":{"type":"string"},"total":{"type":"number"},
	"items":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string"},"qty":{"type":"integer","minimum":1}},"required":["sku","qty"]}},
	"status":{"enum":["new","paid"]}},"required":["orderId","total"]}`

func newOrders(t *testing.T) *Registry {
	t.Helper()
	r := New(Config{})
	require.NoError(t, r.Register(Definition{Name: "order.created", Description: "An order was placed", Schema: json.RawMessage(orderSchemaV1)}))
	require.NoError(t, r.Register(Definition{Name: "order.created", Version: 2, Schema: json.RawMessage(orderSchemaV2)}))
	require.NoError(t, r.Register(Definition{Name: "order.noted"})) // no schema
	return r
}

func TestRegisterAndGet(t *testing.T) {
	r := newOrders(t)
	err := r.Register(Definition{Name: "order.created", Version: 2})
	require.ErrorIs(t, err, ErrDuplicate)
	assert.Contains(t, err.Error(), "Event 'order.created' v2 is already registered. Use a different version number for schema evolution.")
	err = r.Register(Definition{Name: "order.created", Schema: json.RawMessage(`{}`)})
	assert.ErrorIs(t, err, ErrDuplicate, "version defaults to 1")

	d, ok := r.Get("order.created", 0)
	require.True(t, ok)
	assert.Equal(t, 2, d.Version, "latest")
	d, ok = r.Get("order.created", 1)
	require.True(t, ok)
	assert.Equal(t, "An order was placed", d.Description)
	_, ok = r.Get("order.created", 3)
	assert.False(t, ok)
	_, ok = r.Get("nope", 0)
	assert.False(t, ok)

	assert.Error(t, r.Register(Definition{}))
	assert.Error(t, r.Register(Definition{Name: "x", Version: -1}))
}

// Arc's validate: version given → that version only; none → latest;
// unknown name or version, or no schema → valid.
func TestValidateFollowsArc(t *testing.T) {
	r := newOrders(t)
	v1only := json.RawMessage(`{"orderId":"o-1"}`) // valid for v1, not v2 (total required)
	assert.NoError(t, r.Validate("order.created", v1only, 1))
	assert.ErrorIs(t, r.Validate("order.created", v1only, 2), ErrValidation)
	assert.ErrorIs(t, r.Validate("order.created", v1only, 0), ErrValidation, "no version: the latest")
	assert.NoError(t, r.Validate("order.created", v1only, 3), "unknown version: valid, no fallback")
	assert.NoError(t, r.Validate("nope", json.RawMessage(`42`), 0), "unknown name: valid")
	assert.NoError(t, r.Validate("order.noted", json.RawMessage(`"anything"`), 0), "no schema: valid")
}

func TestViolationsHaveJSONPointerPaths(t *testing.T) {
	r := newOrders(t)
	err := r.Validate("order.created", json.RawMessage(`{"orderId":7,"total":"x","status":"lost",
		"items":[{"sku":"a","qty":1},{"sku":"b","qty":0},{"qty":1.5}]}`), 2)
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	paths := map[string]string{}
	for _, v := range ve.Violations {
		paths[v.Path] += v.Message
	}
	for _, p := range []string{"/orderId", "/total", "/status", "/items/1/qty", "/items/2", "/items/2/qty"} {
		assert.Contains(t, paths, p)
	}
	assert.Contains(t, paths["/items/2"], "sku")
	assert.Contains(t, err.Error(), `event "order.created" v2: `)

	err = r.Validate("order.created", json.RawMessage(`{"orderId":`), 1)
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, "", ve.Violations[0].Path)
	assert.Contains(t, ve.Violations[0].Message, "not JSON")

	assert.Equal(t, "/a~1b/c~0d", pointer([]string{"a/b", "c~d"}))
}

// The rows of the package doc's table: where Arc's hand-written validator
// and JSON Schema disagree, we follow JSON Schema.
func TestWhereArcAndJSONSchemaDisagree(t *testing.T) {
	r := New(Config{})
	reg := func(name, schema string) {
		require.NoError(t, r.Register(Definition{Name: name, Schema: json.RawMessage(schema)}))
	}
	reg("int", `{"type":"object","properties":{"n":{"type":"integer"}}}`)
	reg("nested", `{"type":"object","properties":{"a":{"type":"object","properties":{"b":{"type":"string"}}}}}`)
	reg("nullable", `{"type":"object","properties":{"s":{"type":"string"}}}`)
	reg("union", `{"type":"object","properties":{"s":{"type":["string","null"]}}}`)
	reg("array", `{"type":"array","items":{"type":"number"}}`)
	reg("req", `{"type":"object","required":["a"]}`)
	cases := []struct {
		name, payload string
		valid         bool
	}{
		{"int", `{"n":5}`, true},           // Arc: always fails ("integer" is not a typeof)
		{"int", `{"n":5.5}`, false},        // Arc: fails too, for the wrong reason
		{"nested", `{"a":{"b":1}}`, false}, // Arc: no recursion, passes
		{"nullable", `{"s":null}`, false},  // Arc: null is never type-checked, passes
		{"union", `{"s":null}`, true},      // Arc: a type array always fails
		{"array", `[1,"x"]`, false},        // Arc: acts only on type "object", passes
		{"req", `{"a":null}`, true},        // both: present, even null
		{"req", `[]`, false},               // both: not an object
	}
	for _, c := range cases {
		err := r.Validate(c.name, json.RawMessage(c.payload), 0)
		assert.Equal(t, c.valid, err == nil, "%s %s: %v", c.name, c.payload, err)
	}
}

func TestInvalidSchemaFailsRegistration(t *testing.T) {
	r := New(Config{})
	for name, schema := range map[string]string{
		"not JSON":      `{"type":`,
		"bad type":      `{"type":5}`,
		"bad keyword":   `{"minLength":-1}`,
		"remote ref":    `{"$ref":"https://example.com/schema.json"}`,
		"dangling ref":  `{"$ref":"#/$defs/nope"}`,
		"bad regexp":    `{"pattern":"("}`,
		"unknown draft": `{"$schema":"https://example.com/my-draft"}`,
	} {
		err := r.Register(Definition{Name: name, Schema: json.RawMessage(schema)})
		assert.ErrorIs(t, err, ErrInvalidSchema, name)
	}
	assert.Empty(t, r.Catalog(), "nothing half-registered")
	// Other drafts, by $schema.
	require.NoError(t, r.Register(Definition{Name: "d7", Schema: json.RawMessage(
		`{"$schema":"http://json-schema.org/draft-07/schema#","items":[{"type":"string"}]}`)}))
	assert.Error(t, r.Validate("d7", json.RawMessage(`[1]`), 0), "draft-07 tuple items")
}

type order struct {
	OrderID string    `json:"orderId"`
	Total   float64   `json:"total"`
	Note    string    `json:"note,omitempty"`
	Placed  time.Time `json:"placedAt"`
}

func TestTypedDefinitions(t *testing.T) {
	def, err := Define[order](Definition{Name: "order.created", Version: 3, Description: "typed"})
	require.NoError(t, err)
	r := New(Config{})
	require.NoError(t, r.Register(def.Definition()))

	// The generated schema: json names, omitempty optional, types checked.
	assert.NoError(t, r.Validate("order.created", json.RawMessage(`{"orderId":"o","total":1,"placedAt":"2026-04-28T10:00:00Z"}`), 3))
	err = r.Validate("order.created", json.RawMessage(`{"orderId":1,"placedAt":"2026-04-28T10:00:00Z"}`), 3)
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Len(t, ve.Violations, 2, "orderId's type and total missing: %v", ve)

	placed := time.Date(2026, 4, 28, 10, 0, 0, 0, time.UTC)
	ev, err := def.Create(order{OrderID: "o-1", Total: 99, Placed: placed}, arc.Meta{UserID: "u"})
	require.NoError(t, err)
	assert.Equal(t, 3, ev.Meta.SchemaVersion, "stamped as Arc's create() does")
	assert.Equal(t, "u", ev.Meta.UserID)
	assert.NoError(t, r.Validate(ev.Type, ev.Payload, ev.Meta.SchemaVersion))
	ev2, err := def.Create(order{}, arc.Meta{SchemaVersion: 7})
	require.NoError(t, err)
	assert.Equal(t, 7, ev2.Meta.SchemaVersion, "the caller's version wins")

	got, err := def.Decode(ev)
	require.NoError(t, err)
	assert.Equal(t, order{OrderID: "o-1", Total: 99, Placed: placed}, got)
	_, err = def.Decode(arc.Event{Type: "other", Payload: ev.Payload})
	assert.ErrorIs(t, err, arc.ErrUnrecoverable)
	_, err = def.Decode(arc.Event{Type: "order.created", Payload: json.RawMessage(`{"total":"x"}`)})
	assert.ErrorIs(t, err, arc.ErrUnrecoverable)

	// A given schema is used as written.
	def2, err := Define[order](Definition{Name: "order.loose", Schema: json.RawMessage(`{"type":"object"}`)})
	require.NoError(t, err)
	assert.JSONEq(t, `{"type":"object"}`, string(def2.Definition().Schema))
	_, err = Define[order](Definition{Name: "bad", Schema: json.RawMessage(`{"type":1}`)})
	assert.ErrorIs(t, err, ErrInvalidSchema)
	assert.Panics(t, func() { MustDefine[order](Definition{}) })
}

func TestConcurrentUse(t *testing.T) {
	r := newOrders(t)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				assert.NoError(t, r.Validate("order.created", json.RawMessage(`{"orderId":"o","total":1}`), 0))
				_ = r.Catalog() // the catalog is not checked here: reading it races the writers
			}
		}()
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				require.NoError(t, r.Register(Definition{Name: fmt.Sprintf("e%d.%d", w, i), Schema: json.RawMessage(`{"type":"object"}`)}))
			}
		}(w)
	}
	wg.Wait()
	assert.Len(t, r.Catalog(), 3+200)
}

func TestCatalogs(t *testing.T) {
	r := newOrders(t)
	require.NoError(t, r.Register(Definition{Name: "order:placed", Schema: json.RawMessage(
		`{"type":"object","properties":{"zeta":{},"alpha":{}},"required":["zeta"]}`)}))
	names := []string{}
	for _, d := range r.Catalog() {
		names = append(names, fmt.Sprintf("%s v%d", d.Name, d.Version))
	}
	assert.Equal(t, []string{"order.created v1", "order.created v2", "order.noted v1", "order:placed v1"}, names, "registration order")

	arcCat := r.ArcCatalog()
	b, err := json.Marshal(arcCat)
	require.NoError(t, err)
	assert.Contains(t, string(b), `{"name":"order.created","version":1,"description":"An order was placed","hasSchema":true,"schemaFields":["orderId","total"],"requiredFields":["orderId"]}`)
	assert.Contains(t, string(b), `{"name":"order.noted","version":1,"description":"","hasSchema":false,"schemaFields":[],"requiredFields":[]}`)
	assert.Equal(t, []string{"zeta", "alpha"}, arcCat[3].SchemaFields, "the schema's own key order, as Object.keys")

	doc, err := r.AsyncAPI(AsyncAPIInfo{Title: "Orders", Version: "1.0.0"})
	require.NoError(t, err)
	var api struct {
		AsyncAPI string `json:"asyncapi"`
		Info     struct{ Title string }
		Channels map[string]struct {
			Address  string
			Messages map[string]struct {
				Ref string `json:"$ref"`
			}
		}
		Components struct {
			Messages map[string]struct {
				Name    string
				Payload json.RawMessage
				Version int `json:"x-arc-version"`
				Summary string
			}
			Schemas map[string]json.RawMessage
		}
	}
	require.NoError(t, json.Unmarshal(doc, &api))
	assert.Equal(t, "3.0.0", api.AsyncAPI)
	assert.Equal(t, "Orders", api.Info.Title)
	ch := api.Channels["order.created"]
	assert.Equal(t, "order.created", ch.Address)
	assert.Equal(t, "#/components/messages/order.created.v2", ch.Messages["order.created.v2"].Ref)
	assert.Len(t, ch.Messages, 2, "one message per version")
	assert.Equal(t, "order:placed", api.Channels["order_placed"].Address, "keys sanitised, address kept")
	m := api.Components.Messages["order.created.v1"]
	assert.Equal(t, 1, m.Version)
	assert.Equal(t, "An order was placed", m.Summary)
	assert.JSONEq(t, orderSchemaV1, string(m.Payload))
	assert.JSONEq(t, `{}`, string(api.Components.Messages["order.noted.v1"].Payload))
	assert.Contains(t, api.Components.Schemas, "ArcDomainEvent")
	for id, msg := range api.Components.Messages {
		assert.Regexp(t, `^[a-zA-Z0-9\.\-_]+$`, id)
		_ = msg
	}
}

var _ = errors.New

// Found by the suite: a schema with relative $ids must register (the base
// URL of a compilation must be hierarchical).
func TestRelativeIDs(t *testing.T) {
	r := New(Config{})
	require.NoError(t, r.Register(Definition{Name: "order:placed", Schema: json.RawMessage(`{
		"$id": "/schemas/order.json", "$ref": "int.json",
		"$defs": {"int": {"$id": "int.json", "type": "integer"}}}`)}))
	assert.NoError(t, r.Validate("order:placed", json.RawMessage(`5`), 0))
	assert.Error(t, r.Validate("order:placed", json.RawMessage(`"x"`), 0))
}

func TestRejectUnknownVersions(t *testing.T) {
	arcRules := New(Config{})
	arcRules.MustRegister(Definition{Name: "order.created", Version: 2, Schema: json.RawMessage(`{"type":"object"}`)})
	assert.NoError(t, arcRules.Validate("order.created", json.RawMessage(`{}`), 3), "Arc: an unknown version is valid")

	strict := New(Config{RejectUnknownVersions: true})
	strict.MustRegister(Definition{Name: "order.created", Version: 2, Schema: json.RawMessage(`{"type":"object"}`)})
	err := strict.Validate("order.created", json.RawMessage(`{}`), 3)
	assert.ErrorIs(t, err, ErrUnknownVersion)
	assert.Contains(t, err.Error(), "registered: [2]")
	assert.NoError(t, strict.Validate("order.created", json.RawMessage(`{}`), 2))
	assert.NoError(t, strict.Validate("order.created", json.RawMessage(`{}`), 0), "no version: the latest")
	assert.NoError(t, strict.Validate("unknown.event", json.RawMessage(`{}`), 3), "unregistered names stay opt-in")
}

// Typed Create refuses a payload timestamp Node reads as Invalid Date,
// unless asked not to.
func TestTypedCreateChecksDatesUnlessAllowed(t *testing.T) {
	t.Parallel()
	type stamped struct {
		Timestamp string `json:"timestamp"`
	}
	def := MustDefine[stamped](Definition{Name: "audit.logged"})
	_, err := def.Create(stamped{Timestamp: "yesterday"}, arc.Meta{})
	require.Error(t, err)
	ev, err := def.Create(stamped{Timestamp: "yesterday"}, arc.Meta{}, arc.AllowInvalidDates())
	require.NoError(t, err)
	assert.JSONEq(t, `{"timestamp":"yesterday"}`, string(ev.Payload))
}
