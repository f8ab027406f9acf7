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
// # Schema evolution
//
// Config.Compatibility (per event: Config.EventCompatibility) makes
// Register check a new version of an event against its registered lower
// versions, with Confluent Schema Registry's modes and meanings: BACKWARD,
// consumers on the new schema read data written with the earlier one;
// FORWARD, consumers on the earlier schema read data written with the new
// one; FULL, both; their _TRANSITIVE forms check against every earlier
// version, the others against the latest earlier one; NONE, the default,
// checks nothing (Arc's behaviour). A refused version is not registered;
// the error wraps ErrIncompatible and is an *IncompatibleError listing each
// breaking change with Confluent's rule name and the JSON Pointer of the
// keyword that changed. Check runs the same check on definitions outside a
// registry, and ParseCatalog reads Arc's catalog() JSON, Registry.Catalog
// marshalled or an AsyncAPI 3.0 document (`arcmill schema check`).
//
// Whether one JSON Schema accepts everything another accepts is
// undecidable in general, so the check is a set of rules, each sound on
// its own: a change it reports breaks some payload, with the exceptions
// below, where it reports what it cannot decide (conservative):
//
//   - not, if/then/else, patternProperties, dependentRequired,
//     dependentSchemas, propertyNames, contains, unevaluatedProperties/Items
//     and $refs to other documents are compared by value: any difference
//     is reported as UNCHECKED_KEYWORD_CHANGED, even one that widens;
//   - anyOf and allOf are compared branch by branch (SUM_TYPE_NARROWED,
//     PRODUCT_TYPE_NARROWED), which can report a change whose values are
//     still covered by several branches together; a oneOf is compared so
//     only when its branches have disjoint types (the nullable pattern),
//     otherwise any difference is COMBINED_TYPE_CHANGED;
//   - a changed pattern is PATTERN_CHANGED even when the new one accepts
//     more (regular-language inclusion is not computed), as in Confluent;
//   - a property removed under a reader whose patternProperties would
//     accept it is still reported;
//   - schemas nested deeper than 64 levels are reported, not walked;
//   - the work of one comparison is bounded (2^18 steps, 1,000 changes):
//     local $refs make a schema a graph with exponentially many paths, and
//     anyOf branches are compared pairwise, so a hostile or huge pair of
//     schemas stops there and the rest is reported as
//     UNCHECKED_TOO_COMPLEX, with the pointer where it stopped.
//
// Identical schemas are compatible under every mode, however deep or large.
//
// Local $refs (#, #/$defs/…) are followed, recursive ones included.
// Keywords that never change which payloads are valid (title,
// description, default, examples, format, which 2020-12 makes an
// annotation and the validator does not assert, x-…, and components,
// where ParseCatalog keeps the AsyncAPI schemas a payload refers to) are
// ignored.
//
// One rule is deliberately not conservative: adding an optional property
// to an open object (no additionalProperties) is compatible, as the
// AsyncAPI diff tool classes it. Confluent's checker reports it as
// PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL, because an old producer could have
// written that name with any value; arcmill follows the common practice
// that makes an optional field the ordinary way to evolve an event. Close
// the object (additionalProperties: false) to make the check exact.
//
// Schemas generated from Go types (Define without a Schema) come from
// github.com/invopop/jsonschema: the most used Go library for it, kept up to
// date, emitting 2020-12 and honouring json and jsonschema struct tags.
package registry
