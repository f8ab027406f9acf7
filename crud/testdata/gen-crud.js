// gen-crud.js writes crud.golden.json: the bytes Arc writes for the CRUD
// events of ARC-CONTRACT.md §9.1. The after-hook below is arcCorePlugin's
// (payload {resource, operation, data, userId, organizationId, timestamp};
// meta {correlationId, resource, resourceId, userId, organizationId}),
// published through eventPlugin's publish (correlationId from the request
// store) and createEvent ({id, timestamp, ...meta}), with the random id and
// new Date() replaced by each case's fixed values, and serialised with
// JSON.stringify as both Redis transports do. crud's TestGoldenArcBytes
// builds the same changes with crud.Change and compares the bytes.
//
// The user and organization are what the hook sees: ctx.user and
// ctx.context (Arc's request context, where the host's auth layer puts
// organizationId, possibly "" or null). A case with route: true first runs
// the user through Arc's Fastify adapter (createRequestContext in
// src/core/fastifyAdapter.ts), which every CRUD route uses and which
// replaces user.id and user._id with String(user._id ?? user.id), or
// undefined when that is falsy: there a numeric id is written as a string.
//
// Each line gives the Go side its input as JSON text ("" for undefined):
// userId is the hook's ctx.user.id ?? ctx.user._id, or for a route case
// the user's _id ?? id before the adapter (crud.RouteUserID applies the
// adapter's rule); organizationId is ctx.context.organizationId.
//
// Regenerate: cd crud/testdata && node gen-crud.js > crud.golden.json
"use strict";

// A stand-in for a MongoDB ObjectId: JSON.stringify writes its toJSON,
// String its toString, both the hex string.
class ObjectId {
  constructor(hex) { this.hex = hex; }
  toJSON() { return this.hex; }
  toString() { return this.hex; }
}

// createRequestContext's user normalisation (fastifyAdapter.ts).
function routeUser(user) {
  if (!user) return null;
  const rawId = user._id ?? user.id;
  const normalizedId = rawId ? String(rawId) : undefined;
  return { ...user, id: normalizedId, _id: normalizedId };
}

const jsonText = (v) => (v === undefined ? "" : JSON.stringify(v));

function createEvent(type, payload, meta, id, now) {
  return { type, payload, meta: { id, timestamp: now, ...meta } };
}

// eventPlugin.publish: {correlationId: requestId, ...meta} when the caller
// gave none.
function publish(type, payload, meta, requestId, id, now) {
  const enriched = requestId && !meta.correlationId ? { correlationId: requestId, ...meta } : meta;
  return createEvent(type, payload, enriched, id, now);
}

// arcCorePlugin's after-hook for create, update and delete.
function crudEvent(ctx, id, now) {
  const operation = ctx.operation;
  const eventType = `${ctx.resource}.${operation}d`;
  const rawUserId = ctx.user?.id ?? ctx.user?._id;
  const doc = ctx.result;
  const rawResourceId = doc?._id ?? doc?.id;
  const payload = {
    resource: ctx.resource,
    operation,
    data: doc,
    userId: rawUserId,
    organizationId: ctx.context?.organizationId,
    timestamp: now.toISOString(),
  };
  const meta = {
    correlationId: ctx.requestId,
    resource: ctx.resource,
    resourceId: rawResourceId != null ? String(rawResourceId) : undefined,
    userId: rawUserId != null ? String(rawUserId) : undefined,
    organizationId: ctx.context?.organizationId,
  };
  return publish(eventType, payload, meta, ctx.requestId, id, now);
}

