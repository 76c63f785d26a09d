// The organisation's reports: a form generating one from a template
// (ListReportTemplates, the companies of ListCompanies, GenerateReport with an
// idempotency key per click), the list (ListReports, newest first, a page at a
// time), one report at #/reports?report=… (GetReport, polled until it is done:
// its sections with their readings, assessments and charts, its strengths and
// weaknesses) and its files (DownloadReport). Peer slices are named from
// ListRevenueBands, ListSectors and ListBenchmarkSources. Every number is the
// API's; the console only lays them out.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { benchmark, metrics, withRenewal } from "../api.js";
import {
  Assessment,
  Quartile,
  ReportFormat,
  ReportStatus,
  type BenchmarkSource,
  type MetricRanking,
  type Report,
  type ReportFinding,
  type ReportSection,
  type ReportTemplate,
} from "../gen/metrix/benchmark/v1/benchmark_pb.js";
import type { RevenueBand, Sector } from "../gen/metrix/common/v1/common_pb.js";
import type { Company } from "../gen/metrix/metrics/v1/metrics_pb.js";
import { banner, clearErrors, count, dateTime, field, figure, h, number, replace, scroller, selectField, showError } from "../ui.js";
import type { View } from "../view.js";
import { everyPage } from "./companies.js";
import { exactTime } from "./datapoints.js";

const PAGE_SIZE = 25;
const POLL_MS = 1_000;

const STATUSES: Record<ReportStatus, string> = {
  [ReportStatus.UNSPECIFIED]: "unknown",
  [ReportStatus.PENDING]: "queued",
  [ReportStatus.RUNNING]: "generating",
  [ReportStatus.SUCCEEDED]: "ready",
  [ReportStatus.FAILED]: "failed",
};

const ASSESSMENTS: Record<Assessment, string> = {
  [Assessment.UNSPECIFIED]: "not assessed",
  [Assessment.STRENGTH]: "strength",
  [Assessment.NEUTRAL]: "neutral",
  [Assessment.WEAKNESS]: "weakness",
  [Assessment.NOT_RANKED]: "not ranked",
};

const QUARTILES: Record<Quartile, string> = {
  [Quartile.UNSPECIFIED]: "—",
  [Quartile.TOP]: "top",
  [Quartile.UPPER_MIDDLE]: "upper middle",
  [Quartile.LOWER_MIDDLE]: "lower middle",
  [Quartile.BOTTOM]: "bottom",
};

const FORMATS: [ReportFormat, string][] = [
  [ReportFormat.HTML, "HTML"],
  [ReportFormat.MARKDOWN, "Markdown"],
  [ReportFormat.CSV, "CSV"],
  [ReportFormat.JSON, "JSON"],
];

/** Names for the ids a report carries; an unknown id is shown as itself. */
interface Names {
  company(id: string): string;
  template(id: string): string;
  band(id: string): string;
  sector(id: string): string;
  source(id: string): string;
}

function namer<T>(items: T[], id: (item: T) => string, name: (item: T) => string): (wanted: string) => string {
  const byId = new Map(items.map((item) => [id(item), name(item)]));
  return (wanted) => byId.get(wanted) ?? wanted;
}

const isDone = (status: ReportStatus) => status === ReportStatus.SUCCEEDED || status === ReportStatus.FAILED;
const time = (stamp: Timestamp | undefined) => (stamp ? timestampDate(stamp) : undefined);
const optional = (value: number | undefined) => (value === undefined ? "—" : number(value));

