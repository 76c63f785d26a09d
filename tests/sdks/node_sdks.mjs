// Drives the Node tracking SDKs, unmodified, against Metrix.
//
//   node tests/sdks/node_sdks.mjs SDK GATEWAY WRITE_KEY RUN
//
// SDK is segment (@segment/analytics-node) or rudder
// (@rudderstack/rudder-sdk-node, gzip on). Sends every message of plan.json,
// flushes, sends them all again with the same message ids, flushes again.
// Exits 1 when the SDK reports an error.
import { readFileSync } from "node:fs";

const [sdk, gateway, writeKey, run] = process.argv.slice(2);
const plan = JSON.parse(readFileSync(new URL("plan.json", import.meta.url), "utf8"));
const ids = { u1: `${run}-${sdk}-js-u1`, u2: `${run}-${sdk}-js-u2`, anon: `${run}-${sdk}-js-anon` };
const errors = [];

function fill(value) {
  if (typeof value === "string") return value.replace(/\{(u1|u2|anon)\}/g, (_, name) => ids[name]);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, fill(inner)]));
  return value;
}

// The spec's fields, as both SDKs take them (minus the plan's `call`).
function fields(message, messageId) {
  const { call, ...rest } = fill(message);
  return { call, payload: { ...rest, messageId } };
}

let client;
let flush;
if (sdk === "segment") {
  const { Analytics } = await import("@segment/analytics-node");
  client = new Analytics({ writeKey, host: gateway, maxEventsInBatch: 50, flushInterval: 200 });
  client.on("error", (error) => errors.push(String(error?.reason ?? error?.message ?? error)));
  flush = () => client.flush();
} else if (sdk === "rudder") {
  const { default: Analytics } = await import("@rudderstack/rudder-sdk-node");
  client = new Analytics(writeKey, {
    dataPlaneUrl: `${gateway}/segment`,
    gzip: true,
    flushAt: 50,
    flushInterval: 200,
    logLevel: "error",
    errorHandler: (error) => errors.push(String(error?.message ?? error)),
  });
  flush = () => client.flush();
} else {
  console.error(`unknown SDK ${sdk}`);
  process.exit(2);
}

for (let attempt = 0; attempt < 2; attempt += 1) {
  plan.messages.forEach((message, index) => {
    const { call, payload } = fields(message, `${run}-${sdk}-js-${index}`);
    client[call](payload);
  });
  await flush();
}
if (sdk === "segment") await client.closeAndFlush({ timeout: 10_000 });
if (errors.length > 0) {
  console.error(errors.join("\n"));
  process.exit(1);
}
console.log(`${sdk}: sent ${plan.messages.length} messages twice`);
