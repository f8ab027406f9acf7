package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/registry"
)

// writeFile writes a catalog into the test's directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func schemaCheck(t *testing.T, args ...string) result {
	t.Helper()
	return runBinary(t, strings.NewReader(""), os.Environ(), append([]string{"schema", "check"}, args...)...)
}

// Arc's catalog() shape.
const catalogV1 = `[
 {"name":"order.created","version":1,"description":"An order was placed",
  "schema":{"type":"object","properties":{"orderId":{"type":"string"},"status":{"enum":["new","paid","shipped"]}},"required":["orderId"]}},
 {"name":"order.noted","version":1,"description":"","schema":null}
]`

// v2 adds an optional property: compatible in every mode.
const catalogCompatible = `[
 {"name":"order.created","version":1,"description":"An order was placed",
  "schema":{"type":"object","properties":{"orderId":{"type":"string"},"status":{"enum":["new","paid","shipped"]}},"required":["orderId"]}},
 {"name":"order.created","version":2,"description":"",
  "schema":{"type":"object","properties":{"orderId":{"type":"string"},"status":{"enum":["new","paid","shipped"]},"note":{"type":"string"}},"required":["orderId"]}},
 {"name":"order.noted","version":1,"description":"","schema":null}
]`

// v2 requires a new property and drops an enum value; order.noted is gone.
const catalogBreaking = `[
 {"name":"order.created","version":1,"description":"An order was placed",
  "schema":{"type":"object","properties":{"orderId":{"type":"string"},"status":{"enum":["new","paid","shipped"]}},"required":["orderId"]}},
 {"name":"order.created","version":2,"description":"",
  "schema":{"type":"object","properties":{"orderId":{"type":"string"},"status":{"enum":["new","paid"]},"total":{"type":"number"}},"required":["orderId","total"]}}
]`

func TestSchemaCheck_PassesACompatibleCatalog(t *testing.T) {
	t.Parallel()
	r := schemaCheck(t, writeFile(t, "old.json", catalogV1), writeFile(t, "new.json", catalogCompatible))
	assert.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "ok: 1 new or changed version(s) compatible under BACKWARD")
	r = schemaCheck(t, writeFile(t, "old.json", catalogV1), writeFile(t, "new.json", catalogCompatible), "--mode", "full_transitive")
	assert.Equal(t, exitOK, r.code, r.stdout+r.stderr)
}

func TestSchemaCheck_NamesEachBreakingChangeAndExits1(t *testing.T) {
	t.Parallel()
	old, next := writeFile(t, "old.json", catalogV1), writeFile(t, "new.json", catalogBreaking)
	r := schemaCheck(t, old, next)
	assert.Equal(t, exitFailure, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "order.created v2 (against v1) /properties/total REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL")
	assert.Contains(t, r.stdout, "order.created v2 (against v1) /properties/status/enum ENUM_ARRAY_NARROWED")
	assert.Contains(t, r.stdout, "note: event order.noted is not in the new catalog")
	assert.Contains(t, r.stderr, "arcmill schema: 2 breaking changes")

	// FORWARD: old consumers read the new data; requiring more and
	// allowing fewer values is fine that way.
	r = schemaCheck(t, old, next, "--mode", "FORWARD")
	assert.Equal(t, exitOK, r.code, r.stdout+r.stderr)

	r = schemaCheck(t, old, next, "--format", "json")
	assert.Equal(t, exitFailure, r.code)
	var report schemaReport
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &report), r.stdout)
	assert.False(t, report.Compatible)
	require.Len(t, report.Changes, 2)
	assert.Equal(t, "/properties/total", report.Changes[0].Pointer)
	assert.Equal(t, string(registry.NewReadsOld), report.Changes[0].Direction)
}

