package registry

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// anyOfConsts is {"anyOf":[{"const":from},…]} with n branches.
func anyOfConsts(n, from int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`{"const":%d}`, from+i)
	}
	return `{"anyOf":[` + strings.Join(parts, ",") + `]}`
}

// enumStrings is {"enum":["v<from>",…]} with n values.
func enumStrings(n, from int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"v%d"`, from+i)
	}
	return `{"enum":[` + strings.Join(parts, ",") + `]}`
}

// refPaths is a chain of n $defs each referring twice to the next: 2^n
// paths through n small definitions, ending in {"type": leaf}.
func refPaths(n int, leaf string) string {
	parts := make([]string, 0, n+1)
	for i := range n {
		parts = append(parts, fmt.Sprintf(`"a%d":{"type":"object","properties":{"x":{"$ref":"#/$defs/a%d"},"y":{"$ref":"#/$defs/a%d"}}}`, i, i+1, i+1))
	}
	parts = append(parts, fmt.Sprintf(`"a%d":{"type":%q}`, n, leaf))
	return `{"$ref":"#/$defs/a0","$defs":{` + strings.Join(parts, ",") + `}}`
}

func changesOf(t *testing.T, err error) []Change {
	t.Helper()
	var ie *IncompatibleError
	require.ErrorAs(t, err, &ie)
	return ie.Changes
}

func rulesOf(changes []Change) map[string]int {
	out := map[string]int{}
	for _, c := range changes {
		out[c.Rule]++
	}
	return out
}

// Bug: two $refs to the next definition, 40 deep, made the walk follow
// 2^40 paths (a few hundred bytes of schema never finished). The walk is
// bounded and says where it stopped.
func TestCheckBoundsExponentialRefPaths(t *testing.T) {
	t.Parallel()
	err := Check(CompatFull, def(2, refPaths(40, "integer")), []Definition{def(1, refPaths(40, "number"))})
	changes := changesOf(t, err)
	assert.LessOrEqual(t, len(changes), 2*(maxChanges+1))
	assert.Equal(t, 2, rulesOf(changes)["UNCHECKED_TOO_COMPLEX"], "one per direction: %v", rulesOf(changes))
	assert.Equal(t, "TYPE_NARROWED", changes[0].Rule)
}

// Bug: anyOf branches were compared pairwise with every change's detail
// formatted and then dropped: 2,000 branches each side cost seconds per
// direction. A list that only grows costs one comparison per branch; one
// with no branch in common is bounded and reported.
func TestCheckBoundsAnyOfBranches(t *testing.T) {
	t.Parallel()
	assert.NoError(t, Check(CompatBackward, def(2, anyOfConsts(2001, 0)), []Definition{def(1, anyOfConsts(2000, 0))}))
	err := Check(CompatFull, def(2, anyOfConsts(2000, 2000)), []Definition{def(1, anyOfConsts(2000, 0))})
	changes := changesOf(t, err)
	assert.Equal(t, 2, rulesOf(changes)["UNCHECKED_TOO_COMPLEX"], "%v", rulesOf(changes))
	assert.Positive(t, rulesOf(changes)["SUM_TYPE_NARROWED"])
	assert.LessOrEqual(t, len(changes), 2*(maxChanges+1))
}

// Bug: enums were compared value against value (10,000 each side: 10^8
// comparisons), and a detail listed every removed value.
func TestCheckEnumOfTenThousandValues(t *testing.T) {
	t.Parallel()
	changes := changesOf(t, Check(CompatBackward, def(2, enumStrings(9999, 1)), []Definition{def(1, enumStrings(10000, 0))}))
	require.Len(t, changes, 1)
	assert.Equal(t, "ENUM_ARRAY_NARROWED", changes[0].Rule)
	assert.Equal(t, `value "v0" of the old schema is not allowed by the new`, changes[0].Detail)

	changes = changesOf(t, Check(CompatBackward, def(2, enumStrings(10000, 10000)), []Definition{def(1, enumStrings(10000, 0))}))
	require.Len(t, changes, 1)
	assert.Contains(t, changes[0].Detail, `"v9", and 9990 more`)
	assert.Less(t, len(changes[0].Detail), 500)

	// Values equal as JSON are equal: 1 and 1.0, -0 and 0, objects in any key order.
	assert.NoError(t, Check(CompatBackward, def(2, `{"enum":[1.0,0,{"b":[1],"a":null}]}`), []Definition{def(1, `{"enum":[{"a":null,"b":[1]},-0,1]}`)}))
}

// A large ordinary schema is compared in full, within the bound.
func TestCheckLargeSchemaWithinBound(t *testing.T) {
	t.Parallel()
	gen := func(leaf string) string {
		props := make([]string, 2000)
		for i := range props {
			props[i] = fmt.Sprintf(`"p%d":{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"},"c":{"type":"boolean"},"d":{"type":"array","items":{"type":"string"}},"e":{"type":%q}}}`, i, "number")
		}
		props[1999] = `"last":{"type":` + leaf + `}`
		return `{"type":"object","properties":{` + strings.Join(props, ",") + `}}`
	}
	changes := changesOf(t, Check(CompatFullTransitive, def(3, gen(`"integer"`)), []Definition{def(1, gen(`"number"`)), def(2, gen(`"number"`))}))
	assert.Equal(t, map[string]int{"TYPE_NARROWED": 2}, rulesOf(changes))
}

