package registry

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// seedSchemas returns the schemas of the compatibility table and of the
// JSON Schema test suite, as foreign documents to start fuzzing from.
func seedSchemas(t testing.TB) []string {
	var out []string
	for _, tc := range compatRules {
		out = append(out, tc.old, tc.new)
	}
	files, err := filepath.Glob("testdata/JSON-Schema-Test-Suite/tests/draft2020-12/*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var groups []struct {
			Schema json.RawMessage `json:"schema"`
		}
		if err := json.Unmarshal(data, &groups); err != nil {
			t.Fatal(err)
		}
		for _, g := range groups {
			out = append(out, string(g.Schema))
		}
	}
	return out
}

// checkResult is what the fuzz targets compare between two runs.
func checkResult(t *testing.T, err error) []Change {
	t.Helper()
	if err == nil {
		return nil
	}
	var ie *IncompatibleError
	switch {
	case errors.As(err, &ie):
		if !errors.Is(err, ErrIncompatible) || len(ie.Changes) == 0 {
			t.Fatalf("IncompatibleError without ErrIncompatible or changes: %v", err)
		}
		for _, c := range ie.Changes {
			if c.Rule == "" || c.Direction == "" || (c.Pointer != "" && !strings.HasPrefix(c.Pointer, "/")) {
				t.Fatalf("malformed change %+v", c)
			}
		}
		return ie.Changes
	case errors.Is(err, ErrInvalidSchema):
		return nil
	}
	t.Fatalf("Check: error wraps neither ErrIncompatible nor ErrInvalidSchema: %v", err)
	return nil
}

