package registry

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Sources of the rules:
//   - confluent: Confluent Schema Registry's JSON Schema checker,
//     io.confluent.kafka.schemaregistry.json.diff (Difference.Type and the
//     COMPATIBLE_CHANGES set of SchemaDiff), checked as "the new schema
//     reads data of the old" (BACKWARD);
//   - asyncapi: the AsyncAPI diff tool's (asyncapi/diff) breaking-change
//     classes for payload schemas: a removed property, a required property
//     added, a type changed, an enum value removed are "breaking", an
//     optional property added and a description changed "non-breaking";
//   - arcmill: where arcmill decides differently, said in the package doc.
var compatRules = []struct {
	name, source string
	old, new     string
	rule         string // "" when backward compatible
	pointer      string
}{
	// Types.
	{"type widened integer to number", "confluent TYPE_EXTENDED (compatible)",
		`{"type":"integer"}`, `{"type":"number"}`, "", ""},
	{"type narrowed number to integer", "confluent TYPE_NARROWED",
		`{"type":"number"}`, `{"type":"integer"}`, "TYPE_NARROWED", "/type"},
	{"type changed", "confluent TYPE_CHANGED; asyncapi: type changed is breaking",
		`{"type":"object","properties":{"id":{"type":"string"}}}`, `{"type":"object","properties":{"id":{"type":"integer"}}}`,
		"TYPE_CHANGED", "/properties/id/type"},
	{"type list loses null", "confluent TYPE_NARROWED (sum type narrowed)",
		`{"type":["string","null"]}`, `{"type":"string"}`, "TYPE_NARROWED", "/type"},
	{"type list gains null", "confluent TYPE_EXTENDED (compatible)",
		`{"type":"string"}`, `{"type":["string","null"]}`, "", ""},
	{"type added where any was allowed", "confluent TYPE_NARROWED",
		`{}`, `{"type":"string"}`, "TYPE_NARROWED", "/type"},
	{"schema added where there was none", "confluent TYPE_NARROWED; a definition without a schema accepts anything",
		``, `{"type":"object"}`, "TYPE_NARROWED", "/type"},
	{"schema dropped", "confluent: the empty schema reads anything (compatible)",
		`{"type":"object","required":["a"]}`, ``, "", ""},
	// Objects: required and the content model.
	{"optional property added to an open object", "asyncapi: optional property added is non-breaking; arcmill (Confluent's strict PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL is not applied)",
		`{"type":"object","properties":{"a":{"type":"string"}}}`, `{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}}}`, "", ""},
	{"required property added", "confluent REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL; asyncapi: required property added is breaking",
		`{"type":"object","properties":{"a":{"type":"string"}}}`, `{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"required":["b"]}`,
		"REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", "/properties/b"},
	{"existing property made required", "confluent REQUIRED_ATTRIBUTE_ADDED",
		`{"type":"object","properties":{"a":{"type":"string"}}}`, `{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}`,
		"REQUIRED_ATTRIBUTE_ADDED", "/properties/a"},
	{"required dropped", "confluent REQUIRED_ATTRIBUTE_REMOVED (compatible)",
		`{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}`, `{"type":"object","properties":{"a":{"type":"string"}}}`, "", ""},
	{"additionalProperties closed", "confluent ADDITIONAL_PROPERTIES_REMOVED",
		`{"type":"object","properties":{"a":{"type":"string"}}}`, `{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}`,
		"ADDITIONAL_PROPERTIES_REMOVED", "/additionalProperties"},
	{"additionalProperties opened", "confluent ADDITIONAL_PROPERTIES_ADDED (compatible)",
		`{"type":"object","additionalProperties":false}`, `{"type":"object"}`, "", ""},
	{"additionalProperties given a schema", "confluent ADDITIONAL_PROPERTIES_NARROWED",
		`{"type":"object"}`, `{"type":"object","additionalProperties":{"type":"string"}}`, "ADDITIONAL_PROPERTIES_NARROWED", "/additionalProperties"},
	{"property removed from a closed object", "confluent PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL; asyncapi: property removed is breaking",
		`{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"additionalProperties":false}`,
		`{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}`,
		"PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", "/properties/b"},
	{"property removed from an open object", "confluent PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL (compatible)",
		`{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}}}`, `{"type":"object","properties":{"a":{"type":"string"}}}`, "", ""},
	{"property removed, not covered by additionalProperties", "confluent PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
		`{"type":"object","properties":{"b":{"type":"integer"}},"additionalProperties":{"type":"string"}}`, `{"type":"object","additionalProperties":{"type":"string"}}`,
		"PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "/properties/b"},
	{"property removed, covered by additionalProperties", "confluent PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL (compatible)",
		`{"type":"object","properties":{"b":{"type":"string"}},"additionalProperties":{"type":"string"}}`, `{"type":"object","additionalProperties":{"type":"string"}}`, "", ""},
	{"property added, not covered by the old additionalProperties", "confluent PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
		`{"type":"object","additionalProperties":{"type":"string"}}`, `{"type":"object","properties":{"n":{"type":"integer"}},"additionalProperties":{"type":"string"}}`,
		"PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "/properties/n"},
	{"property added to a closed object", "confluent PROPERTY_ADDED_TO_CLOSED_CONTENT_MODEL... old data never has it (compatible)",
		`{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}`,
		`{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"additionalProperties":false}`, "", ""},
	{"maxProperties added", "confluent MAX_PROPERTIES_ADDED", `{"type":"object"}`, `{"type":"object","maxProperties":3}`, "MAX_PROPERTIES_ADDED", "/maxProperties"},
	{"minProperties increased", "confluent MIN_PROPERTIES_INCREASED", `{"type":"object","minProperties":1}`, `{"type":"object","minProperties":2}`, "MIN_PROPERTIES_INCREASED", "/minProperties"},
	// Enums.
	{"enum value removed", "confluent ENUM_ARRAY_NARROWED; asyncapi: enum value removed is breaking",
		`{"type":"object","properties":{"s":{"enum":["new","paid","shipped"]}}}`, `{"type":"object","properties":{"s":{"enum":["new","paid"]}}}`,
		"ENUM_ARRAY_NARROWED", "/properties/s/enum"},
	{"enum value added", "confluent ENUM_ARRAY_EXTENDED (compatible)",
		`{"enum":["new"]}`, `{"enum":["new","paid"]}`, "", ""},
	{"enum added to a free string", "confluent ENUM_ARRAY_NARROWED",
		`{"type":"string"}`, `{"type":"string","enum":["a"]}`, "ENUM_ARRAY_NARROWED", "/enum"},
	{"const changed", "confluent ENUM_ARRAY_NARROWED (const is a one-value enum)",
		`{"const":"a"}`, `{"const":"b"}`, "ENUM_ARRAY_NARROWED", "/const"},
	// Numbers.
	{"maximum added", "confluent MAXIMUM_ADDED", `{"type":"integer"}`, `{"type":"integer","maximum":10}`, "MAXIMUM_ADDED", "/maximum"},
	{"maximum decreased", "confluent MAXIMUM_DECREASED", `{"type":"integer","maximum":10}`, `{"type":"integer","maximum":5}`, "MAXIMUM_DECREASED", "/maximum"},
	{"maximum increased", "confluent MAXIMUM_INCREASED (compatible)", `{"type":"integer","maximum":5}`, `{"type":"integer","maximum":10}`, "", ""},
	{"minimum increased", "confluent MINIMUM_INCREASED", `{"type":"number","minimum":0}`, `{"type":"number","minimum":1}`, "MINIMUM_INCREASED", "/minimum"},
	{"minimum removed", "confluent MINIMUM_REMOVED (compatible)", `{"type":"number","minimum":0}`, `{"type":"number"}`, "", ""},
	{"exclusiveMinimum added", "confluent EXCLUSIVE_MINIMUM_ADDED", `{"type":"number"}`, `{"type":"number","exclusiveMinimum":0}`, "EXCLUSIVE_MINIMUM_ADDED", "/exclusiveMinimum"},
	{"exclusiveMaximum implied by a lower maximum", "arcmill: bounds of either kind compared (x <= 5 implies x < 10)",
		`{"type":"number","maximum":5}`, `{"type":"number","exclusiveMaximum":10}`, "", ""},
	{"multipleOf added", "confluent MULTIPLE_OF_ADDED", `{"type":"number"}`, `{"type":"number","multipleOf":2}`, "MULTIPLE_OF_ADDED", "/multipleOf"},
	{"multipleOf expanded", "confluent MULTIPLE_OF_EXPANDED", `{"type":"integer","multipleOf":2}`, `{"type":"integer","multipleOf":4}`, "MULTIPLE_OF_EXPANDED", "/multipleOf"},
	{"multipleOf reduced", "confluent MULTIPLE_OF_REDUCED (compatible)", `{"type":"integer","multipleOf":4}`, `{"type":"integer","multipleOf":2}`, "", ""},
	{"multipleOf changed", "confluent MULTIPLE_OF_CHANGED", `{"type":"integer","multipleOf":2}`, `{"type":"integer","multipleOf":3}`, "MULTIPLE_OF_CHANGED", "/multipleOf"},
	{"numeric bound on a string is moot", "JSON Schema: maximum applies to numbers only",
		`{"type":"string"}`, `{"type":"string","maximum":3}`, "", ""},
	// Strings.
	{"maxLength added", "confluent MAX_LENGTH_ADDED", `{"type":"string"}`, `{"type":"string","maxLength":10}`, "MAX_LENGTH_ADDED", "/maxLength"},
	{"maxLength decreased", "confluent MAX_LENGTH_DECREASED", `{"type":"string","maxLength":10}`, `{"type":"string","maxLength":5}`, "MAX_LENGTH_DECREASED", "/maxLength"},
	{"minLength increased", "confluent MIN_LENGTH_INCREASED", `{"type":"string","minLength":1}`, `{"type":"string","minLength":2}`, "MIN_LENGTH_INCREASED", "/minLength"},
	{"pattern added", "confluent PATTERN_ADDED", `{"type":"string"}`, `{"type":"string","pattern":"^a"}`, "PATTERN_ADDED", "/pattern"},
	{"pattern changed", "confluent PATTERN_CHANGED (even when wider: regex inclusion is not computed)",
		`{"type":"string","pattern":"^ab"}`, `{"type":"string","pattern":"^a"}`, "PATTERN_CHANGED", "/pattern"},
	{"format changed", "arcmill: format is an annotation in 2020-12 and not asserted by the validator",
		`{"type":"string","format":"email"}`, `{"type":"string","format":"uuid"}`, "", ""},
	{"description changed", "asyncapi: description changed is non-breaking",
		`{"type":"string","description":"a"}`, `{"type":"string","description":"b"}`, "", ""},
	// Arrays.
	{"item type narrowed", "confluent TYPE_NARROWED inside items",
		`{"type":"array","items":{"type":"number"}}`, `{"type":"array","items":{"type":"integer"}}`, "TYPE_NARROWED", "/items/type"},
	{"maxItems added", "confluent MAX_ITEMS_ADDED", `{"type":"array"}`, `{"type":"array","maxItems":3}`, "MAX_ITEMS_ADDED", "/maxItems"},
	{"minItems increased", "confluent MIN_ITEMS_INCREASED", `{"type":"array","minItems":1}`, `{"type":"array","minItems":2}`, "MIN_ITEMS_INCREASED", "/minItems"},
	{"uniqueItems added", "confluent UNIQUE_ITEMS_ADDED", `{"type":"array"}`, `{"type":"array","uniqueItems":true}`, "UNIQUE_ITEMS_ADDED", "/uniqueItems"},
	{"tuple item narrowed", "confluent TYPE_NARROWED inside prefixItems",
		`{"type":"array","prefixItems":[{"type":"string"},{"type":"number"}]}`, `{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}]}`,
		"TYPE_NARROWED", "/prefixItems/1/type"},
	// References and what is not decided.
	{"narrowing behind a $ref", "arcmill: local $refs are followed",
		`{"type":"object","properties":{"a":{"$ref":"#/$defs/A"}},"$defs":{"A":{"type":"number"}}}`,
		`{"type":"object","properties":{"a":{"$ref":"#/$defs/A"}},"$defs":{"A":{"type":"integer"}}}`, "TYPE_NARROWED", "/properties/a/type"},
	{"recursive schema unchanged", "arcmill: recursive $refs end the walk",
		`{"$defs":{"N":{"type":"object","properties":{"next":{"$ref":"#/$defs/N"}}}},"$ref":"#/$defs/N"}`,
		`{"$defs":{"N":{"type":"object","properties":{"next":{"$ref":"#/$defs/N"}}}},"$ref":"#/$defs/N"}`, "", ""},
	{"recursive schema narrowed deep down", "arcmill: recursive $refs are compared",
		`{"$defs":{"N":{"type":"object","properties":{"v":{"type":"number"},"next":{"$ref":"#/$defs/N"}}}},"$ref":"#/$defs/N"}`,
		`{"$defs":{"N":{"type":"object","properties":{"v":{"type":"integer"},"next":{"$ref":"#/$defs/N"}}}},"$ref":"#/$defs/N"}`,
		"TYPE_NARROWED", "/properties/v/type"},
	{"oneOf of disjoint types extended", "confluent SUM_TYPE_EXTENDED (compatible)",
		`{"oneOf":[{"type":"string"},{"type":"integer"}]}`, `{"oneOf":[{"type":"string"},{"type":"integer"},{"type":"null"}]}`, "", ""},
	{"anyOf branch removed", "confluent SUM_TYPE_NARROWED",
		`{"anyOf":[{"type":"string"},{"type":"integer"}]}`, `{"anyOf":[{"type":"string"}]}`, "SUM_TYPE_NARROWED", "/anyOf"},
	{"nullable dropped", "confluent TYPE_NARROWED (the null branch of the old oneOf is no longer read)",
		`{"oneOf":[{"type":"null"},{"type":"string"}]}`, `{"type":"string"}`, "TYPE_NARROWED", "/type"},
	{"anyOf rewritten as a type list", "confluent: same values, compatible",
		`{"anyOf":[{"type":"string"},{"type":"null"}]}`, `{"type":["string","null"]}`, "", ""},
	{"branch narrowed inside a nullable oneOf", "confluent SUM_TYPE_NARROWED",
		`{"oneOf":[{"type":"null"},{"type":"number"}]}`, `{"oneOf":[{"type":"null"},{"type":"integer"}]}`, "SUM_TYPE_NARROWED", "/oneOf"},
	{"overlapping oneOf changed", "confluent COMBINED_TYPE_CHANGED: not decided, reported (conservative)",
		`{"oneOf":[{"type":"number"},{"type":"string"}]}`, `{"oneOf":[{"type":"number"},{"minimum":0}]}`, "COMBINED_TYPE_CHANGED", "/oneOf"},
	{"allOf branch added", "confluent PRODUCT_TYPE_NARROWED",
		`{"type":"object"}`, `{"type":"object","allOf":[{"required":["a"]}]}`, "PRODUCT_TYPE_NARROWED", "/allOf/0"},
	{"allOf unchanged", "confluent: no difference",
		`{"allOf":[{"required":["a"]},{"type":"object"}]}`, `{"allOf":[{"required":["a"]},{"type":"object"}]}`, "", ""},
	{"not changed", "arcmill: not is compared by value only (conservative)",
		`{"not":{"type":"null"}}`, `{"not":{"type":"string"}}`, "UNCHECKED_KEYWORD_CHANGED", "/not"},
	{"anyOf unchanged", "arcmill: an identical combinator is compatible",
		`{"anyOf":[{"type":"string"},{"type":"null"}]}`, `{"anyOf":[{"type":"string"},{"type":"null"}]}`, "", ""},
	{"reader false", "confluent: a false schema reads nothing",
		`{"type":"string"}`, `false`, "TYPE_NARROWED", ""},
}

func TestCompatibilityRules(t *testing.T) {
	t.Parallel()
	for _, tc := range compatRules {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Check(CompatBackward, def(2, tc.new), []Definition{def(1, tc.old)})
			if tc.rule == "" {
				assert.NoError(t, err, "source: %s", tc.source)
				return
			}
			var ie *IncompatibleError
			require.ErrorAs(t, err, &ie, "source: %s", tc.source)
			require.NotEmpty(t, ie.Changes)
			assert.Equal(t, tc.rule, ie.Changes[0].Rule, "source: %s; changes: %v", tc.source, ie.Changes)
			assert.Equal(t, tc.pointer, ie.Changes[0].Pointer, "source: %s", tc.source)
			assert.Equal(t, NewReadsOld, ie.Changes[0].Direction)
			assert.Equal(t, 1, ie.Changes[0].Against)
			assert.ErrorIs(t, err, ErrIncompatible)
		})
	}
}