// Bug: a schema nested deeper than maxDepth broke itself (the depth
// notice was a change), so re-registering an unchanged deep version under
// any mode failed. Identical documents are compatible.
func TestCheckIdenticalDeepSchema(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat(`{"type":"array","items":`, 100) + `{"type":"string"}` + strings.Repeat(`}`, 100)
	for _, mode := range compatModes {
		assert.NoError(t, Check(mode, def(2, deep), []Definition{def(1, deep)}), "%s", mode)
	}
	r := New(Config{Compatibility: CompatFull})
	require.NoError(t, r.Register(def(1, deep)))
	require.NoError(t, r.Register(def(2, deep)))
	// Changed, it is still reported as not compared.
	changed := strings.Replace(deep, `"string"`, `"integer"`, 1)
	changes := changesOf(t, Check(CompatBackward, def(2, changed), []Definition{def(1, deep)}))
	assert.Equal(t, "UNCHECKED_KEYWORD_CHANGED", changes[0].Rule)
	assert.Contains(t, changes[0].Detail, "deeper than 64 levels")
}

// An array index in a JSON Pointer is decimal digits only (RFC 6901).
func TestPointerGetArrayIndex(t *testing.T) {
	t.Parallel()
	var doc any
	require.NoError(t, json.Unmarshal([]byte(`{"a":["x","y"]}`), &doc))
	for ptr, want := range map[string]any{"/a/0": "x", "/a/1": "y", "/a/1x": nil, "/a/01": nil, "/a/+1": nil, "/a/-1": nil, "/a/2": nil, "/a/": nil} {
		got, ok := pointerGet(doc, ptr)
		assert.Equal(t, want != nil, ok, ptr)
		if want != nil {
			assert.Equal(t, want, got, ptr)
		}
	}
}

// A detail quotes patterns and values: one of megabytes is cut short.
func TestCheckDetailBounded(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 1<<20)
	changes := changesOf(t, Check(CompatBackward, def(2, `{"type":"string","pattern":"`+long+`"}`), []Definition{def(1, `{"type":"string","pattern":"a"}`)}))
	require.Len(t, changes, 1)
	assert.Equal(t, "PATTERN_CHANGED", changes[0].Rule)
	assert.LessOrEqual(t, len(changes[0].Detail), maxDetail+len("…"))
	assert.True(t, utf8.ValidString(changes[0].Detail))
}
