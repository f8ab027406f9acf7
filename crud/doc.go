// Package crud emits Arc's CRUD events (<resource>.created, .updated and
// .deleted) for changes a Go service makes to its data, byte for byte as
// Arc's arcCorePlugin would for the same document and request
// (ARC-CONTRACT.md §9.1), and writes them into arcmill's outbox inside the
// caller's transaction, so that the event exists exactly when the change
// does.
//
// # The events
//
// Created, Updated and Deleted build the event of one change:
//
//	type     <resource>.created | .updated | .deleted
//	payload  {resource, operation, data, userId, organizationId, timestamp}
//	meta     {id, timestamp, correlationId, resource, resourceId, userId, organizationId}
//
// operation is "create", "update" or "delete"; data is the document as
// encoding/json writes it (Arc writes the document's toJSON); resourceId is
// the document's "_id", else its "id", as a string (Change.ResourceID sets
// it for a document that has neither key); payload.timestamp and
// meta.timestamp are the same instant, to the millisecond. Keys Arc leaves
// undefined (no user, no organization, no request id, no id) are absent,
// as JSON.stringify drops them. Change builds the same with every field
// explicit (a fixed id and time, for tests and replays).
//
// The user and organization are JSON values (Value), as Arc's hook holds
// them, so that every byte Arc can write is written: payload.userId is the
// raw user id (42 stays a number, null stays null), meta.userId its
// String(x) (absent for null); organizationId, in both, is the request
// context's value as it is, and absent (Absent), "" (String("")) and null
// (Null()) are three different events, as JSON.stringify makes them.
// NewScope builds the common case of string ids, "" meaning none.
//
// Arc's CRUD routes do not hand the hook the raw user: its Fastify adapter
// (createRequestContext) replaces user.id and user._id by
// String(user._id ?? user.id), or undefined when that is falsy. Through an
// Arc route a numeric user id 42 is therefore written "42", a user id 0 or
// "" not at all, and _id wins over id. RouteUserID applies that rule; the
// raw value (Int, RawValue) gives what arcCorePlugin writes when a host
// runs the hooks with its own user object. testdata/gen-crud.js records
// both from Node.
//
// The request scope (request id, user, organization) travels in the
// context: WithScope puts it there, ScopeFrom reads it, and Middleware is
// net/http middleware that fills it for every request (the request id from
// the X-Request-Id header, else a new UUID, where Arc may use Fastify's
// per-process counter; the user and organization from a function of the
// request, typically reading what the authentication middleware found).
// An empty request id is never written: Fastify always has one, where
// Arc would write "correlationId":"" for an empty one.
//
// # Differences from Arc, on purpose
//
//   - Arc publishes after the write has committed, inside the HTTP
//     request, and swallows publish errors, so a crash or a Redis blip
//     between the two loses the event. Emitter.Write stores it in the
//     outbox in the same transaction: a rolled-back change emits nothing, a
//     committed change's event is relayed at least once.
//   - Arc documents a <resource>.restored event but never emits it (its
//     soft-delete restore runs after-hooks with no event attached). arcmill
//     has no Restored either: a restore is a change of the document, and
//     is emitted as <resource>.updated, which Arc's consumers (query cache,
//     webhooks) already understand; a .restored type would be heard by no
//     Arc subscriber but "*".
//   - Arc documents disableEvents but never built it; the GORM plugin
//     (module crud/gormevents) has it, per model.
//   - Bulk operations (Arc emits nothing for them): Emitter.Write takes
//     any number of events and stores them in one statement, one per row
//     changed; the GORM plugin documents what each GORM bulk call emits.
//
// A document whose JSON holds a "timestamp" key with a string Node reads
// as Invalid Date is refused (arc.ErrInvalidEvent), as arc.NewEvent
// refuses it, unless Change.AllowInvalidDates is set: Arc's readers would
// hand it to handlers as Invalid Date.
package crud
