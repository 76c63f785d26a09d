// Data points: a new organisation is told how to record its first point;
// points of two series recorded with an API key are listed as
// ListDataPointSeries has them; a P95 query filtered by a tag shows
// QueryDataPoints' buckets for the same request, in the table and the chart's
// table; bucket widths the API refuses show its words by the width.
import { pass } from "./lib.mjs";

const MINUTE = 60_000;

export default async function (suite) {
  const account = await suite.account("points");
  const token = account.token;
  const page = await suite.newPage();
  await suite.signIn(page, account);
  await page.getByRole("link", { name: "Data points" }).click();
  await page.locator(".empty pre[data-curl]").filter({ hasText: "/v1/dataPoints" }).waitFor({ timeout: 5_000 });
  pass("an organisation without data points is shown a curl line recording one");

  const { key } = await suite.rest("POST", "/v1/api-keys", { token, body: { displayName: "points test", scopes: ["metrics:write"] } });
  const now = Date.now();
  const at = (minutesAgo, second = 0) => new Date(now - minutesAgo * MINUTE + second * 1000).toISOString();
  const latency = Array.from({ length: 40 }, (_, index) => ({
    name: "api.latency",
    type: "DATA_POINT_TYPE_TIMING",
    unit: "ms",
    value: 10 + ((index * 37) % 90),
    appId: "api",
    tags: { route: index % 3 === 0 ? "/v1/reports" : "/v1/events", method: index % 2 === 0 ? "GET" : "POST" },
    timestamp: at(5 + (index % 40), index % 7),
  }));
  const depth = Array.from({ length: 12 }, (_, index) => ({
    name: "queue.depth",
    type: "DATA_POINT_TYPE_GAUGE",
    value: index * 3,
    tags: { queue: index % 2 === 0 ? "ingest" : "export" },
    timestamp: at(2 + index * 4),
  }));
  await suite.rest("POST", "/v1/dataPoints", { apiKey: key, body: { dataPoints: [...latency, ...depth] } });

  // The catalogue equals ListDataPointSeries.
  await page.reload();
  const { series } = await suite.rest("GET", "/v1/dataPoints/series", { token });
  await page.locator("tr[data-series]").first().waitFor({ timeout: 5_000 });
  const shownSeries = await page.locator("tr[data-series]").evaluateAll((rows) =>
    rows.map((tr) => [tr.dataset.series, tr.dataset.type, tr.querySelector("[data-unit]").dataset.unit, tr.dataset.tagKeys, tr.dataset.pointCount]),
  );
  const apiSeries = series.map((one) => [one.name, one.type, one.unit ?? "", (one.tagKeys ?? []).join(","), one.pointCount]);
  if (JSON.stringify(shownSeries) !== JSON.stringify(apiSeries)) throw new Error(`series: console ${JSON.stringify(shownSeries)}, ListDataPointSeries ${JSON.stringify(apiSeries)}`);
  pass(`the series list equals ListDataPointSeries (${apiSeries.map(([name, , , keys, points]) => `${name} [${keys}] ${points}`).join("; ")})`);

  // A P95 of one route over the last hour, in 5-minute buckets.
  const form = page.getByRole("form", { name: "Query a series" });
  await form.getByLabel("Series").selectOption("api.latency");
  await form.getByLabel("Aggregation").selectOption({ label: "P95" });
  await form.getByLabel("route").fill("/v1/events");
  await form.getByLabel("Bucket width (seconds)").fill("300");
  await form.getByRole("button", { name: "Query" }).click();
  await page.locator('.query-state[data-state="done"]').waitFor({ state: "attached", timeout: 5_000 });
  const summary = page.locator(".query-summary");
  const asked = await summary.evaluate((p) => ({ ...p.dataset }));
  if (asked.aggregation !== "AGGREGATION_P95" || asked.tags !== JSON.stringify({ route: "/v1/events" })) throw new Error(`the console shows another query: ${JSON.stringify(asked)}`);
  const answer = await suite.rest("POST", "/v1/dataPoints:query", {
    token,
    body: { name: "api.latency", aggregation: "AGGREGATION_P95", tags: { route: "/v1/events" }, bucketWidth: "300s", timeRange: { startTime: asked.startTime, endTime: asked.endTime } },
  });
  if (!answer.buckets?.length) throw new Error("QueryDataPoints answers no bucket for the recorded points");
  const shownBuckets = await page.locator("table[data-buckets] tr[data-start-time]").evaluateAll((rows) =>
    rows.map((tr) => [tr.dataset.startTime, tr.dataset.endTime, Number(tr.dataset.value), tr.dataset.count]),
  );
  const seconds = (text) => new Date(text).toISOString();
  const apiBuckets = answer.buckets.map((bucket) => [bucket.startTime, bucket.endTime, bucket.value, bucket.count]);
  const same = (a, b) => JSON.stringify(a.map(([start, end, ...rest]) => [seconds(start), seconds(end), ...rest])) === JSON.stringify(b.map(([start, end, ...rest]) => [seconds(start), seconds(end), ...rest]));
  if (!same(shownBuckets, apiBuckets)) throw new Error(`buckets: console ${JSON.stringify(shownBuckets)}, QueryDataPoints ${JSON.stringify(apiBuckets)}`);
  const chartRows = await page.locator("figure.chart .visually-hidden table tbody tr").evaluateAll((rows) => rows.map((tr) => tr.cells[0].textContent));
  if (JSON.stringify(chartRows) !== JSON.stringify(answer.buckets.map((bucket) => seconds(bucket.startTime)))) throw new Error(`the chart's table has ${chartRows}, QueryDataPoints' buckets start ${answer.buckets.map((bucket) => bucket.startTime)}`);
  pass(`a P95 of route /v1/events in 5-minute buckets shows QueryDataPoints' ${apiBuckets.length} buckets, in the table and in the chart's table`);

  // Widths the API refuses: its words under the bucket width.
  const widthError = form.locator('.field[data-field="bucket_width"] .field-error');
  const refusal = async (body) => {
    const response = await suite.raw("POST", "/v1/dataPoints:query", { token, body: { name: "api.latency", ...body } });
    if (response.status !== 400) throw new Error(`QueryDataPoints accepts ${JSON.stringify(body)}`);
    return (await response.json()).details[0].fieldViolations.find((one) => one.field === "bucketWidth").description;
  };
  await form.getByLabel("Bucket width (seconds)").fill("0.5");
  await form.getByRole("button", { name: "Query" }).click();
  const half = await refusal({ bucketWidth: "0.5s" });
  await widthError.filter({ hasText: half }).waitFor({ timeout: 5_000 });
  pass(`a width of 0.5 s shows QueryDataPoints' "${half}" under the bucket width`);
  await form.getByRole("button", { name: "Last week" }).click();
  await form.getByLabel("Bucket width (seconds)").fill("1");
  await form.getByRole("button", { name: "Query" }).click();
  const many = await refusal({ bucketWidth: "1s", timeRange: { startTime: new Date(Date.now() - 7 * 24 * 60 * MINUTE).toISOString() } });
  await widthError.filter({ hasText: many }).waitFor({ timeout: 5_000 });
  pass(`a width of 1 s over a week shows QueryDataPoints' "${many}" under the bucket width`);

  // A custom range ending before it starts: the API's words under the range.
  await form.getByRole("button", { name: "Custom range" }).click();
  await form.getByLabel("Bucket width (seconds)").fill("60");
  const local = (ms) => new Date(ms).toISOString().slice(0, 19);
  await form.getByLabel("From (UTC)").fill(local(now));
  await form.getByLabel("Until (UTC)").fill(local(now - 60 * MINUTE));
  await form.getByRole("button", { name: "Query" }).click();
  const backwards = await suite.raw("POST", "/v1/dataPoints:query", {
    token,
    body: { name: "api.latency", timeRange: { startTime: new Date(now).toISOString(), endTime: new Date(now - 60 * MINUTE).toISOString() } },
  });
  const rangeProblem = (await backwards.json()).details[0].fieldViolations.find((one) => one.field === "timeRange").description;
  await form.locator('.field[data-field="time_range"] > .field-error').filter({ hasText: rangeProblem }).waitFor({ timeout: 5_000 });
  pass(`a range ending before it starts shows QueryDataPoints' "${rangeProblem}" under the time range`);

  await form.getByRole("button", { name: "Last hour" }).click();
  await page.locator('.query-state[data-state="done"]').waitFor({ state: "attached", timeout: 5_000 });
  if ((await widthError.innerText()).trim() !== "") throw new Error("the refused width's error is still shown after a good query");
  await suite.review(page, "data-points");
  await page.context().close();
}
