// The live dashboard against GetDashboard, and an event sent with an API key
// reaching the open page.
import { LIVE_WITHIN_MS, figure, pass, waitFor } from "./lib.mjs";

export default async function (suite) {
  const account = await suite.account("dashboard");
  const send = await suite.eventSender(account);

  const page = await suite.newPage();
  await suite.signIn(page, account);
  await page.locator('.live-state[data-live="live"]').waitFor({ timeout: 10_000 });
  await page.locator(".empty h2").filter({ hasText: "No events yet" }).waitFor();
  pass("an empty organisation's dashboard says how to send the first event");
  await suite.shoot(page, "dashboard-empty");

  await send(5, "page_view");
  await send(2, "signup_completed");
  const expected = await waitFor(async () => {
    const { dashboard } = await suite.rest("GET", "/v1/dashboard?rangePreset=RANGE_PRESET_DAY", { token: account.token });
    return BigInt(dashboard.totalEvents ?? "0") >= 7n ? dashboard : undefined;
  }, 5_000, "GetDashboard to count the 7 events");
  await waitFor(async () => ((await figure(page, "total_events")) === BigInt(expected.totalEvents) ? true : undefined), 5_000, "the dashboard to show 7 events");
  const pairs = [
    ["total_events", expected.totalEvents],
    ["active_users.in_range", expected.activeUsers?.inRange],
    ["active_users.daily", expected.activeUsers?.daily],
    ["active_users.weekly", expected.activeUsers?.weekly],
    ["active_users.monthly", expected.activeUsers?.monthly],
  ];
  for (const [name, value] of pairs) {
    const shown = await figure(page, name);
    if (shown !== BigInt(value ?? "0")) throw new Error(`${name}: the console shows ${shown}, GetDashboard answers ${value}`);
  }
  const shownTypes = await page.locator("[data-event-type]").evaluateAll((rows) => rows.map((row) => row.getAttribute("data-event-type")));
  const apiTypes = (expected.topEventTypes ?? []).map((type) => type.eventType);
  if (JSON.stringify(shownTypes) !== JSON.stringify(apiTypes)) throw new Error(`top event types: console ${shownTypes}, API ${apiTypes}`);
  pass(`dashboard figures equal GetDashboard's (total ${expected.totalEvents}, users ${expected.activeUsers?.inRange}, types ${apiTypes.join(", ")})`);

  // An event sent with an API key shows on the open dashboard without a reload.
  const before = await figure(page, "total_events");
  const started = Date.now();
  await send(1, "live_check");
  await waitFor(async () => ((await figure(page, "total_events")) === before + 1n ? true : undefined), LIVE_WITHIN_MS, "the new event on the dashboard");
  pass(`a new event reached the open dashboard in ${Date.now() - started} ms`);

  // Switching the range matches the API too.
  await page.getByRole("button", { name: "Last hour" }).click();
  const hour = (await suite.rest("GET", "/v1/dashboard?rangePreset=RANGE_PRESET_HOUR", { token: account.token })).dashboard;
  await waitFor(async () => ((await figure(page, "total_events")) === BigInt(hour.totalEvents) ? true : undefined), 3_000, "the hour preset's total");
  pass(`the hour preset shows GetDashboard's ${hour.totalEvents}`);
  await page.getByLabel("App").fill("other-app");
  await page.getByRole("button", { name: "Apply" }).click();
  await waitFor(async () => ((await figure(page, "total_events")) === 0n ? true : undefined), 3_000, "an app without events");
  pass("filtering by an app without events shows 0");
  await page.getByLabel("App").fill("");
  await page.getByRole("button", { name: "Apply" }).click();
  await waitFor(async () => ((await figure(page, "total_events")) === BigInt(hour.totalEvents) ? true : undefined), 3_000, "every app again");
  await suite.review(page, "dashboard");
  await page.context().close();
}
