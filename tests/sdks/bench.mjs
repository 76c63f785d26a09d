// Throughput of the Segment-compatible batch route against Metrix's own
// TrackEvents, in one run (a benchmark, not a test). Against a running
// `metrix dev` (release build for real figures):
//
//   node tests/sdks/bench.mjs GATEWAY_URL [CLIENTS] [BATCHES_PER_CLIENT]
//
// Each client posts gzip-compressed batches of 100 events, one after
// another; both paths get the same events (fresh ids per path) and the
// same compression. Prints events per second for each and their ratio.
import { gzipSync } from "node:zlib";

const [gateway, clientsText = "8", batchesText = "50"] = process.argv.slice(2);
if (!gateway) {
  console.error("usage: node tests/sdks/bench.mjs GATEWAY_URL [CLIENTS] [BATCHES_PER_CLIENT]");
  process.exit(2);
}
const clients = Number(clientsText);
const batches = Number(batchesText);
const BATCH = 100;

async function rest(method, path, { token, body } = {}) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${gateway}${path}`, { method, headers, body: JSON.stringify(body) });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

const suffix = Date.now();
const signedUp = await rest("POST", "/v1/auth:signUp", {
  body: { email: `bench-${suffix}@example.com`, password: "correct horse battery staple", organizationName: `Bench ${suffix}` },
});
const { key } = await rest("POST", "/v1/api-keys", {
  token: signedUp.tokens.accessToken,
  body: { displayName: "bench", scopes: ["events:write"] },
});
const basic = `Basic ${Buffer.from(`${key}:`).toString("base64")}`;

// The same event, in each API's words.
const properties = (n) => ({ plan: "pro", amount: n % 97, path: `/pricing/${n % 13}` });
const segmentMessage = (id, n) => ({
  type: "track",
  messageId: id,
  userId: `user-${n % 500}`,
  event: "Order Completed",
  properties: properties(n),
  timestamp: new Date().toISOString(),
  context: { library: { name: "bench", version: "1" } },
});
const metrixEvent = (id, n) => ({
  eventId: id,
  appId: "bench",
  userId: `user-${n % 500}`,
  eventType: "track",
  eventName: "Order Completed",
  properties: properties(n),
  timestamp: new Date().toISOString(),
});

async function run(name, path, headers, shape) {
  const started = performance.now();
  let sent = 0;
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      for (let batch = 0; batch < batches; batch += 1) {
        const items = Array.from({ length: BATCH }, (_, index) => {
          const n = (client * batches + batch) * BATCH + index;
          return shape(`${name}-${suffix}-${n}`, n);
        });
        const body = gzipSync(JSON.stringify(path.includes("segment") ? { batch: items, sentAt: new Date().toISOString() } : { events: items }));
        const response = await fetch(`${gateway}${path}`, {
          method: "POST",
          headers: { "content-type": "application/json", "content-encoding": "gzip", ...headers },
          body,
        });
        if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
        await response.arrayBuffer();
        sent += BATCH;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { sent, seconds, rate: sent / seconds };
}

// A short warm-up of both paths, then the measured runs.
await run("warm-segment", "/segment/v1/batch", { authorization: basic }, segmentMessage);
await run("warm-metrix", "/v1/events:batch", { "x-api-key": key }, metrixEvent);
const metrix = await run("metrix", "/v1/events:batch", { "x-api-key": key }, metrixEvent);
const segment = await run("segment", "/segment/v1/batch", { authorization: basic }, segmentMessage);
console.log(`${clients} clients × ${batches} gzip batches of ${BATCH} events per path`);
console.log("| path | events | seconds | events/s | ratio to TrackEvents |");
console.log("| --- | --- | --- | --- | --- |");
console.log(`| TrackEvents (POST /v1/events:batch) | ${metrix.sent} | ${metrix.seconds.toFixed(2)} | ${metrix.rate.toFixed(0)} | 1.00 |`);
console.log(`| Segment batch (POST /segment/v1/batch) | ${segment.sent} | ${segment.seconds.toFixed(2)} | ${segment.rate.toFixed(0)} | ${(segment.rate / metrix.rate).toFixed(2)} |`);