export const reportsView: View = (main, parameters) => {
  const errors = banner();
  const life = { stopped: false };
  replace(main, h("h1", {}, "Reports"), errors, h("p", { class: "muted" }, "Loading…"));

  void (async () => {
    let companies: Company[], templates: ReportTemplate[], bands: RevenueBand[], sectors: Sector[], sources: BenchmarkSource[];
    try {
      [companies, templates, bands, sectors, sources] = await Promise.all([
        everyPage((token) => metrics.listCompanies({ pageSize: 1000, pageToken: token }).then((answer): [Company[], string] => [answer.companies, answer.nextPageToken])),
        everyPage((token) =>
          benchmark.listReportTemplates({ pageSize: 200, pageToken: token }).then((answer): [ReportTemplate[], string] => [answer.reportTemplates, answer.nextPageToken]),
        ),
        everyPage((token) => benchmark.listRevenueBands({ pageSize: 200, pageToken: token }).then((answer): [RevenueBand[], string] => [answer.revenueBands, answer.nextPageToken])),
        everyPage((token) => benchmark.listSectors({ pageSize: 200, pageToken: token }).then((answer): [Sector[], string] => [answer.sectors, answer.nextPageToken])),
        everyPage((token) =>
          benchmark.listBenchmarkSources({ pageSize: 200, pageToken: token }).then((answer): [BenchmarkSource[], string] => [answer.benchmarkSources, answer.nextPageToken]),
        ),
      ]);
    } catch (error) {
      replace(main, h("h1", {}, "Reports"), errors);
      showError(error, errors);
      return;
    }
    if (life.stopped) return;
    const names: Names = {
      company: namer(companies, (one) => one.companyId, (one) => one.name),
      template: namer(templates, (one) => one.id, (one) => one.displayName),
      band: namer(bands, (one) => one.id, (one) => one.displayName),
      sector: namer(sectors, (one) => one.id, (one) => one.displayName),
      source: namer(sources, (one) => one.id, (one) => one.displayName),
    };
    const opened = parameters.get("report") ?? "";
    const list = listSection(names, opened, errors);
    replace(
      main,
      h("h1", {}, "Reports"),
      errors,
      opened ? reportSection(opened, names, life, () => void list.refresh()) : undefined,
      generateSection(companies, templates),
      list.element,
    );
    void list.refresh();
  })();

  return () => {
    life.stopped = true;
  };
};

/** An idempotency key: 128 random bits (crypto.randomUUID needs a secure context; this does not). */
function requestId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Adds a hint under a field, read out with its input. */
function hint(wrapper: HTMLElement, text: string): HTMLElement {
  const control = wrapper.querySelector("input, select");
  const made = h("p", { class: "hint", id: `${control?.id ?? ""}-hint` }, text);
  control?.setAttribute("aria-describedby", `${made.id} ${control.getAttribute("aria-describedby") ?? ""}`.trim());
  wrapper.querySelector(".field-error")?.before(made);
  return made;
}

function generateSection(companies: Company[], templates: ReportTemplate[]): HTMLElement {
  const section = (...content: (Node | string)[]) =>
    h("section", { class: "panel", "aria-labelledby": "generate-title" }, h("h2", { id: "generate-title" }, "Generate a report"), ...content);
  if (companies.length === 0) {
    return section(
      h(
        "div",
        { class: "empty" },
        h("p", {}, "A report compares one of your companies with its peers. ", h("a", { href: "#/companies" }, "Create a company"), " and record its KPIs first."),
      ),
    );
  }
  const errors = banner();
  const company = selectField(
    "Company",
    "company_id",
    companies.map((one): [string, string] => [one.companyId, one.name]),
  );
  const template = selectField(
    "Template",
    "template_id",
    templates.map((one): [string, string] => [one.id, one.displayName]),
  );
  const period = field("Period (optional)", "period", { autocomplete: "off", placeholder: "2026-Q3", spellcheck: "false", maxlength: 7 });
  const about = hint(template.wrapper, "");
  hint(period.wrapper, "A quarter (YYYY-Qn) or a month (YYYY-MM); empty means the most recent quarter that has ended.");
  const describeTemplate = () => {
    const chosen = templates.find((one) => one.id === template.select.value);
    about.textContent = chosen ? `${chosen.description} Metrics: ${chosen.metricIds.join(", ")}.` : "";
  };
  template.select.addEventListener("change", describeTemplate);
  describeTemplate();
  const submit = h("button", { type: "submit", class: "primary" }, "Generate the report");
  const form = h(
    "form",
    { "aria-label": "Generate a report", novalidate: true },
    h("div", { class: "field-row" }, company.wrapper, template.wrapper, period.wrapper),
    errors,
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    // The button stays disabled until the answer, so a double click sends one
    // request; its key makes the retry after a renewed session the same report.
    if (submit.disabled) return;
    submit.disabled = true;
    clearErrors(errors, form);
    const request = { companyId: company.select.value, templateId: template.select.value, period: period.input.value.trim(), requestId: requestId() };
    withRenewal(() => benchmark.generateReport(request))
      .then((answer) => {
        if (answer.report) location.hash = `#/reports?report=${encodeURIComponent(answer.report.id)}`;
      })
      .catch((error: unknown) => showError(error, errors, form))
      .finally(() => (submit.disabled = false));
  });
  return section(form);
}