// FuzzCheck compares two foreign schemas under every mode: Check must end,
// give the same changes twice, and find a schema compatible with itself.
func FuzzCheck(f *testing.F) {
	seeds := seedSchemas(f)
	for i, s := range seeds {
		f.Add(s, seeds[(i+1)%len(seeds)])
	}
	// Hostile shapes: $ref loops and chains, escapes, many paths, many branches.
	for _, pair := range [][2]string{
		{`{"$ref":"#"}`, `{"$ref":"#","type":"string"}`},
		{`{"$ref":"#/a","a":{"$ref":"#/a"}}`, `{"$ref":"#/a","a":{"$ref":"#/b"},"b":{"$ref":"#/a"}}`},
		{`{"$defs":{"a/b~c":{"type":"number"},"x y":{"type":"number"}},"items":[{"$ref":"#/$defs/a~1b~0c"},{"$ref":"#/$defs/x%20y"}]}`,
			`{"$defs":{"a/b~c":{"type":"integer"},"x y":{"type":"integer"}},"items":[{"$ref":"#/$defs/a~1b~0c"},{"$ref":"#/$defs/x%20y"}]}`},
		{refPaths(8, "number"), refPaths(8, "integer")},
		{anyOfConsts(20, 0), anyOfConsts(20, 10)},
		{enumStrings(200, 0), enumStrings(200, 1)},
		{`{"oneOf":[{"type":"null"},{"$ref":"#/$defs/n"}],"$defs":{"n":{"type":"number"}}}`, `{"oneOf":[{"type":"null"},{"$ref":"#/$defs/n"}],"$defs":{"n":{"type":"integer"}}}`},
	} {
		f.Add(pair[0], pair[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		v1, v2, v3 := def(1, a), def(2, b), def(3, a)
		validA, validB := a == "" || json.Valid([]byte(a)), b == "" || json.Valid([]byte(b))
		for _, mode := range compatModes {
			err := Check(mode, v3, []Definition{v1, v2})
			got := checkResult(t, err)
			if again := checkResult(t, Check(mode, v3, []Definition{v2, v1})); !reflect.DeepEqual(got, again) {
				t.Fatalf("%s: two runs differ:\n%v\n%v", mode, got, again)
			}
			if errors.Is(err, ErrInvalidSchema) && validA && validB {
				t.Fatalf("%s: valid JSON refused: %v", mode, err)
			}
			// Against itself: v3 and v1 are the same document.
			if validA {
				if err := Check(mode, v3, []Definition{v1}); err != nil {
					t.Fatalf("%s: a schema breaks itself: %v", mode, err)
				}
			}
		}
		// The rules themselves, without Check's shortcut for identical
		// documents, find a schema compatible with itself except where
		// they bound their work (depth, budget).
		var doc, same any
		if json.Unmarshal([]byte(a), &doc) == nil && json.Unmarshal([]byte(a), &same) == nil {
			c := &comparer{wRoot: doc, rRoot: same, seen: map[[2]string]bool{}}
			c.schema(doc, same, "")
			if len(c.out) > 0 && !c.limited {
				t.Fatalf("a schema breaks itself: %v", c.out)
			}
		}
		// Through a registry: Register enforces the same result.
		mode := compatModes[len(a+b)%len(compatModes)]
		r := New(Config{Compatibility: mode})
		if r.Register(v1) != nil {
			return
		}
		err := r.Register(v2)
		if err != nil && !errors.Is(err, ErrIncompatible) && !errors.Is(err, ErrInvalidSchema) {
			t.Fatalf("Register: %v", err)
		}
	})
}

// FuzzParseCatalog reads foreign catalogs (Arc's JSON array, AsyncAPI
// 3.0): ParseCatalog must end, refuse with ErrInvalidCatalog, return the
// same definitions twice, and a catalog checked against itself is
// compatible.
func FuzzParseCatalog(f *testing.F) {
	seeds := seedSchemas(f)
	for i, s := range seeds[:min(len(seeds), 40)] {
		next := seeds[(i+1)%len(seeds)]
		f.Add([]byte(`[{"name":"a","version":1,"schema":` + s + `},{"name":"a","version":2,"schema":` + next + `}]`))
		f.Add([]byte(`{"asyncapi":"3.0.0","channels":{"c":{"address":"a","messages":{"m":{"payload":` + next + `},"r":{"$ref":"#/components/messages/A"}}}},
			"components":{"messages":{"A":{"name":"a","payload":{"$ref":"#/components/schemas/S"}},"B":{"name":"a","x-arc-version":2,
			"payload":{"schemaFormat":"application/schema+json;version=draft-07","schema":{"$ref":"#/components/schemas/T"}}}},
			"schemas":{"S":` + s + `,"T":` + next + `}}}`))
	}
	for _, s := range []string{`{"eventCatalog":[]}`, `{"openapi":"3.1.0"}`, `{"asyncapi":"2.6.0"}`, `[{"version":1}]`, `nope`, `[]`, `[{"name":"a","schema":null}]`,
		`{"asyncapi":"3.0.0","components":{"messages":{"x":{"payload":{"$ref":"#/components/schemas/missing"}}}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		defs, ok := parseTwice(t, data)
		if !ok {
			return
		}
		for _, d := range defs {
			if d.Name == "" || d.Version == 0 {
				t.Fatalf("definition without a name or version: %+v", d)
			}
			if len(d.Schema) > 0 && !json.Valid(d.Schema) {
				t.Fatalf("definition %s v%d: schema is not JSON: %q", d.Name, d.Version, d.Schema)
			}
			// The catalog against itself: every version is compatible
			// with its own schema.
			for _, mode := range []Compatibility{CompatFullTransitive, CompatFull} {
				earlier := d
				earlier.Version--
				checkResult(t, Check(mode, d, defs))
				if err := Check(mode, d, []Definition{earlier}); err != nil {
					t.Fatalf("%s v%d breaks itself: %v", d.Name, d.Version, err)
				}
			}
		}
	})
}

// FuzzAsyncAPIRefs builds an AsyncAPI document around a foreign payload
// and components.schemas: the $refs into components that ParseCatalog
// follows must end, and every one left in a payload must resolve in it.
func FuzzAsyncAPIRefs(f *testing.F) {
	f.Add(`{"$ref":"#/components/schemas/A"}`, `{"A":{"type":"object","properties":{"b":{"$ref":"#/components/schemas/B"}}},"B":{"type":"string"}}`)
	f.Add(`{"$ref":"#/components/schemas/A"}`, `{"A":{"$ref":"#/components/schemas/A"}}`)
	f.Add(`{"items":{"$ref":"#/components/schemas/a~1b/items"}}`, `{"a/b":{"items":{"$ref":"#/components/schemas/c%20d"}},"c d":{"enum":[1]}}`)
	f.Add(`{"schemaFormat":"application/schema+json","schema":{"$ref":"#/components/schemas/A"}}`, `{"A":true}`)
	f.Add(`{"$ref":"#/components/schemas/missing"}`, `{}`)
	f.Add(`{"components":{},"$ref":"#/components/schemas/A"}`, `{"A":{}}`)
	f.Fuzz(func(t *testing.T, payload, schemas string) {
		doc := []byte(`{"asyncapi":"3.0.0","components":{"messages":{"m":{"name":"m","payload":` + payload + `},
			"n":{"name":"m","x-arc-version":2,"payload":` + payload + `}},"schemas":` + schemas + `}}`)
		if !json.Valid(doc) {
			return
		}
		defs, ok := parseTwice(t, doc)
		if !ok {
			return
		}
		for _, d := range defs {
			var root any
			if len(d.Schema) == 0 {
				continue
			}
			if err := json.Unmarshal(d.Schema, &root); err != nil {
				t.Fatalf("schema is not JSON: %v", err)
			}
			var walk func(v any)
			walk = func(v any) {
				switch x := v.(type) {
				case map[string]any:
					if ref, ok := x["$ref"].(string); ok {
						// The schema it names is kept (the rest of the
						// pointer is the document's own business).
						if name, isComponent := componentName(ref); isComponent {
							if _, ok := pointerGet(root, "/components/schemas/"+escape(name)); !ok {
								t.Fatalf("$ref %q does not resolve in %s", ref, d.Schema)
							}
						}
					}
					for _, v := range x {
						walk(v)
					}
				case []any:
					for _, v := range x {
						walk(v)
					}
				}
			}
			walk(root)
		}
		if len(defs) == 2 {
			checkResult(t, Check(CompatFullTransitive, defs[1], defs[:1]))
			if err := Check(CompatFull, defs[1], []Definition{{Name: "m", Version: 1, Schema: defs[1].Schema}}); err != nil {
				t.Fatalf("a payload breaks itself: %v", err)
			}
		}
	})
}

// parseTwice runs ParseCatalog twice on data: the runs must agree, and an
// error must wrap ErrInvalidCatalog. ok is false when data was refused.
func parseTwice(t *testing.T, data []byte) (defs []Definition, ok bool) {
	t.Helper()
	defs, err := ParseCatalog(data)
	again, err2 := ParseCatalog(data)
	if (err == nil) != (err2 == nil) || !reflect.DeepEqual(defs, again) {
		t.Fatalf("two runs differ: %v %v", err, err2)
	}
	if err != nil {
		if !errors.Is(err, ErrInvalidCatalog) {
			t.Fatalf("error does not wrap ErrInvalidCatalog: %v", err)
		}
		return nil, false
	}
	return defs, true
}
