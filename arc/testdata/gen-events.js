// gen-events.js writes events.golden.json: the bytes Arc writes for events
// made with createEvent / createChildEvent (ARC-CONTRACT.md §8, §3.0; the
// functions below are Arc's, with the random id and new Date() replaced by
// the values each case passes in meta, as arcmill's NewEvent/NewChild are
// given them), serialised with JSON.stringify as both Redis transports do.
// arc's TestArcGoldenEvents builds the same events with NewEvent/NewChild and
// compares the bytes.
//
// Each case's meta is a list of [key, JSON value] pairs in the order a Go
// caller's Meta gives them (Meta's field order, then Extra keys sorted); a
// "timestamp" string becomes a Date, as the caller passes a time.Time.
//
// Regenerate: cd arc/testdata && node gen-events.js > events.golden.json
"use strict";

function createEvent(type, payload, meta) {
  return { type, payload, meta: { id: "<random>", timestamp: new Date(0), ...meta } };
}

function createChildEvent(parent, type, payload, meta) {
  const inherited = {
    correlationId: parent.meta.correlationId ?? parent.meta.id,
    causationId: parent.meta.id,
  };
  if (parent.meta.userId !== undefined) inherited.userId = parent.meta.userId;
  if (parent.meta.organizationId !== undefined) inherited.organizationId = parent.meta.organizationId;
  if (parent.meta.source !== undefined) inherited.source = parent.meta.source;
  if (parent.meta.idempotencyKey !== undefined) inherited.idempotencyKey = parent.meta.idempotencyKey;
  return { type, payload, meta: { id: "<random>", timestamp: new Date(0), ...inherited, ...meta } };
}

// Arc's readers: JSON.parse with a reviver that makes every "timestamp"
// string a Date.
const revive = (s) => JSON.parse(s, (k, v) => (k === "timestamp" && typeof v === "string" ? new Date(v) : v));

const T = ["timestamp", '"2026-04-28T10:00:00.123Z"'];
const parents = {
  plain: '{"type":"order.created","payload":{"orderId":"o-1"},"meta":{"id":"p-1","timestamp":"2026-04-28T09:00:00.000Z"}}',
  full: '{"type":"order.created","payload":{},"meta":{"id":"p-2","timestamp":"2026-04-28T09:00:00.000Z","correlationId":"req-1","userId":"u-7","organizationId":"org-1","source":"commerce","idempotencyKey":"k-1","resource":"order","resourceId":"o-1","aggregate":{"type":"Order","id":"o-1"},"hostKey":1}}',
  nulls: '{"type":"order.created","payload":{},"meta":{"id":"p-3","timestamp":"2026-04-28T09:00:00.000Z","correlationId":null,"userId":null,"organizationId":null,"source":null}}',
  odd: '{"type":"order.created","payload":{},"meta":{"organizationId":7,"id":"p-4","userId":42,"timestamp":"2026-04-28T09:00:00.000Z","source":{"app":"x"},"correlationId":""}}',
  partial: '{"type":"order.created","payload":{},"meta":{"id":"p-5","timestamp":"2026-04-28T09:00:00.000Z","source":"billing"}}',
  // Ids with lone surrogates (JSON.parse keeps them; JSON.stringify writes
  // them back as \udxxx escapes).
  surrogates: '{"type":"order.created","payload":{},"meta":{"id":"p-\\ud800","timestamp":"2026-04-28T09:00:00.000Z","correlationId":"\\udbff","idempotencyKey":"k\\udc00"}}',
  surrogateRoot: '{"type":"order.created","payload":{},"meta":{"id":"\\udfff\\ud800","timestamp":"2026-04-28T09:00:00.000Z"}}',
};