func def(version int, schema string) Definition {
	d := Definition{Name: "order.created", Version: version}
	if schema != "" {
		d.Schema = json.RawMessage(schema)
	}
	return d
}

// The modes, with Confluent's meanings, on a change that breaks one way
// only: an optional property made required breaks BACKWARD (new readers
// meet old data without it) and is FORWARD compatible; dropping
// required is the opposite.
func TestCompatibilityModes(t *testing.T) {
	t.Parallel()
	optional := `{"type":"object","properties":{"a":{"type":"string"}}}`
	required := `{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}`
	for _, tc := range []struct {
		mode     Compatibility
		old, new string
		breaks   bool
	}{
		{CompatNone, optional, required, false},
		{CompatBackward, optional, required, true},
		{CompatForward, optional, required, false},
		{CompatFull, optional, required, true},
		{CompatBackward, required, optional, false},
		{CompatForward, required, optional, true},
		{CompatFull, required, optional, true},
		{CompatFullTransitive, optional, optional, false},
	} {
		err := Check(tc.mode, def(2, tc.new), []Definition{def(1, tc.old)})
		if !tc.breaks {
			assert.NoError(t, err, "%s", tc.mode)
			continue
		}
		var ie *IncompatibleError
		require.ErrorAs(t, err, &ie, "%s", tc.mode)
		assert.Equal(t, tc.mode, ie.Mode)
		if tc.mode == CompatForward {
			assert.Equal(t, OldReadsNew, ie.Changes[0].Direction)
			assert.Contains(t, ie.Changes[0].Detail, "optional in the new schema, required in the old")
		}
	}
}

