package registry

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ParseCatalog reads back what the registry exports, and Arc's catalog().
func TestParseCatalog(t *testing.T) {
	t.Parallel()
	r := newOrders(t)

	// Registry.Catalog marshalled, and Arc's catalog() (lower-case keys,
	// a definition without a schema carries null or nothing).
	goJSON, err := json.Marshal(r.Catalog())
	require.NoError(t, err)
	arcJSON := `[{"name":"order.created","version":1,"description":"An order was placed","schema":` + orderSchemaV1 + `},
		{"name":"order.created","version":2,"description":"","schema":` + orderSchemaV2 + `},
		{"name":"order.noted","version":1,"description":"","schema":null}]`
	asyncJSON, err := r.AsyncAPI(AsyncAPIInfo{Title: "orders", Version: "1"})
	require.NoError(t, err)

	for name, doc := range map[string][]byte{"Catalog": goJSON, "arc catalog()": []byte(arcJSON), "AsyncAPI": asyncJSON} {
		defs, err := ParseCatalog(doc)
		require.NoError(t, err, name)
		require.Len(t, defs, 3, name)
		byKey := map[string]Definition{}
		for _, d := range defs {
			byKey[fmt.Sprintf("%s/%d", d.Name, d.Version)] = d
		}
		assert.JSONEq(t, orderSchemaV1, string(byKey["order.created/1"].Schema), name)
		assert.JSONEq(t, orderSchemaV2, string(byKey["order.created/2"].Schema), name)
		assert.Equal(t, "An order was placed", byKey["order.created/1"].Description, name)
		noted := byKey["order.noted/1"].Schema
		assert.True(t, len(noted) == 0 || string(noted) == "{}", "%s: %s", name, noted)
	}
}

func TestParseCatalogAsyncAPIForms(t *testing.T) {
	t.Parallel()
	doc := `{"asyncapi":"3.0.0","info":{"title":"t","version":"1"},
	  "channels":{"orders":{"address":"order.created","messages":{"inline":{"payload":{"schemaFormat":"application/schema+json;version=draft-07","schema":{"type":"string"}}}}}},
	  "components":{"messages":{"Paid":{"payload":{"$ref":"#/components/schemas/Paid"}}},"schemas":{"Paid":{"type":"integer"}}}}`
	defs, err := ParseCatalog([]byte(doc))
	require.NoError(t, err)
	require.Len(t, defs, 2)
	assert.Equal(t, "Paid", defs[0].Name)
	assert.JSONEq(t, `{"type":"integer"}`, string(defs[0].Schema))
	assert.Equal(t, "order.created", defs[1].Name)
	assert.Equal(t, 1, defs[1].Version)
	assert.JSONEq(t, `{"type":"string"}`, string(defs[1].Schema))

	for _, bad := range []string{`{"eventCatalog":[]}`, `{"openapi":"3.1.0"}`, `{"asyncapi":"2.6.0"}`, `[{"version":1}]`, `nope`,
		`[{"name":"a","version":-1}]`, `{"asyncapi":"3.0.0","components":{"messages":{"m":{"name":"a","x-arc-version":-2}}}}`,
		// Found by FuzzParseCatalog: a message keyed "" without a name
		// became a definition without a name.
		`{"asyncapi":"3.","ChAnnels":{"":{"messAges":{"":{}}}}}`,
		`{"asyncapi":"3.0.0","components":{"messages":{"x":{"payload":{"$ref":"#/components/schemas/missing"}}}}}`,
		// A message that is a $ref to no message, or to something else,
		// was read as a message with no payload, which accepts anything.
		`{"asyncapi":"3.0.0","components":{"messages":{"x":{"$ref":"#/components/messages/missing"}}}}`,
		`{"asyncapi":"3.0.0","components":{"messages":{"x":{"$ref":"other.yaml#/components/messages/x"}}}}`,
		`{"asyncapi":"3.0.0","channels":{"c":{"messages":{"x":{"$ref":"#/components/messages/missing"}}}}}`} {
		_, err := ParseCatalog([]byte(bad))
		assert.ErrorIs(t, err, ErrInvalidCatalog, bad)
	}
}