function listSection(names: Names, opened: string, errors: HTMLElement): { element: HTMLElement; refresh: () => Promise<void> } {
  const list = h("div");
  const more = h("button", { type: "button", hidden: true }, "Next page");
  const element = h(
    "section",
    { class: "panel", "aria-labelledby": "reports-title" },
    h("h2", { id: "reports-title" }, "Your organisation's reports"),
    h("p", { class: "muted" }, "Newest first."),
    list,
    more,
  );
  let pageToken = "";

  async function showPage(next: boolean): Promise<void> {
    try {
      const answer = await withRenewal(() => benchmark.listReports({ pageSize: PAGE_SIZE, pageToken: next ? pageToken : "" }));
      pageToken = answer.nextPageToken;
      more.hidden = pageToken === "";
      const rows = answer.reports.map((report) => row(report, names, report.id === opened));
      if (next) list.querySelector("tbody")?.append(...rows);
      else
        replace(
          list,
          rows.length === 0
            ? h("p", { class: "empty" }, "No report yet: generate the first one with the form above.")
            : scroller(
                "Reports",
                h(
                  "table",
                  { class: "data many-columns", "data-reports": "" },
                  h("caption", { class: "visually-hidden" }, "Your organisation's reports, newest first"),
                  h("thead", {}, h("tr", {}, ...["Requested (UTC)", "Company", "Template", "Period", "Status", "Completed (UTC)", "Report"].map((title) => h("th", { scope: "col" }, title)))),
                  h("tbody", {}, ...rows),
                ),
              ),
        );
    } catch (error) {
      showError(error, errors);
    }
  }
  more.addEventListener("click", () => void showPage(true));
  return { element, refresh: () => showPage(false) };
}

function row(report: Report, names: Names, open: boolean): HTMLElement {
  const requested = time(report.createTime);
  return h(
    "tr",
    {
      "data-report-id": report.id,
      "data-status": `REPORT_STATUS_${ReportStatus[report.status]}`,
      "data-company-id": report.companyId,
      "data-template-id": report.templateId,
      "data-period": report.period,
      "data-create-time": exactTime(report.createTime),
    },
    h("th", { scope: "row", class: "time" }, dateTime(requested)),
    h("td", {}, names.company(report.companyId)),
    h("td", {}, names.template(report.templateId)),
    h("td", {}, report.period),
    h("td", {}, h("span", { class: "report-status", "data-status": ReportStatus[report.status] }, STATUSES[report.status]), report.failureMessage && h("span", { class: "failure" }, `: ${report.failureMessage}`)),
    h("td", { class: "time" }, dateTime(time(report.completeTime))),
    h(
      "td",
      {},
      h(
        "a",
        { href: `#/reports?report=${encodeURIComponent(report.id)}`, "aria-current": open ? "true" : undefined },
        open ? "Shown above" : "Open",
        h("span", { class: "visually-hidden" }, ` the report on ${names.company(report.companyId)}, ${report.period}, requested ${dateTime(requested)}`),
      ),
    ),
  );
}

