// Package arc is Arc's domain-event contract in Go: the Event and Meta types
// of Arc's DomainEvent and EventMeta, their wire JSON, the constructors
// NewEvent and NewChild (Arc's createEvent and createChildEvent), and a
// lossless mapping onto Watermill messages.
//
// The rule is Arc's interop rule: liberal in what is read, exact in what is
// written.
//
// # Reading
//
// Unmarshal refuses only what Arc's readers refuse: input that is not a JSON
// object, no non-empty string type, no meta object with a non-empty string
// id (Arc also accepts a truthy non-string id such as 420; arcmill does
// not, since a Watermill UUID is a string). Errors wrap ErrMalformedEvent.
// Everything else is delivered:
//
//   - the payload, any JSON value, as its exact bytes: a "timestamp" key in
//     it is never judged, whatever it holds;
//   - unknown meta keys, as raw JSON in Meta.Extra;
//   - known meta keys whose value the typed field cannot hold, also raw in
//     Meta.Extra: null ("userId":null), "", a value of another JSON type, a
//     string with a lone surrogate (\ud800), and a meta.timestamp that is
//     not an RFC 3339 string (a number, null, garbage);
//   - the order of the meta keys;
//   - every id as it came, so that distinct ids never collide: meta.id,
//     correlationId, causationId and idempotencyKey keep invalid UTF-8
//     bytes, and a lone surrogate (\ud800) as its WTF-8 bytes, in the typed
//     field (see Meta.ID), for the Watermill UUID, the correlation and
//     causation metadata and DedupeKey; Marshal writes them back as they
//     came.
//
// # Hostile input
//
// Foreign input is bounded on read, so that no entry can wedge a consumer:
// a payload nested deeper than DefaultMaxDepth-1 levels (1,000 with the
// event) or a type longer than DefaultMaxTypeBytes (64 KiB) is malformed,
// and so dead-lettered once with its bytes. Arc's own readers check
// neither, so the bounds sit far above anything Arc publishes (a type of
// at most 256 UTF-16 units); Limits sets others, or none.
//
// # Writing
//
// Marshal writes what JSON.stringify writes for the same JavaScript object:
// {"type","payload","meta"}; strings escaped as JSON.stringify escapes them
// (no HTML escaping, U+2028 and U+2029 raw, control characters as \n or
// \u00xx); payload and Extra bytes copied untouched; meta.timestamp as
// YYYY-MM-DDTHH:mm:ss.sssZ.
//
// Meta keys are written in the order the event had on the wire, and meta
// values kept raw in Extra are written as they came, so an event read and
// written again keeps its bytes, with these exceptions: the top-level keys
// are written type, payload, meta, and unknown top-level keys are dropped;
// white space outside the payload and Extra values is dropped; the
// aggregate object is written {"type","id"}; a typed meta field is written
// as JSON.stringify writes the value, so a meta.timestamp in another RFC
// 3339 form becomes …sssZ and needless escapes (\u0041, \/) become the
// character, as when Arc revives and re-serialises an event; a duplicate
// meta key is written once, with the last value, at the first key's place;
// a lone surrogate in type or a meta key name becomes U+FFFD; an id's lone
// surrogate escape is written in lower case (\uD800 as \ud800), as
// JSON.stringify writes it.
//
// Events built in Go are written in the order Arc's functions give:
// NewEvent as createEvent ({id, timestamp, ...meta}); NewChild as
// createChildEvent (id, timestamp, correlationId, causationId, the
// inherited userId, organizationId, source and idempotencyKey, then the
// caller's keys). "The caller's keys in the caller's order" is, for a Meta
// built in Go, the order of Meta's fields (schemaVersion, correlationId,
// causationId, partitionKey, source, idempotencyKey, resource, resourceId,
// userId, organizationId, aggregate), then Extra keys sorted. The golden
// tests compare these bytes with Node running Arc's createEvent /
// createChildEvent and JSON.stringify (testdata/gen-events.js).
//
// # Creating events and payload timestamps
//
// Arc's readers turn every string under a "timestamp" key, at any depth,
// into a Date; a string Node cannot read reaches Arc handlers as Invalid
// Date. NewEvent and NewChild (and so the registry's typed Create) refuse
// such a string in the payload or meta of an event they create, with an
// error that wraps ErrInvalidEvent and gives the path and the value, e.g.
//
//	payload.audit.entries[0].timestamp "n/a" is what Node's new Date() reads as Invalid Date; ...
//
// The judgement is a port of V8's date parser (see NodeDate and jsdate.go):
// ISO and RFC 3339 forms with or without an offset, date-only forms,
// lower-case t and z, +0000, expanded years (+002026), RFC 2822/1123, and
// V8's legacy forms ("2026/01/01", "Jan 1 2026"). "" is Invalid Date like
// any other unreadable string. It is checked against Node on 300 strings
// (testdata/gen-dates.js). AllowInvalidDates turns the check off. Reading,
// Validate, Marshal, ToMessage and FromMessage never make it.
//
// # Watermill messages
//
// ToMessage and FromMessage map an Event to a *message.Message and back
// without loss. The UUID is meta.id, the Payload is the payload's bytes, and
// type and meta travel in Metadata:
//
//	arc_type              Event.Type
//	arc_timestamp         Meta.Timestamp, RFC 3339 in UTC
//	arc_schema_version    Meta.SchemaVersion, decimal
//	correlation_id        Meta.CorrelationID (Watermill's own key)
//	arc_causation_id      Meta.CausationID
//	arc_partition_key     Meta.PartitionKey
//	arc_source            Meta.Source
//	arc_idempotency_key   Meta.IdempotencyKey
//	arc_resource          Meta.Resource
//	arc_resource_id       Meta.ResourceID
//	arc_user_id           Meta.UserID
//	arc_organization_id   Meta.OrganizationID
//	arc_aggregate_type    Meta.Aggregate.Type (with arc_aggregate_id: present iff Aggregate != nil)
//	arc_aggregate_id      Meta.Aggregate.ID
//	arc_meta_<key>        Meta.Extra[key], raw JSON (null, \ud800 and odd types included)
//	arc_key_order         the meta key order, a JSON array, when not the default one
//	arc_payload_absent    "true" when the event has no payload at all
//
// Because correlation uses Watermill's correlation_id key, Watermill's
// CorrelationID middleware and arcmill agree on it. Marshal(FromMessage(
// ToMessage(ev))) gives Marshal(ev)'s bytes.
//
// # Idempotency keys of child events
//
// Arc copies meta.idempotencyKey from parent to child, and Arc's outbox
// deduplicates on it, so a child stored beside its parent is dropped. arcmill
// keeps the wire meaning (NewChild inherits the key) and deduplicates with
// DedupeKey, which tells parent, children and siblings apart while still
// dropping true repeats.
package arc
