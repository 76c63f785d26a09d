// The console's benchmark (not a test): bundle size, time from navigation to
// the dashboard's first numbers, and the latency from an acknowledged event
// to its appearance on an open page, each beside a baseline measured in the
// same run. Needs a running `metrix dev` (release build for real figures):
//
//   node bench/console.mjs GATEWAY_URL [ROUNDS]
//
// Prints a table; docs/performance.md records it with the command.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [gateway, roundsText = "30"] = process.argv.slice(2);
if (!gateway) {
  console.error("usage: node bench/console.mjs GATEWAY_URL [ROUNDS]");
  process.exit(2);
}
const rounds = Number(roundsText);
const dist = new URL("../dist/", import.meta.url).pathname;

function quantile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  const position = (sorted.length - 1) * q;
  const low = Math.floor(position);
  const high = Math.ceil(position);
  return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
}
const ms = (value) => `${value.toFixed(1)} ms`;

async function rest(method, path, { token, apiKey, body } = {}) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (apiKey) headers["x-api-key"] = apiKey;
  const response = await fetch(`${gateway}${path}`, { method, headers, body: body && JSON.stringify(body) });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

// 1. Size: every file the console serves, gzipped as the gateway sends it.
let gzipped = 0;
let raw = 0;
for (const relative of ["index.html", ...readdirSync(join(dist, "assets")).filter((name) => !name.endsWith(".gz")).map((name) => `assets/${name}`)]) {
  raw += statSync(join(dist, relative)).size;
  gzipped += readFileSync(join(dist, `${relative}.gz`)).length;
}

// An organisation with events, an API key and a signed-in browser tab.
const suffix = `${Date.now()}`;
const account = { email: `bench-${suffix}@example.com`, password: "correct horse battery staple" };
const signedUp = await rest("POST", "/v1/auth:signUp", { body: { ...account, organizationName: `Bench ${suffix}` } });
const token = signedUp.tokens.accessToken;
const { key } = await rest("POST", "/v1/api-keys", { token, body: { displayName: "bench", scopes: ["events:write"] } });
await rest("POST", "/v1/events:batch", {
  apiKey: key,
  body: { events: Array.from({ length: 200 }, (_, index) => ({ appId: "web", eventType: "page_view", userId: `u-${index % 40}` })) },
});

const browser = await chromium.launch({ executablePath: process.env.METRIX_CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
const context = await browser.newContext();
const page = await context.newPage();
await page.goto(gateway);
await page.getByLabel("Email").fill(account.email);
await page.getByLabel("Password").fill(account.password);
await page.getByRole("button", { name: "Sign in", exact: true }).click();
await page.locator('[data-figure="total_events"]').waitFor();

// 2. Navigation to first numbers: a reload of the signed-in dashboard (the
// session is renewed from sessionStorage, then GetDashboard answers),
// against the same page's DOMContentLoaded (the baseline: what the browser
// needs before any RPC can start).
const firstNumbers = [];
const domReady = [];
for (let round = 0; round < rounds; round += 1) {
  await page.reload({ waitUntil: "commit" });
  await page.locator('[data-figure="total_events"]').waitFor();
  const timing = await page.evaluate(() => {
    const navigation = performance.getEntriesByType("navigation")[0];
    return { ready: navigation.domContentLoadedEventEnd, now: performance.now() };
  });
  firstNumbers.push(timing.now);
  domReady.push(timing.ready);
}

// 3. Acknowledged event to screen: the live tail of the events page marks
// when each event's row appears (the page's clock and Node's are the same
// machine clock); the baseline is the acknowledgement's own round trip.
await page.goto(`${gateway}/#/events`);
await page.locator('.live-state[data-live="live"]').waitFor();
await page.evaluate(() => {
  window.seen = {};
  new MutationObserver((records) => {
    for (const record of records)
      for (const node of record.addedNodes) {
        const id = node.dataset?.eventId;
        if (id && !(id in window.seen)) window.seen[id] = performance.timeOrigin + performance.now();
      }
  }).observe(document.querySelector(".tail"), { childList: true });
});
const toScreen = [];
const acknowledged = [];
for (let round = 0; round < rounds; round += 1) {
  const eventId = `bench-${suffix}-${round}`;
  const sent = performance.timeOrigin + performance.now();
  await rest("POST", "/v1/events", { apiKey: key, body: { event: { eventId, appId: "web", eventType: "bench", userId: "u-1" } } });
  const acked = performance.timeOrigin + performance.now();
  acknowledged.push(acked - sent);
  const shown = await page.waitForFunction((id) => window.seen[id], eventId, { timeout: 10_000, polling: 10 });
  toScreen.push((await shown.jsonValue()) - acked);
  await new Promise((resolve) => setTimeout(resolve, 100));
}
await browser.close();

const row = (name, values, baseline) =>
  `| ${name} | ${ms(quantile(values, 0.5))} | ${ms(quantile(values, 0.95))} | ${ms(quantile(baseline, 0.5))} | ${(quantile(values, 0.5) / quantile(baseline, 0.5)).toFixed(2)} |`;
console.log(`console bundle: ${gzipped} B gzipped (${raw} B raw), budget 153600 B: ${((gzipped / 153600) * 100).toFixed(1)} % used`);
console.log(`${rounds} rounds each`);
console.log("| measure | p50 | p95 | baseline p50 | ratio |");
console.log("| --- | --- | --- | --- | --- |");
console.log(row("navigation → dashboard's first numbers (baseline: DOMContentLoaded)", firstNumbers, domReady));
console.log(row("event acknowledged → row in the live tail (baseline: the acknowledgement's round trip)", toScreen, acknowledged));
