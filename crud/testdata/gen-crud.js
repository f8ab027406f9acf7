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
// Regenerate: cd crud/testdata && node gen-crud.js > crud.golden.json
"use strict";

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
const cases = [
  { name: "created with _id", op: "create", resource: "product", doc: { _id: "665f1c2e9b1e8a0012345678", name: "Mug", price: 12.5, __v: 0 },
    requestId: "req-1", userId: "u-7", organizationId: "org-1" },
  { name: "updated with numeric id", op: "update", resource: "order", doc: { id: 42, status: "paid", total: 99 },
    requestId: "7b0f2a8e-5a1e-4c1b-9d7e-2f4b7c9d1e00", userId: "u-7", organizationId: "org-1" },
  { name: "deleted, no scope", op: "delete", resource: "user", doc: { id: "u-3", email: "a@b.c" } },
  { name: "no id at all", op: "create", resource: "note", doc: { text: "hi" }, requestId: "r", userId: "u" },
  { name: "_id null falls through to id", op: "update", resource: "note", doc: { _id: null, id: "n-1" }, organizationId: "o" },
  { name: "strings JSON.stringify leaves raw", op: "create", resource: "page",
    doc: { id: "p<1>&", html: "<b>&amp;</b> / \u2028\u2029 é 🎉", ctl: "a\nb\t\u0001" }, requestId: "r-<&>" },
  { name: "nested data and nulls", op: "update", resource: "cart",
    doc: { id: 7.5, items: [{ sku: "A", qty: 1 }, null], meta: null, ok: true, createdAt: "2026-04-28T09:00:00.000Z" }, userId: "u" },
  { name: "boolean id", op: "delete", resource: "flag", doc: { id: true } },
  { name: "big number id", op: "create", resource: "big", doc: { id: 1e21 } },
  { name: "document with a valid timestamp key", op: "create", resource: "log", doc: { id: "l-1", timestamp: "2026-04-28T09:00:00.000Z" } },
];

const out = cases.map((c, i) => {
  const id = `00000000-0000-4000-8000-00000000000${i}`;
  const ctx = {
    resource: c.resource,
    operation: c.op,
    result: c.doc,
    user: c.userId ? { id: c.userId } : undefined,
    context: c.organizationId ? { organizationId: c.organizationId } : {},
    requestId: c.requestId,
  };
  const ev = crudEvent(ctx, id, new Date(T));
  return {
    name: c.name, op: c.op, resource: c.resource, doc: JSON.stringify(c.doc),
    requestId: c.requestId ?? "", userId: c.userId ?? "", organizationId: c.organizationId ?? "",
    id, time: T, want: JSON.stringify(ev),
  };
});
process.stdout.write("[\n" + out.map((o) => JSON.stringify(o)).join(",\n") + "\n]\n");
