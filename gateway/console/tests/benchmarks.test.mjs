// The benchmarks page against the benchmark service, as the demo account sees
// it: the company's ranking (RankCompany), a slice's figures (GetBenchmark)
// with the company placed on it, the series behind the chart
// (GetBenchmarkTimeSeries), a withheld slice explained, a refused period, and
// a what-if (CalculateRanking).
import { DEMO, pass } from "./lib.mjs";

/** The peer companies `metrix dev` seeds before the demo account's own. */
const SEEDED_PEERS = 300;
const QUARTILES = {
  QUARTILE_TOP: "Top quartile",
  QUARTILE_UPPER_MIDDLE: "Upper middle",
  QUARTILE_LOWER_MIDDLE: "Lower middle",
  QUARTILE_BOTTOM: "Bottom quartile",
};

/** Whether `text` shows `value` as the console rounds it (two decimals at most); an unset figure shows no digit. */
function shows(text, value) {
  if (value === undefined) return !/[0-9]/.test(text);
  return Number(text.replace(/[^0-9.-]/g, "")) === Number(value.toFixed(2));
}

function expectShown(what, text, value) {
  if (!shows(text, value)) throw new Error(`${what}: the console shows "${text}", the API answers ${value}`);
}

const short = (name, prefix) => name.replace(prefix, "");

/**
 * Waits for the demo data without a failed sign-in (five lock the demo
 * account for the rest of the suite): a new organisation sees every ARR
 * value of the latest quarter, one per company across the bands, and the
 * demo company's values are recorded after its account is created, so one
 * more than the seeded peers means both exist.
 */
async function demoSeeded(suite) {
  const probe = await suite.account("bench-probe");
  const bands = (await suite.rest("GET", "/v1/revenueBands", { token: probe.token })).revenueBands;
  // Five queries a round, a round every 3 s: within the organisation's benchmark quota.
  const deadline = Date.now() + 120_000;
  for (;;) {
    let companies = 0;
    for (const band of bands) {
      const answer = await suite.rest("GET", `/v1/benchmarks/arr?revenueBandId=${band.id}`, { token: probe.token });
      companies += answer.results[0].statistics.totalCount ?? 0;
    }
    if (companies > SEEDED_PEERS) return;
    if (Date.now() > deadline) throw new Error(`waited 120 s for the demo data: ${companies} companies have an ARR value`);
    await new Promise((resolve) => setTimeout(resolve, 3_000));
  }
}

/** The ranking rows inside `scope` against an answer's rankings, cell by cell. */
async function expectRankings(page, scope, rankings, what) {
  const shown = await page.locator(`${scope} tr[data-metric]`).evaluateAll((rows) =>
    rows.map((row) => ({
      metricId: row.getAttribute("data-metric"),
      status: row.getAttribute("data-status"),
      cells: Object.fromEntries([...row.querySelectorAll("[data-col]")].map((cell) => [cell.getAttribute("data-col"), cell.textContent])),
    })),
  );
  const ids = (rankings ?? []).map((ranking) => ranking.metricId);
  if (JSON.stringify(shown.map((row) => row.metricId)) !== JSON.stringify(ids)) {
    throw new Error(`${what}: the console lists ${shown.map((row) => row.metricId)}, the API ${ids}`);
  }
  for (const [index, ranking] of rankings.entries()) {
    const row = shown[index];
    if (row.status !== short(ranking.status, "RANKING_STATUS_")) throw new Error(`${what} ${ranking.metricId}: status ${row.status}, API ${ranking.status}`);
    expectShown(`${what} ${ranking.metricId} value`, row.cells.value, ranking.value);
    expectShown(`${what} ${ranking.metricId} percentile rank`, row.cells.percentile_rank, ranking.percentileRank);
    expectShown(`${what} ${ranking.metricId} score`, row.cells.score, ranking.score);
    if (ranking.status === "RANKING_STATUS_RANKED" && row.cells.quartile !== QUARTILES[ranking.quartile]) {
      throw new Error(`${what} ${ranking.metricId}: quartile "${row.cells.quartile}", API ${ranking.quartile}`);
    }
    const peers = ranking.peerStatistics?.n ?? 0;
    if (peers > 0) expectShown(`${what} ${ranking.metricId} peers`, row.cells.n, peers);
  }
}