const cases = [
  { name: "minimal", type: "order.created", payload: '{"orderId":"o-1"}', meta: [["id", '"7b0f2a8e-5a1e-4c1b-9d7e-2f4b7c9d1e00"'], T] },
  { name: "contract example", type: "order.created", payload: '{"orderId":"o-1","total":99}',
    meta: [["id", '"7b0f2a8e-5a1e-4c1b-9d7e-2f4b7c9d1e00"'], ["timestamp", '"2026-04-28T10:00:00.000Z"'], ["correlationId", '"req-abc"'], ["userId", '"u-7"'], ["organizationId", '"org-1"']] },
  { name: "every field", type: "order.shipped", payload: '{"note":"<fragile> & \\"heavy\\"","at":"2026-04-28"}',
    meta: [["id", '"e-2"'], T, ["schemaVersion", "2"], ["correlationId", '"c"'], ["causationId", '"p"'], ["partitionKey", '"pk"'],
      ["source", '"s"'], ["idempotencyKey", '"k"'], ["resource", '"order"'], ["resourceId", '"o-9"'], ["userId", '"u"'],
      ["organizationId", '"org"'], ["aggregate", '{"type":"Order","id":"o-9"}'], ["a", '"1"'], ["b", "2"], ["traceparent", '"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"']] },
  { name: "strings JSON.stringify leaves raw", type: "a<b>&c/d", payload: "null",
    meta: [["id", '"1"'], T, ["source", '"x<y>&z/\u2028\u2029\u007f é 🎉"'], ["userId", '"a\\nb\\tc\\r\\"q\\"\\\\\\b\\f\\u0001\\u001f"']] },
  { name: "null payload", type: "x", payload: "null", meta: [["id", '"1"'], T] },
  { name: "payload timestamps pass", type: "x", payload: '{"timestamp":"Thu, 01 Jan 2026 00:00:00 GMT","audit":[{"timestamp":"2026-01-01T10:00:00"}]}', meta: [["id", '"1"'], T] },
  { name: "null meta value", type: "x", payload: "{}", meta: [["id", '"1"'], T, ["userId", "null"], ["hostKey", "null"]] },
  { name: "child of plain", parent: "plain", type: "inventory.reserved", payload: '{"orderId":"o-1"}', meta: [["id", '"c-1"'], T] },
  { name: "child of full", parent: "full", type: "inventory.reserved", payload: "{}", meta: [["id", '"c-2"'], T] },
  { name: "child of nulls", parent: "nulls", type: "inventory.reserved", payload: "{}", meta: [["id", '"c-3"'], T] },
  { name: "child of odd", parent: "odd", type: "inventory.reserved", payload: "{}", meta: [["id", '"c-4"'], T] },
  { name: "child overrides inherited", parent: "full", type: "inventory.reserved", payload: "{}",
    meta: [["id", '"c-5"'], T, ["schemaVersion", "3"], ["source", '"inventory"'], ["userId", '"u-8"'], ["aggregate", '{"type":"Stock","id":"s-1"}'], ["z", "true"]] },
  { name: "child adds what parent lacks", parent: "partial", type: "inventory.reserved", payload: "{}",
    meta: [["id", '"c-6"'], T, ["partitionKey", '"pk"'], ["idempotencyKey", '"k-2"'], ["userId", '"u-9"'], ["organizationId", '"org-2"']] },
  { name: "child nulls inherited keys", parent: "full", type: "inventory.reserved", payload: "{}",
    meta: [["id", '"c-8"'], T, ["correlationId", "null"], ["userId", "null"], ["organizationId", "7"]] },
  { name: "child sets correlation", parent: "full", type: "inventory.reserved", payload: "{}",
    meta: [["id", '"c-7"'], T, ["correlationId", '"req-2"'], ["causationId", '"other"']] },
  { name: "lone surrogates in ids", type: "order.created", payload: "{}",
    meta: [["id", '"\\ud800"'], T, ["correlationId", '"a\\udc00b"'], ["causationId", '"\\ud83d"'], ["idempotencyKey", '"\\udbff\\udbff"']] },
  { name: "lone surrogate beside a pair in an id", type: "order.created", payload: "{}",
    meta: [["id", '"\\ud83d\\ude00\\ude00-\\ud83d"'], T] },
  { name: "child of lone surrogate ids", parent: "surrogates", type: "inventory.reserved", payload: "{}", meta: [["id", '"c-\\udc01"'], T] },
  { name: "child of a lone surrogate root", parent: "surrogateRoot", type: "inventory.reserved", payload: "{}", meta: [["id", '"c-9"'], T] },
];

const out = cases.map((c) => {
  const meta = {};
  for (const [k, v] of c.meta) meta[k] = k === "timestamp" ? new Date(JSON.parse(v)) : JSON.parse(v);
  const payload = JSON.parse(c.payload);
  const ev = c.parent
    ? createChildEvent(revive(parents[c.parent]), c.type, payload, meta)
    : createEvent(c.type, payload, meta);
  const res = { name: c.name, type: c.type, payload: c.payload, meta: c.meta, want: JSON.stringify(ev) };
  if (c.parent) res.parent = parents[c.parent];
  return res;
});
process.stdout.write("[\n" + out.map((o) => JSON.stringify(o)).join(",\n") + "\n]\n");
