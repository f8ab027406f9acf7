// Package arc is Arc's domain-event contract in Go: the Event and Meta types
// of Arc's DomainEvent and EventMeta, their exact wire JSON, the
// constructors NewEvent and NewChild (Arc's createEvent and
// createChildEvent), and a lossless mapping onto Watermill messages.
//
// # Wire JSON
//
// Marshal writes what Node's JSON.stringify writes for the same event, byte
// for byte: {"type","payload","meta"}, meta.timestamp as
// YYYY-MM-DDTHH:mm:ss.sssZ, empty optional fields omitted, unknown meta keys
// (Meta.Extra) written back in key order, payload bytes untouched. Unmarshal
// reads anything Arc's readers read (JSON null for any optional field, any
// RFC 3339 timestamp or epoch milliseconds, any JSON payload) and refuses,
// with an error wrapping ErrMalformedEvent, what they refuse. json.Marshal
// and json.Unmarshal use the same codec.
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
//	arc_meta_<key>        Meta.Extra[key], raw JSON
//	arc_payload_absent    "true" when the event has no payload at all
//
// Because correlation uses Watermill's correlation_id key, Watermill's
// CorrelationID middleware and arcmill agree on it.
//
// # Idempotency keys of child events
//
// Arc copies meta.idempotencyKey from parent to child, and Arc's outbox
// deduplicates on it, so a child stored beside its parent is dropped. arcmill
// keeps the wire meaning (NewChild inherits the key) and deduplicates with
// DedupeKey, which tells parent, children and siblings apart while still
// dropping true repeats.
package arc