async function figureText(page, key) {
  return page.locator(`section.bench-slice [data-figure="${key}"]`).innerText();
}

/** Picks a slice in the form and waits until the page shows it. */
async function pick(page, { metricId, revenueBandId, sectorId, period }) {
  const form = page.locator('form[data-form="slice"]');
  await form.getByLabel("Metric").selectOption(metricId);
  await form.getByLabel("Revenue band").selectOption(revenueBandId);
  await form.getByLabel("Sector").selectOption(sectorId);
  await form.getByLabel(/^Period/).fill(period);
  await form.getByRole("button", { name: "Show" }).click();
  const key = [metricId, revenueBandId, sectorId, period].join("|");
  await page.locator(`section.bench-slice[data-state="ready"][data-slice="${key}"]`).waitFor({ timeout: 10_000 });
  await page.locator(`section.bench-series[data-state="ready"][data-slice="${[metricId, revenueBandId, sectorId].join("|")}"]`).waitFor({ timeout: 10_000 });
}

export default async function (suite) {
  await demoSeeded(suite);
  const token = await suite.token(DEMO);
  const api = (path, body) => suite.rest(body ? "POST" : "GET", path, { token, body });
  const { companies } = await api("/v1/companies");
  const company = companies.find((candidate) => candidate.name === "Demo Labs");
  if (!company) throw new Error("the demo account has no Demo Labs");

  const page = await suite.newPage();
  await suite.signIn(page, DEMO);
  await page.getByRole("link", { name: "Benchmarks" }).click();
  await page.locator('[data-ranking][data-state="ready"]').waitFor({ timeout: 15_000 });
  await page.locator('section.bench-slice[data-state="ready"]').waitFor({ timeout: 10_000 });

  // The ranking across every metric, strengths and weaknesses.
  const ranked = await api(`/v1/companies/${company.companyId}/ranking`);
  const rankedPeriod = await page.locator("[data-ranking]").getAttribute("data-period");
  if (rankedPeriod !== ranked.period) throw new Error(`the ranking is for ${rankedPeriod}, RankCompany answers ${ranked.period}`);
  await expectRankings(page, "[data-ranking]", ranked.rankings, "ranking");
  expectShown("overall score", await page.locator('[data-figure="overall.score"]').innerText(), ranked.overall?.score);
  const strengths = await page.locator("[data-strengths] li[data-metric]").evaluateAll((items) => items.map((item) => item.getAttribute("data-metric")));
  const top = ranked.rankings.filter((ranking) => ranking.quartile === "QUARTILE_TOP").sort((a, b) => b.score - a.score).map((ranking) => ranking.metricId);
  if (JSON.stringify(strengths) !== JSON.stringify(top)) throw new Error(`strengths: the console lists ${strengths}, RankCompany's top quartile is ${top}`);
  pass(`the ranking shows RankCompany's ${ranked.rankings.length} metrics for ${ranked.period} (overall ${ranked.overall?.score?.toFixed(2)}), strengths ${top.join(", ")}`);

  // A slice picked in the form: every figure as GetBenchmark answers it.
  const chosen = { metricId: "gross_margin", revenueBandId: "arr_10m_50m", sectorId: "" };
  const quarterly = await api(`/v1/benchmarks/${chosen.metricId}/timeSeries?revenueBandId=${chosen.revenueBandId}&granularity=TIME_GRANULARITY_QUARTER`);
  const withFigures = quarterly.points.filter((point) => (point.statistics.n ?? 0) > 0);
  const period = withFigures.at(-2)?.period;
  if (!period) throw new Error("the time series has fewer than two periods with figures");
  await pick(page, { ...chosen, period });
  const answer = await api(`/v1/benchmarks/${chosen.metricId}?revenueBandId=${chosen.revenueBandId}&period=${period}`);
  const statistics = answer.results[0].statistics;
  if ((await figureText(page, "n")).replace(/[^0-9]/g, "") !== String(statistics.n)) throw new Error(`n: the console shows ${await figureText(page, "n")}, GetBenchmark ${statistics.n}`);
  for (const key of ["p10", "p25", "p50", "p75", "p90", "mean"]) expectShown(key, await figureText(page, key), statistics[key]);
  expectShown("std_dev", await figureText(page, "std_dev"), statistics.stdDev);
  for (const [key, interval] of [["mean_ci", statistics.meanConfidenceInterval], ["median_ci", statistics.medianConfidenceInterval]]) {
    expectShown(`${key} lower`, await figureText(page, `${key}.lower`), interval.lowerBound);
    expectShown(`${key} upper`, await figureText(page, `${key}.upper`), interval.upperBound);
  }
  const placed = await api(`/v1/companies/${company.companyId}/ranking?metricIds=${chosen.metricId}&revenueBandId=${chosen.revenueBandId}&allSectors=true&period=${period}`);
  const own = placed.rankings[0];
  if (own.status === "RANKING_STATUS_RANKED") {
    expectShown("the company's value", await figureText(page, "company.value"), own.value);
    expectShown("the company's percentile rank", await figureText(page, "company.percentile_rank"), own.percentileRank);
    await page.locator('section.bench-slice [data-mark="company"]').waitFor({ state: "attached" });
  }
  pass(
    `${chosen.metricId} in ${chosen.revenueBandId}, every sector, ${period}: n ${statistics.n}, P10–P90 ${statistics.p10.toFixed(2)}–${statistics.p90.toFixed(2)}, median ${statistics.p50.toFixed(2)}, mean ${statistics.mean.toFixed(2)} and both intervals as GetBenchmark answers; Demo Labs placed at ${own.value} (rank ${own.percentileRank?.toFixed(2)})`,
  );

  // The chart's hidden table holds GetBenchmarkTimeSeries' points.
  const rows = await page.locator("section.bench-series tr[data-period]").evaluateAll((found) =>
    found.map((row) => ({
      period: row.getAttribute("data-period"),
      cells: Object.fromEntries([...row.querySelectorAll("[data-col]")].map((cell) => [cell.getAttribute("data-col"), cell.textContent])),
    })),
  );
  if (JSON.stringify(rows.map((row) => row.period)) !== JSON.stringify(quarterly.points.map((point) => point.period))) {
    throw new Error(`the chart's periods ${rows.map((row) => row.period)} differ from the series' ${quarterly.points.map((point) => point.period)}`);
  }
  for (const [index, point] of quarterly.points.entries()) {
    const { cells } = rows[index];
    const reported = (point.statistics.n ?? 0) > 0;
    if (reported) expectShown(`${point.period} n`, cells.n, point.statistics.n);
    else if (/[0-9]/.test(cells.n)) throw new Error(`${point.period}: a withheld period shows ${cells.n} peers`);
    for (const key of ["p25", "p50", "p75", "mean"]) expectShown(`${point.period} ${key}`, cells[key], point.statistics[key]);
  }
  const trend = await page.locator("section.bench-series [data-trend]").getAttribute("data-trend");
  if (trend !== short(quarterly.trend.direction, "TREND_DIRECTION_")) throw new Error(`trend: the console says ${trend}, the API ${quarterly.trend.direction}`);
  pass(`the chart's table holds the series' ${rows.length} periods (n, P25, median, P75, mean) and its trend is ${trend}`);

  // A withheld slice, found through the API, is explained.
  const { sectors } = await api("/v1/sectors");
  let withheld;
  for (const sector of sectors) {
    const candidate = await api(`/v1/benchmarks/${chosen.metricId}?revenueBandId=${company.revenueBandId}&sectorId=${sector.id}&period=${period}`);
    if (candidate.results[0].statistics.suppression.status === "SUPPRESSION_STATUS_SUPPRESSED_BELOW_K") {
      withheld = { sectorId: sector.id, suppression: candidate.results[0].statistics.suppression };
      break;
    }
  }
  if (!withheld) throw new Error(`no sector of ${company.revenueBandId} is withheld below k for ${chosen.metricId} in ${period}`);
  await pick(page, { metricId: chosen.metricId, revenueBandId: company.revenueBandId, sectorId: withheld.sectorId, period });
  const section = page.locator("section.bench-slice");
  if ((await section.getAttribute("data-suppression")) !== "SUPPRESSED_BELOW_K") throw new Error("the withheld slice is not marked SUPPRESSED_BELOW_K");
  const reason = await section.locator("[data-explanation] [data-reason]").innerText();
  if (reason !== withheld.suppression.reason) throw new Error(`the explanation says "${reason}", GetBenchmark "${withheld.suppression.reason}"`);
  expectShown("minimum organisations", await figureText(page, "min_sample_size"), withheld.suppression.minSampleSize);
  if ((await section.locator('[data-figure="p50"]').count()) !== 0) throw new Error("a withheld slice shows a median");
  await suite.shoot(page, "benchmarks-withheld");
  pass(`${chosen.metricId} in ${company.revenueBandId} × ${withheld.sectorId} is explained: "${reason}", at least ${withheld.suppression.minSampleSize} organisations needed`);
  await section.getByRole("button", { name: "Compare with every sector of the band" }).click();
  await page.locator(`section.bench-slice[data-state="ready"][data-slice="${[chosen.metricId, company.revenueBandId, "", period].join("|")}"]`).waitFor();
  pass("the explanation's button widens the slice to every sector of the band");

  // A period outside the contract's grammar is refused, under the field.
  const form = page.locator('form[data-form="slice"]');
  await form.getByLabel(/^Period/).fill("2026-Q5");
  await form.getByRole("button", { name: "Show" }).click();
  const refusal = await suite.raw("GET", `/v1/benchmarks/${chosen.metricId}?revenueBandId=${company.revenueBandId}&period=2026-Q5`, { token });
  const violation = (await refusal.json()).details[0].fieldViolations[0];
  await form.locator('.field[data-field="period"] .field-error').filter({ hasText: violation.description }).waitFor();
  pass(`a bad period is refused under its field: "${violation.description}"`);
  await form.getByLabel(/^Period/).fill(period);
  await form.getByRole("button", { name: "Show" }).click();
  await page.locator(`section.bench-slice[data-state="ready"][data-slice="${[chosen.metricId, company.revenueBandId, "", period].join("|")}"]`).waitFor();

  // A what-if against CalculateRanking.
  const whatIf = page.locator('form[data-form="whatif"]');
  await whatIf.getByLabel("Revenue band").selectOption(company.revenueBandId);
  await whatIf.getByLabel("Sector").selectOption("");
  await whatIf.getByLabel(/^Net dollar retention/).fill("125");
  await whatIf.getByLabel(/^Burn multiple/).fill("1.1");
  await whatIf.getByRole("button", { name: "Rank these values" }).click();
  await page.locator("[data-whatif] tr[data-metric]").first().waitFor();
  const calculated = await api("/v1/rankings:calculate", {
    values: { ndr: 125, burn_multiple: 1.1 },
    revenueBandId: company.revenueBandId,
    sectorId: "",
    period,
    companyId: company.companyId,
  });
  await expectRankings(page, "[data-whatif]", calculated.rankings, "what-if");
  expectShown("what-if overall score", await page.locator('[data-figure="whatif.overall.score"]').innerText(), calculated.overall?.score);
  pass(`the what-if (NDR 125, burn multiple 1.1) ranks as CalculateRanking answers: ${calculated.rankings.map((r) => `${r.metricId} ${r.percentileRank?.toFixed(2)}`).join(", ")}`);
  await whatIf.getByLabel(/^Net dollar retention/).fill("lots");
  await whatIf.getByRole("button", { name: "Rank these values" }).click();
  await whatIf.locator('.field[data-field="values[ndr]"] .field-error').filter({ hasText: /finite/ }).waitFor();
  pass(`a value that is no number is refused under its field: "${await whatIf.locator('.field[data-field="values[ndr]"] .field-error').innerText()}"`);
  await whatIf.getByLabel(/^Net dollar retention/).fill("125");
  await whatIf.getByRole("button", { name: "Rank these values" }).click();
  await whatIf.locator('.field[data-field="values[ndr]"] .field-error:empty').waitFor({ state: "attached" });

  await suite.review(page, "benchmarks");
  await page.context().close();
}