// A version edited in place is checked against what it was; an AsyncAPI
// document from Registry.AsyncAPI compares with Arc's catalog() JSON.
func TestSchemaCheck_AsyncAPIAndEditedVersions(t *testing.T) {
	t.Parallel()
	reg := registry.New(registry.Config{})
	reg.MustRegister(registry.Definition{Name: "order.created", Schema: json.RawMessage(
		`{"type":"object","properties":{"orderId":{"type":"string"},"status":{"enum":["new","paid"]}},"required":["orderId"]}`)})
	doc, err := reg.AsyncAPI(registry.AsyncAPIInfo{Title: "orders", Version: "2"})
	require.NoError(t, err)
	r := schemaCheck(t, writeFile(t, "old.json", catalogV1), writeFile(t, "asyncapi.json", string(doc)))
	assert.Equal(t, exitFailure, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "order.created v1 (against v1) /properties/status/enum ENUM_ARRAY_NARROWED")
	assert.Contains(t, r.stdout, `value "shipped" of the old schema is not allowed by the new`)

	r = schemaCheck(t, writeFile(t, "a.json", string(doc)), writeFile(t, "b.json", string(doc)))
	assert.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "ok: 0 new or changed version(s)")
}

func TestSchemaCheck_ExitCodes(t *testing.T) {
	t.Parallel()
	good := writeFile(t, "good.json", catalogV1)
	r := schemaCheck(t, good, filepath.Join(t.TempDir(), "missing.json"))
	assert.Equal(t, exitNotFound, r.code, r.stderr)
	assert.Contains(t, r.stderr, "no such file")
	r = schemaCheck(t, good, writeFile(t, "describe.json", `{"eventCatalog":[]}`))
	assert.Equal(t, exitUsage, r.code, r.stderr)
	assert.Contains(t, r.stderr, "registry.catalog()")
	r = schemaCheck(t, good, good, "--mode", "sideways")
	assert.Equal(t, exitUsage, r.code, r.stderr)
	r = schemaCheck(t, good)
	assert.Equal(t, exitUsage, r.code, r.stderr)
	r = runBinary(t, strings.NewReader(""), os.Environ(), "schema", "diff", good, good)
	assert.Equal(t, exitUsage, r.code, r.stderr)
	r = runBinary(t, strings.NewReader(""), os.Environ(), "schema", "--help")
	assert.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stdout, "Examples:")
	assert.Contains(t, r.stdout, "--mode")
}

// A catalog file is foreign input: one larger than the bound is refused
// before it is read whole.
func TestSchemaCheck_FileTooLarge(t *testing.T) {
	t.Parallel()
	good := writeFile(t, "good.json", catalogV1)
	big := writeFile(t, "big.json", catalogV1)
	require.NoError(t, os.Truncate(big, maxCatalogBytes+1)) // sparse: cheap to make
	r := schemaCheck(t, good, big)
	assert.Equal(t, exitUsage, r.code, r.stderr)
	assert.Contains(t, r.stderr, "big.json: larger than 32 MiB, refused as a catalog")

	// At the bound exactly, the file is read (and here, not JSON).
	require.NoError(t, os.Truncate(big, maxCatalogBytes))
	r = schemaCheck(t, good, big)
	assert.Equal(t, exitUsage, r.code, r.stderr)
	assert.Contains(t, r.stderr, "not a catalog")
}

// Transitive modes compare every version with every earlier one: a
// catalog of thousands of versions of one event took minutes, and is
// refused past the bound; a non-transitive mode checks it.
func TestSchemaCheck_TooManyVersionPairs(t *testing.T) {
	t.Parallel()
	var entries []string
	for v := 1; v <= 500; v++ {
		entries = append(entries, fmt.Sprintf(`{"name":"a","version":%d,"schema":{"type":"object","properties":{"p%d":{"type":"string"}}}}`, v, v))
	}
	old := writeFile(t, "old.json", `[{"name":"a","version":1,"schema":{"type":"object"}}]`)
	next := writeFile(t, "new.json", "["+strings.Join(entries, ",")+"]")
	r := schemaCheck(t, old, next, "--mode", "full_transitive")
	assert.Equal(t, exitUsage, r.code, r.stderr)
	assert.Contains(t, r.stderr, "under FULL_TRANSITIVE the catalogs need more than 100000 comparisons of two versions")
	r = schemaCheck(t, old, next, "--mode", "full")
	assert.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "ok: 500 new or changed version(s)")
}
