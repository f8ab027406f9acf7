// Package registry is Arc's defineEvent and createEventRegistry with real
// JSON Schema: event definitions (name, version, description, payload
// schema, optionally a Go type), a registry that validates payloads against
// the schema of the event's version, and a catalog exported in Arc's shape
// and as an AsyncAPI 3.0 document.
//
// Schemas are compiled once, at registration, by
// github.com/santhosh-tekuri/jsonschema/v6 (draft 2020-12 unless a schema
// names another draft with $schema), the only Go validator that passes the
// whole official test suite. A Registry is a middleware.Validator: give it to
// middleware.ValidatingPublisher (Arc's validateMode on publish) and to
// middleware.NewStack (validation on consume).
//
// Registry.Validate keeps Arc's rules: with a version, that version only;
// without, the latest; an unknown name or version, or a definition without
// a schema, is valid. A failure lists every violation with a JSON Pointer
// path.
//
// # Arc's validator and JSON Schema
//
// Arc-style schemas ({"type":"object","properties":{…},"required":[…]})
// work as written. Arc validates them with a hand-written validator that
// reads only a subset; where it disagrees with JSON Schema, arcmill follows
// JSON Schema:
//
//	schema / payload                              Arc 2.11              arcmill (JSON Schema)
//	{"type":"integer"} with 5                     invalid (typeof)      valid
//	nested object with a wrong inner type         valid (no recursion)  invalid
//	array items, enum, pattern, minimum, $ref…    ignored               checked
//	{"type":"string"} with null                   valid (null skipped)  invalid; use ["string","null"]
//	{"type":["string","null"]} with null          invalid (always)      valid
//	top-level "type" other than "object"          everything valid      checked
//	"required" with a null value                  valid (present)       valid (present)
//	payload not an object, type "object"          invalid               invalid
//
// Schemas generated from Go types (Define without a Schema) come from
// github.com/invopop/jsonschema: the most used Go library for it, kept up to
// date, emitting 2020-12 and honouring json and jsonschema struct tags.
package registry