// Transitive modes check every earlier version; the others the latest only.
func TestCompatibilityTransitive(t *testing.T) {
	t.Parallel()
	v1 := def(1, `{"type":"object","properties":{"s":{"enum":["a","b"]}}}`)
	v2 := def(2, `{"type":"object","properties":{"s":{"enum":["a"]}}}`) // removes b: breaks v1's data
	v3 := def(3, `{"type":"object","properties":{"s":{"enum":["a"]}}}`)
	assert.NoError(t, Check(CompatBackward, v3, []Definition{v1, v2}), "against v2 only")
	err := Check(CompatBackwardTransitive, v3, []Definition{v2, v1})
	var ie *IncompatibleError
	require.ErrorAs(t, err, &ie)
	require.Len(t, ie.Changes, 1)
	assert.Equal(t, 1, ie.Changes[0].Against)
	assert.Equal(t, "/properties/s/enum", ie.Changes[0].Pointer)
	assert.Contains(t, ie.Changes[0].Detail, `"b"`)
	// Other events and later versions are not earlier versions.
	other := Definition{Name: "x", Version: 1, Schema: json.RawMessage(`{"type":"string"}`)}
	assert.NoError(t, Check(CompatFullTransitive, v3, []Definition{other, def(4, `{"type":"null"}`)}))
}