// A message that is a $ref to another is that message, read once under
// its own key, not a definition of its own with no schema.
func TestParseCatalogAsyncAPIMessageRefs(t *testing.T) {
	t.Parallel()
	doc := `{"asyncapi":"3.0.0",
	  "channels":{"orders":{"messages":{"paid":{"$ref":"#/components/messages/Paid"}}}},
	  "components":{"messages":{"Alias":{"$ref":"#/components/messages/Paid"},
	    "Paid":{"name":"order.paid","payload":{"type":"integer"}}}}}`
	defs, err := ParseCatalog([]byte(doc))
	require.NoError(t, err)
	require.Len(t, defs, 1)
	assert.Equal(t, "order.paid", defs[0].Name)
	assert.JSONEq(t, `{"type":"integer"}`, string(defs[0].Schema))
}

// Bug: a component schema referring to another ($ref
// "#/components/schemas/Item", the usual AsyncAPI layout) was read alone,
// its $ref left dangling, and a narrowing behind it passed the check.
func TestParseCatalogAsyncAPINestedRefs(t *testing.T) {
	t.Parallel()
	doc := func(item string) []byte {
		return []byte(`{"asyncapi":"3.0.0","components":{"messages":{"Order":{"name":"order","payload":{"$ref":"#/components/schemas/Order"}},
		  "Named":{"name":"named","payload":{"type":"object","properties":{"a":{"$ref":"#/components/schemas/a~1b"},"b":{"$ref":"#/components/schemas/c%20d"}}}}},
		  "schemas":{"Order":{"type":"object","properties":{"item":{"$ref":"#/components/schemas/Item"},"self":{"$ref":"#/components/schemas/Order"}}},
		  "Item":{"type":` + item + `},"a/b":{"type":"string"},"c d":{"$ref":"#/components/schemas/Item"}}}}`)
	}
	oldDefs, err := ParseCatalog(doc(`"number"`))
	require.NoError(t, err)
	newDefs, err := ParseCatalog(doc(`"integer"`))
	require.NoError(t, err)
	require.Len(t, newDefs, 2)
	for i, next := range newDefs {
		next.Version = 2
		changes := changesOf(t, Check(CompatBackward, next, oldDefs))
		require.Len(t, changes, 1, "%s: %v", next.Name, changes)
		assert.Equal(t, "TYPE_NARROWED", changes[0].Rule)
		assert.Equal(t, []string{"/properties/b/type", "/properties/item/type"}[i], changes[0].Pointer)
		assert.NoError(t, Check(CompatFull, next, []Definition{newDefs[i]}), "unchanged")

		// The payload with what it reaches is a schema the registry compiles.
		r := New(Config{})
		require.NoError(t, r.Register(next))
		assert.ErrorIs(t, r.Validate(next.Name, json.RawMessage(`{"item":1.5,"b":1.5}`), 2), ErrValidation)
		assert.NoError(t, r.Validate(next.Name, json.RawMessage(`{"item":1,"b":1,"a":"x"}`), 2))
	}

	// Many messages each reaching many schemas would multiply the
	// document; past 8 times its size it is refused.
	var msgs, schemas []string
	for i := range 300 {
		msgs = append(msgs, fmt.Sprintf(`"m%d":{"payload":{"$ref":"#/components/schemas/s0"}}`, i))
		schemas = append(schemas, fmt.Sprintf(`"s%d":{"items":{"$ref":"#/components/schemas/s%d"}}`, i, i+1))
	}
	schemas = append(schemas, `"s300":{}`)
	_, err = ParseCatalog([]byte(`{"asyncapi":"3.0.0","components":{"messages":{` + strings.Join(msgs, ",") + `},"schemas":{` + strings.Join(schemas, ",") + `}}}`))
	assert.ErrorIs(t, err, ErrInvalidCatalog)
	assert.ErrorContains(t, err, "expand to more than 8 times the document")
}