/** One report, read again every second until it has succeeded or failed; `settled` is called when it gets there. */
function reportSection(reportId: string, names: Names, life: { stopped: boolean }, settled: () => void): HTMLElement {
  const errors = banner();
  const element = h("section", { class: "panel report", "aria-labelledby": "report-title", "data-report": reportId }, h("h2", { id: "report-title" }, "Report"), h("p", { class: "muted" }, "Loading…"));
  let polled = false;

  async function load(): Promise<void> {
    try {
      const report = (await withRenewal(() => benchmark.getReport({ reportId }))).report;
      if (life.stopped || !report) return;
      replace(element, ...reportContent(report, names));
      if (!isDone(report.status)) {
        polled = true;
        window.setTimeout(() => void load(), POLL_MS);
      } else if (polled) settled();
    } catch (error) {
      replace(element, h("h2", { id: "report-title" }, "Report"), errors, h("p", {}, h("a", { href: "#/reports" }, "Back to every report")));
      showError(error, errors);
    }
  }
  void load();
  return element;
}

function reportContent(report: Report, names: Names): (Node | string | undefined)[] {
  const slice = `${names.band(report.revenueBandId)}, ${report.sectorId ? names.sector(report.sectorId) : "every sector of the band"}`;
  return [
    h("div", { class: "page-head" }, h("h2", { id: "report-title" }, `${names.template(report.templateId)}: ${names.company(report.companyId)}, ${report.period}`), h("a", { href: "#/reports" }, "Close")),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Status"),
      h("dd", { "data-status": `REPORT_STATUS_${ReportStatus[report.status]}` }, STATUSES[report.status]),
      h("dt", {}, "Peers"),
      h("dd", {}, slice),
      h("dt", {}, "Source"),
      h("dd", {}, names.source(report.sourceId)),
      h("dt", {}, "Requested"),
      h("dd", {}, dateTime(time(report.createTime))),
      h("dt", {}, "Completed"),
      h("dd", {}, dateTime(time(report.completeTime))),
    ),
    ...(report.status === ReportStatus.SUCCEEDED
      ? succeeded(report)
      : report.status === ReportStatus.FAILED
        ? [h("div", { class: "banner error", "data-failure": "" }, h("p", {}, `The report could not be generated: ${report.failureMessage}`), h("p", {}, "Check the company's KPIs for this period, then generate it again."))]
        : [h("p", { role: "status" }, "Generating… this page shows the report as soon as it is ready.")]),
  ];
}

function succeeded(report: Report): HTMLElement[] {
  const errors = banner();
  const overall = report.overall;
  const score = figure("Overall score (0–100)", "overall.score", optional(overall?.score));
  if (overall?.score !== undefined) score.querySelector("dd")?.setAttribute("data-value", String(overall.score));
  return [
    h(
      "div",
      { class: "actions", role: "group", "aria-label": "Download the report" },
      ...FORMATS.map(([format, label]) => {
        const button = h("button", { type: "button", "data-format": `REPORT_FORMAT_${ReportFormat[format]}` }, `Download ${label}`);
        button.addEventListener("click", () => void download(report.id, format, button, errors));
        return button;
      }),
    ),
    errors,
    h(
      "dl",
      { class: "figures" },
      score,
      figure("Overall quartile", "overall.quartile", QUARTILES[overall?.quartile ?? Quartile.UNSPECIFIED]),
      figure("Metrics ranked", "overall.ranked_metric_count", `${count(overall?.rankedMetricCount ?? 0)} of ${count(overall?.metricCount ?? 0)}`),
    ),
    h(
      "div",
      { class: "findings" },
      findings("Strengths", "strengths", report.strengths, "No metric is in the top quartile of its peers."),
      findings("Weaknesses", "weaknesses", report.weaknesses, "No metric is in the bottom quartile of its peers."),
    ),
    ...report.sections.map(sectionView),
  ];
}

