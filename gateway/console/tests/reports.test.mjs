// Reports, as the demo account (its company has peers): a period outside the
// contract's grammar shows GenerateReport's error by the period; a report
// generated with a double click is made once, heads the list, and the list
// equals ListReports' page; the open report's sections, assessments, findings
// and score equal GetReport's; each download equals DownloadReport's file over
// REST, byte for byte, under its file name.
import { readFileSync } from "node:fs";
import { DEMO, pass, waitFor } from "./lib.mjs";

const PAGE_SIZE = 25;
const TEMPLATE = "saas_growth";
const FORMATS = ["REPORT_FORMAT_HTML", "REPORT_FORMAT_MARKDOWN", "REPORT_FORMAT_CSV", "REPORT_FORMAT_JSON"];

/** An RFC 3339 time with its fraction written to nanoseconds, as the console writes it. */
const nanoseconds = (text) => text.replace(/(?:\.(\d+))?Z$/, (_, digits = "") => `.${digits.padEnd(9, "0")}Z`);

export default async function (suite) {
  // `metrix dev` seeds the demo account and its peers on first start.
  const token = await waitFor(() => suite.token(DEMO), 90_000, "the demo account to be seeded");
  const { companies } = await suite.rest("GET", "/v1/companies", { token });
  const company = companies.find((one) => one.name === "Demo Labs");
  if (!company) throw new Error("the demo account has no company Demo Labs");
  const listReports = async () => (await suite.rest("GET", `/v1/reports?pageSize=${PAGE_SIZE}`, { token })).reports ?? [];

  const page = await suite.newPage();
  await suite.signIn(page, DEMO);
  await page.getByRole("link", { name: "Reports" }).click();
  const form = page.getByRole("form", { name: "Generate a report" });
  await form.getByLabel("Company").selectOption(company.companyId);
  await form.getByLabel("Template").selectOption(TEMPLATE);

  // A period in the wrong case: the API's words under the period.
  const before = await listReports();
  await form.getByLabel("Period (optional)").fill("2026-q1");
  await form.getByRole("button", { name: "Generate the report" }).click();
  const refused = await suite.raw("POST", "/v1/reports", { token, body: { companyId: company.companyId, templateId: TEMPLATE, period: "2026-q1" } });
  const violation = (await refused.json()).details[0].fieldViolations.find((one) => one.field === "period");
  await form.locator('.field[data-field="period"] .field-error').filter({ hasText: violation.description }).waitFor({ timeout: 5_000 });
  pass(`a period of 2026-q1 shows GenerateReport's "${violation.description}" under the period`);

  // A double click makes one report.
  await form.getByLabel("Period (optional)").fill("");
  await form.getByRole("button", { name: "Generate the report" }).dblclick();
  await page.waitForURL(/#\/reports\?report=/, { timeout: 10_000 });
  const reportId = new URL(page.url()).hash.split("report=")[1];
  const detail = page.locator(`section[data-report="${reportId}"]`);
  await detail.locator('dd[data-status="REPORT_STATUS_SUCCEEDED"]').waitFor({ timeout: 20_000 });
  const after = await listReports();
  if (after[0]?.id !== reportId) throw new Error(`ListReports starts with ${after[0]?.id}, not the generated ${reportId}`);
  if (after.filter((one) => !before.some((old) => old.id === one.id)).length !== 1) throw new Error("a double click made more than one report");
  pass(`a double click on "Generate the report" made one report (${reportId}), first in ListReports`);

  // The list equals ListReports' first page, newest first.
  await page.locator(`tr[data-report-id="${reportId}"][data-status="REPORT_STATUS_SUCCEEDED"]`).waitFor({ timeout: 10_000 });
  const shownRows = await page.locator("table[data-reports] tr[data-report-id]").evaluateAll((rows) =>
    rows.map((tr) => [tr.dataset.reportId, tr.dataset.status, tr.dataset.companyId, tr.dataset.templateId, tr.dataset.period, tr.dataset.createTime]),
  );
  const apiRows = after.map((one) => [one.id, one.status, one.companyId, one.templateId, one.period, nanoseconds(one.createTime)]);
  if (JSON.stringify(shownRows) !== JSON.stringify(apiRows)) throw new Error(`reports: console ${JSON.stringify(shownRows)}, ListReports ${JSON.stringify(apiRows)}`);
  pass(`the list shows ListReports' ${apiRows.length} reports in its order, the new one first`);

  // The open report equals GetReport's.
  const { report } = await suite.rest("GET", `/v1/reports/${reportId}`, { token });
  const sections = await detail.locator("article[data-metric-id]").evaluateAll((articles) =>
    articles.map((article) => [article.dataset.metricId, article.dataset.assessment, article.querySelector(".reading").textContent, article.querySelectorAll(".report-chart svg").length]),
  );
  const expected = report.sections.map((section) => [section.metricId, section.assessment, section.reading, section.chartSvg ? 1 : 0]);
  if (JSON.stringify(sections) !== JSON.stringify(expected)) throw new Error(`sections: console ${JSON.stringify(sections)}, GetReport ${JSON.stringify(expected)}`);
  for (const kind of ["strengths", "weaknesses"]) {
    const shown = await detail.locator(`[data-findings="${kind}"] li`).evaluateAll((items) => items.map((li) => [li.dataset.metricId, li.textContent]));
    const wanted = (report[kind] ?? []).map((finding) => [finding.metricId, finding.text]);
    if (JSON.stringify(shown) !== JSON.stringify(wanted)) throw new Error(`${kind}: console ${JSON.stringify(shown)}, GetReport ${JSON.stringify(wanted)}`);
  }
  const score = Number(await detail.locator('[data-figure="overall.score"]').getAttribute("data-value"));
  if (score !== report.overall.score) throw new Error(`overall score: console ${score}, GetReport ${report.overall.score}`);
  pass(`the report shows GetReport's ${expected.length} sections (${expected.map(([id, assessment]) => `${id} ${assessment}`).join(", ")}), its findings and its score ${score}`);

  // Each download is DownloadReport's file.
  for (const format of FORMATS) {
    const [download] = await Promise.all([page.waitForEvent("download"), detail.locator(`button[data-format="${format}"]`).click()]);
    const response = await suite.raw("GET", `/v1/reports/${reportId}/download?format=${format}`, { token });
    if (!response.ok) throw new Error(`DownloadReport ${format}: ${response.status}`);
    const filename = /filename="([^"]+)"/.exec(response.headers.get("content-disposition") ?? "")?.[1];
    if (download.suggestedFilename() !== filename) throw new Error(`${format}: the console saves ${download.suggestedFilename()}, DownloadReport names ${filename}`);
    const saved = readFileSync(await download.path());
    const served = Buffer.from(await response.arrayBuffer());
    if (!saved.equals(served)) throw new Error(`${format}: the console's file (${saved.length} B) differs from DownloadReport's (${served.length} B)`);
    pass(`${format}: the console downloads ${filename}, byte-equal to DownloadReport's (${served.length} B)`);
  }

  await suite.review(page, "reports");
  await page.context().close();
}