func TestCompatibilityParse(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Compatibility{"backward": CompatBackward, "FULL-TRANSITIVE": CompatFullTransitive, " none ": CompatNone} {
		got, err := ParseCompatibility(in)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	_, err := ParseCompatibility("sideways")
	assert.ErrorIs(t, err, ErrUnknownCompatibility)
	assert.ErrorIs(t, Check("sideways", def(2, ""), nil), ErrUnknownCompatibility)
	assert.ErrorIs(t, Check(CompatBackward, def(2, `{`), []Definition{def(1, `{}`)}), ErrInvalidSchema)
}

// Register enforces the mode of the registry, or of the event.
func TestRegisterChecksCompatibility(t *testing.T) {
	t.Parallel()
	r := New(Config{Compatibility: CompatBackward, EventCompatibility: map[string]Compatibility{"order.noted": CompatNone}})
	require.NoError(t, r.Register(def(1, `{"type":"object","properties":{"id":{"type":"string"}}}`)))
	err := r.Register(def(2, `{"type":"object","properties":{"id":{"type":"string"},"total":{"type":"number"}},"required":["total"],"additionalProperties":false}`))
	require.ErrorIs(t, err, ErrIncompatible)
	var ie *IncompatibleError
	require.True(t, errors.As(err, &ie))
	assert.Equal(t, "order.created", ie.Event)
	assert.Equal(t, 2, ie.Version)
	var rules []string
	for _, c := range ie.Changes {
		rules = append(rules, c.Pointer+" "+c.Rule)
	}
	assert.Equal(t, []string{"/properties/total REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", "/additionalProperties ADDITIONAL_PROPERTIES_REMOVED"}, rules)
	assert.Contains(t, err.Error(), `event "order.created" v2 breaks BACKWARD compatibility (2 changes)`)
	_, ok := r.Get("order.created", 2)
	assert.False(t, ok, "a refused version is not registered")
	require.NoError(t, r.Register(def(2, `{"type":"object","properties":{"id":{"type":"string"},"total":{"type":"number"}}}`)))

	// The per-event override.
	require.NoError(t, r.Register(Definition{Name: "order.noted", Schema: json.RawMessage(`{"type":"string"}`)}))
	require.NoError(t, r.Register(Definition{Name: "order.noted", Version: 2, Schema: json.RawMessage(`{"type":"integer"}`)}))

	bad := New(Config{EventCompatibility: map[string]Compatibility{"a": "SIDEWAYS"}})
	assert.ErrorIs(t, bad.Register(Definition{Name: "a"}), ErrUnknownCompatibility)
}