function findings(title: string, kind: string, items: ReportFinding[], none: string): HTMLElement {
  return h(
    "div",
    { "data-findings": kind },
    h("h3", {}, title),
    items.length === 0 ? h("p", { class: "muted" }, none) : h("ul", {}, ...items.map((item) => h("li", { "data-metric-id": item.metricId }, item.text))),
  );
}

function sectionView(section: ReportSection): HTMLElement {
  const chart = section.chartSvg ? safeSvg(section.chartSvg) : undefined;
  return h(
    "article",
    { class: "report-section", "data-metric-id": section.metricId, "data-assessment": `ASSESSMENT_${Assessment[section.assessment]}` },
    h("h3", {}, section.metricDisplayName, " ", h("span", { class: "assessment", "data-assessment": Assessment[section.assessment] }, ASSESSMENTS[section.assessment])),
    h("p", { class: "reading" }, section.reading),
    chart ? h("div", { class: "report-chart" }, chart) : section.chartSvg && h("p", { class: "muted" }, "This section's chart is not shown: it held content the console does not display."),
    section.ranking && rankingTable(section.metricDisplayName, section.ranking),
  );
}

function rankingTable(name: string, ranking: MetricRanking): HTMLElement {
  const peers = ranking.peerStatistics;
  const columns: [string, string][] = [
    ["Value", optional(ranking.value)],
    ["Percentile rank", optional(ranking.percentileRank)],
    ["Score", optional(ranking.score)],
    ["Quartile", QUARTILES[ranking.quartile]],
    ["P10", optional(peers?.p10)],
    ["P25", optional(peers?.p25)],
    ["Median", optional(peers?.p50)],
    ["P75", optional(peers?.p75)],
    ["P90", optional(peers?.p90)],
    ["Peers", peers?.n ? count(peers.n) : "—"],
  ];
  return scroller(
    `${name}: figures`,
    h(
      "table",
      { class: "data many-columns" },
      h("caption", { class: "visually-hidden" }, `${name}: the company's value, its rank and the peers' percentiles`),
      h("thead", {}, h("tr", {}, ...columns.map(([title]) => h("th", { scope: "col", class: title === "Quartile" ? undefined : "num" }, title)))),
      h("tbody", {}, h("tr", {}, ...columns.map(([title, value]) => h("td", { class: title === "Quartile" ? undefined : "num" }, value)))),
    ),
  );
}

/**
 * A section's chart: the server's SVG markup parsed as SVG (never as HTML),
 * imported only when nothing in it could run or reach out — no script, no
 * foreignObject, no on… attribute, no link leaving the document. The CSP
 * would stop scripts anyway; this keeps the markup from ever getting that far.
 */
function safeSvg(markup: string): Element | undefined {
  const parsed = new DOMParser().parseFromString(markup, "image/svg+xml");
  const root = parsed.documentElement;
  if (root.localName !== "svg" || root.namespaceURI !== "http://www.w3.org/2000/svg" || parsed.getElementsByTagName("parsererror").length > 0) return undefined;
  for (const element of [root, ...root.querySelectorAll("*")]) {
    const name = element.localName.toLowerCase();
    if (name === "script" || name === "foreignobject") return undefined;
    for (const attribute of element.attributes) {
      const attributeName = attribute.localName.toLowerCase();
      if (attributeName.startsWith("on")) return undefined;
      if (attributeName === "href" && !attribute.value.trim().startsWith("#")) return undefined;
    }
  }
  return document.importNode(root, true);
}

async function download(reportId: string, format: ReportFormat, button: HTMLButtonElement, errors: HTMLElement): Promise<void> {
  clearErrors(errors);
  button.disabled = true;
  try {
    const file = await withRenewal(() => benchmark.downloadReport({ reportId, format }));
    // A copy: a Blob takes bytes over an ArrayBuffer, and the message's may be shared.
    const url = URL.createObjectURL(new Blob([file.content.slice()], { type: file.contentType }));
    const link = h("a", { href: url, download: file.filename, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    // The download has its own copy once it has started; the URL is only freed later.
    window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    showError(error, errors);
  } finally {
    button.disabled = false;
  }
}
