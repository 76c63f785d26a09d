// The event explorer: the list against ListEvents, the live tail, filters,
// one event's detail and the CSV export.
import { readFileSync } from "node:fs";
import { LIVE_WITHIN_MS, pass, waitFor } from "./lib.mjs";

export default async function (suite) {
  const account = await suite.account("events");
  const send = await suite.eventSender(account);
  await send(5, "page_view");
  await send(2, "signup_completed");

  const page = await suite.newPage();
  await suite.signIn(page, account);
  await page.getByRole("link", { name: "Events" }).click();
  await page.locator('.live-state[data-live="live"]').waitFor({ timeout: 5_000 });
  await page.locator("tr[data-event-id]").first().waitFor({ timeout: 5_000 });
  const listed = await page.locator("tr[data-event-id]").evaluateAll((rows) => rows.map((row) => row.getAttribute("data-event-id")));
  const api = await suite.rest("GET", "/v1/events?pageSize=25", { token: account.token });
  const apiIds = api.events.map((event) => event.eventId);
  if (JSON.stringify(listed) !== JSON.stringify(apiIds)) throw new Error(`the event list shows ${listed}, ListEvents answers ${apiIds}`);
  pass(`the event list shows ListEvents' ${listed.length} events, in its order`);

  const started = Date.now();
  const tailed = await send(1, "tail_check");
  const tailedId = tailed.results?.[0]?.eventId;
  await page.locator(`.tail li[data-event-id="${tailedId}"]`).waitFor({ timeout: LIVE_WITHIN_MS });
  pass(`a new event reached the live tail in ${Date.now() - started} ms`);

  await page.getByLabel("Event type").fill("signup_completed");
  await page.getByRole("button", { name: "Search" }).click();
  await waitFor(async () => ((await page.locator("tr[data-event-id]").count()) === 2 ? true : undefined), 3_000, "the filtered list");
  pass("filtering by type lists exactly the two signup_completed events");
  await page.locator("tr[data-event-id] button").first().click();
  await page.locator(".event-detail pre").waitFor();
  pass("an event's detail opens");

  const download = page.waitForEvent("download");
  await page.getByRole("button", { name: "Export CSV" }).click();
  const file = await download;
  const lines = readFileSync(await file.path(), "utf8").trim().split("\n");
  if (lines.length !== 3) throw new Error(`the CSV export holds ${lines.length} lines, not a header and 2 rows`);
  pass(`CSV export downloads ${file.suggestedFilename()} with a header and the 2 filtered events`);

  // A range that ends before it starts is refused, and the refusal is shown.
  await page.getByLabel("From (UTC)").fill("2026-03-05T00:00");
  await page.getByLabel("Until (UTC)").fill("2026-03-01T00:00");
  await page.getByRole("button", { name: "Search" }).click();
  await page.locator(".banner.error").filter({ hasText: "start before it ends" }).waitFor();
  pass(`a bad filter is explained: "${(await page.locator(".banner.error").innerText()).trim().replace(/\s+/g, " ")}"`);
  await suite.review(page, "events");
  await page.context().close();
}