const T = "2026-04-28T10:00:00.123Z";
const OID = "665f1c2e9b1e8a0012345678";
const cases = [
  { name: "created with _id", op: "create", resource: "product", doc: { _id: OID, name: "Mug", price: 12.5, __v: 0 },
    requestId: "req-1", user: { id: "u-7" }, context: { organizationId: "org-1" } },
  { name: "updated with numeric id", op: "update", resource: "order", doc: { id: 42, status: "paid", total: 99 },
    requestId: "7b0f2a8e-5a1e-4c1b-9d7e-2f4b7c9d1e00", user: { id: "u-7" }, context: { organizationId: "org-1" } },
  { name: "deleted, no scope", op: "delete", resource: "user", doc: { id: "u-3", email: "a@b.c" } },
  { name: "no id at all", op: "create", resource: "note", doc: { text: "hi" }, requestId: "r", user: { id: "u" } },
  { name: "_id null falls through to id", op: "update", resource: "note", doc: { _id: null, id: "n-1" },
    context: { organizationId: "o" } },
  { name: "strings JSON.stringify leaves raw", op: "create", resource: "page",
    doc: { id: "p<1>&", html: "<b>&amp;</b> / \u2028\u2029 é 🎉", ctl: "a\nb\t\u0001" }, requestId: "r-<&>" },
  { name: "nested data and nulls", op: "update", resource: "cart",
    doc: { id: 7.5, items: [{ sku: "A", qty: 1 }, null], meta: null, ok: true, createdAt: "2026-04-28T09:00:00.000Z" },
    user: { id: "u" } },
  { name: "boolean id", op: "delete", resource: "flag", doc: { id: true } },
  { name: "big number id", op: "create", resource: "big", doc: { id: 1e21 } },
  { name: "document with a valid timestamp key", op: "create", resource: "log",
    doc: { id: "l-1", timestamp: "2026-04-28T09:00:00.000Z" } },

  // The user id as the hook gets it (a host calling the hooks with its own
  // user): payload.userId is the raw value, meta.userId String(value).
  { name: "hook: numeric user id", op: "create", resource: "order", doc: { id: 1 }, requestId: "r",
    user: { id: 42 }, context: { organizationId: "org-1" } },
  { name: "hook: _id fallback", op: "update", resource: "order", doc: { id: 1 }, user: { _id: "u-9" } },
  { name: "hook: id wins over _id", op: "update", resource: "order", doc: { id: 1 }, user: { id: "a", _id: "b" } },
  { name: "hook: ObjectId _id", op: "delete", resource: "order", doc: { id: 1 }, user: { _id: new ObjectId(OID) } },
  { name: "hook: user id 0", op: "create", resource: "order", doc: { id: 1 }, user: { id: 0 } },
  { name: "hook: empty user id", op: "create", resource: "order", doc: { id: 1 }, user: { id: "" } },
  { name: "hook: null _id", op: "create", resource: "order", doc: { id: 1 }, user: { _id: null } },
  { name: "hook: null id, no _id", op: "create", resource: "order", doc: { id: 1 }, user: { id: null } },
  { name: "hook: huge numeric user id", op: "create", resource: "order", doc: { id: 1 }, user: { id: 1e21 } },
  { name: "hook: user id an object", op: "create", resource: "order", doc: { id: 1 }, user: { id: { a: [1, null] } } },

  // The user id through Arc's CRUD routes: stringified, falsy dropped.
  { name: "route: numeric user id", op: "create", resource: "order", doc: { id: 1 }, requestId: "r", route: true,
    user: { id: 42 }, context: { organizationId: "org-1" } },
  { name: "route: _id wins over id", op: "update", resource: "order", doc: { id: 1 }, route: true,
    user: { id: "a", _id: "b" } },
  { name: "route: ObjectId _id", op: "delete", resource: "order", doc: { id: 1 }, route: true,
    user: { _id: new ObjectId(OID) } },
  { name: "route: user id 0", op: "create", resource: "order", doc: { id: 1 }, route: true, user: { id: 0 } },
  { name: "route: empty user id", op: "create", resource: "order", doc: { id: 1 }, route: true, user: { id: "" } },
  { name: "route: user without id", op: "create", resource: "order", doc: { id: 1 }, route: true, user: { email: "x" } },

  // The organization as the request context holds it.
  { name: "org: empty string", op: "create", resource: "order", doc: { id: 1 }, user: { id: "u" },
    context: { organizationId: "" } },
  { name: "org: absent", op: "create", resource: "order", doc: { id: 1 }, user: { id: "u" }, context: {} },
  { name: "org: no request context", op: "create", resource: "order", doc: { id: 1 }, user: { id: "u" } },
  { name: "org: null", op: "create", resource: "order", doc: { id: 1 }, user: { id: "u" },
    context: { organizationId: null } },
  { name: "org: number", op: "create", resource: "order", doc: { id: 1 }, context: { organizationId: 7 } },
  { name: "org: ObjectId", op: "create", resource: "order", doc: { id: 1 },
    context: { organizationId: new ObjectId(OID) } },
];

const out = cases.map((c, i) => {
  const id = `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;
  const ctx = {
    resource: c.resource,
    operation: c.op,
    result: c.doc,
    user: c.route ? routeUser(c.user) : c.user,
    context: c.context,
    requestId: c.requestId,
  };
  const ev = crudEvent(ctx, id, new Date(T));
  const userId = c.route ? c.user?._id ?? c.user?.id : c.user?.id ?? c.user?._id;
  return {
    name: c.name, op: c.op, resource: c.resource, doc: JSON.stringify(c.doc),
    requestId: c.requestId ?? "", route: c.route ?? false, userId: jsonText(userId),
    organizationId: jsonText(c.context?.organizationId),
    id, time: T, want: JSON.stringify(ev),
  };
});
process.stdout.write("[\n" + out.map((o) => JSON.stringify(o)).join(",\n") + "\n]\n");
