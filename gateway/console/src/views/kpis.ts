// One company's KPIs: entry (ValidateKpi first, RecordKpis only when the value
// is acceptable), each metric's history (ListKpis: a table per metric and a
// chart of one), the formula calculators (CalculateKpi) and CSV import
// (ImportKpis: a dry run listing every bad row by line, then the valid rows
// stored on request). Metrics, units, periods and bounds come from
// ListMetricDefinitions; nothing is computed here but layout.
import uPlot from "uplot";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { metrics, withRenewal } from "../api.js";
import {
  KpiSource,
  MetricUnit,
  PeriodGranularity,
  ValidationStatus,
  ViolationSeverity,
  type Company,
  type ImportKpisResponse,
  type ImportRowIssue,
  type KpiValue,
  type MetricDefinition,
  type ValidateKpiResponse,
} from "../gen/metrix/metrics/v1/metrics_pb.js";
import { banner, clearErrors, count, dateTime, field, figure, h, notify, number, replace, scroller, selectField, showError } from "../ui.js";
import type { View } from "../view.js";
import { everyPage } from "./companies.js";

const UNITS: Record<MetricUnit, { words: string; format: (value: number) => string }> = {
  [MetricUnit.UNSPECIFIED]: { words: "no unit", format: number },
  [MetricUnit.USD]: { words: "US dollars", format: (value) => `$${number(value)}` },
  [MetricUnit.PERCENT]: { words: "percent, 0–100", format: (value) => `${number(value)} %` },
  [MetricUnit.RATIO]: { words: "ratio", format: (value) => `${number(value)}×` },
  [MetricUnit.MONTHS]: { words: "months", format: (value) => `${number(value)} months` },
  [MetricUnit.COUNT]: { words: "count", format: number },
};

const GRANULARITIES: Record<PeriodGranularity, string> = {
  [PeriodGranularity.UNSPECIFIED]: "any period",
  [PeriodGranularity.MONTH]: "month (YYYY-MM)",
  [PeriodGranularity.QUARTER]: "quarter (YYYY-Qn)",
  [PeriodGranularity.YEAR]: "year (YYYY)",
};

const SOURCES: Record<KpiSource, string> = {
  [KpiSource.UNSPECIFIED]: "—",
  [KpiSource.MANUAL]: "entered",
  [KpiSource.API]: "API",
  [KpiSource.CSV_IMPORT]: "CSV import",
  [KpiSource.CALCULATED]: "calculated",
  [KpiSource.DEMO]: "demo",
};

const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 2 });

/** A value in its metric's unit, for reading (the number itself is the API's). */
function shown(value: number, unit: MetricUnit): string {
  return UNITS[unit].format(value);
}

/** A figure in its unit, carrying the API's number as `data-value` for the tests. */
function rawFigure(label: string, key: string, value: number, unit: MetricUnit): HTMLElement {
  const made = figure(label, key, shown(value, unit));
  made.querySelector("dd")?.setAttribute("data-value", String(value));
  return made;
}

/** Bounds as words: "0 to 100", "0 or more", "at most 10", "any value". */
function range(min: number | undefined, max: number | undefined): string {
  if (min !== undefined && max !== undefined) return `${number(min)} to ${number(max)}`;
  if (min !== undefined) return `${number(min)} or more`;
  if (max !== undefined) return `at most ${number(max)}`;
  return "any value";
}

/** The text typed as a number; empty or unreadable is NaN, which the API explains. */
function typedNumber(text: string): number {
  return text.trim() === "" ? Number.NaN : Number(text.trim());
}

/** Adds a hint and a place for warnings under a field, read out with the input. */
function explain(wrapper: HTMLElement, hint: HTMLElement): HTMLElement {
  const control = wrapper.querySelector("input, select");
  const id = control?.id ?? "";
  const warning = h("div", { class: "field-warning", id: `${id}-warning` });
  hint.id = `${id}-hint`;
  hint.classList.add("hint");
  control?.setAttribute("aria-describedby", `${id}-hint ${id}-error ${id}-warning`);
  wrapper.querySelector(".field-error")?.before(hint);
  wrapper.append(warning);
  return hint;
}

export const kpisView: View = (main, parameters) => {
  const errors = banner();
  let chart: PeriodChart | undefined;
  replace(main, h("h1", {}, "KPIs"), errors, h("p", { class: "muted" }, "Loading…"));

  void (async () => {
    let companies: Company[];
    let definitions: MetricDefinition[];
    try {
      [companies, definitions] = await Promise.all([
        everyPage((token) => metrics.listCompanies({ pageSize: 1000, pageToken: token }).then((answer): [Company[], string] => [answer.companies, answer.nextPageToken])),
        everyPage((token) =>
          metrics.listMetricDefinitions({ pageSize: 1000, pageToken: token }).then((answer): [MetricDefinition[], string] => [answer.metricDefinitions, answer.nextPageToken]),
        ),
      ]);
    } catch (error) {
      replace(main, h("h1", {}, "KPIs"), errors);
      showError(error, errors);
      return;
    }
    const wanted = parameters.get("company");
    const company = companies.find((candidate) => candidate.companyId === wanted) ?? companies[0];
    if (!company) {
      replace(
        main,
        h("h1", {}, "KPIs"),
        h("div", { class: "empty" }, h("h2", {}, "No company yet"), h("p", {}, "KPIs belong to a company: ", h("a", { href: "#/companies" }, "create one on the Companies page"), " first.")),
      );
      return;
    }
    chart = page(main, errors, company, companies, definitions);
    if (wanted && wanted !== company.companyId) notify(errors, `No company ${wanted} in your organisation; showing ${company.name}.`);
  })();

  return () => chart?.destroy();
};

/** Draws the page of one company; returns its chart, to be destroyed on leaving. */
function page(main: HTMLElement, errors: HTMLElement, company: Company, companies: Company[], definitions: MetricDefinition[]): PeriodChart {
  const byId = new Map(definitions.map((definition) => [definition.metricId, definition]));
  const picker = selectField(
    "Company",
    "company",
    companies.map((one): [string, string] => [one.companyId, one.name]),
  );
  picker.select.value = company.companyId;
  picker.select.addEventListener("change", () => (location.hash = `#/kpis?company=${encodeURIComponent(picker.select.value)}`));

  const chart = new PeriodChart();
  const history = historySection(company, byId, chart, errors);
  replace(
    main,
    h("div", { class: "page-head" }, h("h1", {}, `KPIs of ${company.name}`), h("div", { class: "company-picker" }, picker.wrapper)),
    errors,
    entrySection(company, definitions, () => history.refresh()),
    history.element,
    calculatorSection(definitions),
    importSection(company, () => history.refresh()),
  );
  void history.refresh();
  return chart;
}

function metricOptions(definitions: MetricDefinition[]): [string, string][] {
  return definitions.map((definition) => [definition.metricId, `${definition.displayName} (${UNITS[definition.unit].words})`]);
}

function entrySection(company: Company, definitions: MetricDefinition[], recorded: () => Promise<void>): HTMLElement {
  const errors = banner();
  const metric = selectField("Metric", "metric_id", metricOptions(definitions));
  const period = field("Period", "period", { autocomplete: "off", placeholder: "2026-Q1", spellcheck: "false" });
  const value = field("Value", "value", { autocomplete: "off", inputmode: "decimal" });
  const note = field("Note (optional)", "note", { autocomplete: "off", maxlength: 1000 });
  metric.wrapper.classList.add("wide");
  const metricHint = explain(metric.wrapper, h("p"));
  const periodHint = explain(period.wrapper, h("p"));
  const valueHint = explain(value.wrapper, h("p"));
  explain(note.wrapper, h("p", {}, "Up to 1,000 characters."));
  const submit = h("button", { type: "submit", class: "primary" }, "Check and record");
  const form = h(
    "form",
    { "aria-label": "Enter a KPI", novalidate: true },
    h("div", { class: "field-row" }, metric.wrapper, period.wrapper, value.wrapper, note.wrapper),
    errors,
    h("div", { class: "actions" }, submit),
  );

  function describeMetric(): void {
    const definition = definitions.find((candidate) => candidate.metricId === metric.select.value);
    if (!definition) return;
    metricHint.textContent = definition.description;
    const others = definition.allowedGranularities.filter((granularity) => granularity !== definition.periodGranularity);
    periodHint.textContent = `By ${GRANULARITIES[definition.periodGranularity]}${others.length ? `, or by ${others.map((granularity) => GRANULARITIES[granularity]).join(" or ")}` : ""}.`;
    valueHint.textContent = `In ${UNITS[definition.unit].words}. Accepted: ${range(definition.minValue, definition.maxValue)}; plausible: ${range(definition.plausibleMinValue, definition.plausibleMaxValue)}.`;
  }
  metric.select.addEventListener("change", describeMetric);
  describeMetric();

  // A value drawing only warnings is recorded when it is sent again unchanged.
  let acceptedWarnings = "";
  const reset = () => {
    acceptedWarnings = "";
    submit.textContent = "Check and record";
  };
  form.addEventListener("input", reset);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void check();
  });

  async function check(): Promise<void> {
    clearProblems(errors, form);
    const kpi = {
      companyId: company.companyId,
      metricId: metric.select.value,
      period: period.input.value.trim(),
      value: typedNumber(value.input.value),
      note: note.input.value.trim(),
      source: KpiSource.MANUAL,
    };
    const key = JSON.stringify(kpi);
    submit.disabled = true;
    try {
      const validation = await withRenewal(() => metrics.validateKpi({ kpi }));
      showProblems(validation, errors, form, (name, text) => {
        const input = form.querySelector<HTMLInputElement>(`.field[data-field="${name}"] input`);
        if (input) input.value = text;
        reset();
      });
      if (validation.status === ValidationStatus.INVALID) return;
      if (validation.status === ValidationStatus.WARNING && acceptedWarnings !== key) {
        acceptedWarnings = key;
        submit.textContent = "Record despite the warnings";
        return;
      }
      const answer = await withRenewal(() => metrics.recordKpis({ kpiValues: [kpi] }));
      const stored = answer.kpiValues[0];
      notify(
        errors,
        answer.unchangedCount > 0n
          ? `${kpi.metricId} for ${kpi.period} already had this value; nothing was stored.`
          : `Recorded ${kpi.metricId} for ${kpi.period}${stored ? ` (revision ${stored.revision})` : ""}.`,
      );
      reset();
      await recorded();
    } catch (error) {
      showError(error, errors, form);
    } finally {
      submit.disabled = false;
    }
  }

  return h("section", { class: "panel", "aria-labelledby": "entry-title" }, h("h2", { id: "entry-title" }, "Enter a KPI"), form);
}

function clearProblems(errors: HTMLElement, form: HTMLElement): void {
  clearErrors(errors, form);
  form.querySelectorAll(".field-warning").forEach((place) => replace(place));
}

/**
 * Shows ValidateKpi's answer next to the fields it names (`kpi.value` under
 * the value): errors as field errors, warnings and suggested corrections as
 * warnings, failed cross-metric checks under the value, the rest in `errors`.
 */
function showProblems(validation: ValidateKpiResponse, errors: HTMLElement, form: HTMLElement, apply: (field: string, value: string) => void): void {
  const place = (path: string) => form.querySelector<HTMLElement>(`.field[data-field="${CSS.escape(path.split(".").pop() ?? path)}"]`);
  const unplaced: HTMLElement[] = [];
  const warn = (path: string, ...content: (Node | string)[]) => {
    const target = place(path)?.querySelector(".field-warning");
    const item = h("p", {}, ...content);
    if (target) target.append(item);
    else unplaced.push(item);
  };
  for (const violation of validation.violations) {
    if (violation.severity === ViolationSeverity.ERROR) {
      const target = place(violation.field);
      const text = target?.querySelector(".field-error");
      if (target && text) {
        target.classList.add("invalid");
        text.textContent = text.textContent ? `${text.textContent} ${violation.description}` : violation.description;
        target.querySelector("input, select")?.setAttribute("aria-invalid", "true");
      } else unplaced.push(h("p", {}, h("code", {}, violation.field), ": ", violation.description));
    } else warn(violation.field, violation.description);
  }
  for (const correction of validation.suggestedCorrections) {
    const name = correction.field.split(".").pop() ?? correction.field;
    warn(
      correction.field,
      `${correction.description} `,
      h("button", { type: "button", class: "link", onclick: () => apply(name, correction.suggestedValue) }, `Use ${correction.suggestedValue}`),
    );
  }
  for (const check of validation.crossMetricChecks) {
    if (check.status === ValidationStatus.VALID) continue;
    const words = `${check.description}${check.expectedValue !== undefined ? ` Expected about ${number(check.expectedValue)}.` : ""}`;
    if (check.status === ValidationStatus.INVALID) {
      const target = place("kpi.value");
      target?.classList.add("invalid");
      const text = target?.querySelector(".field-error");
      if (text) text.textContent = `${text.textContent ?? ""} ${words}`.trim();
    } else warn("kpi.value", words);
  }
  if (unplaced.length > 0) {
    errors.className = `banner ${validation.status === ValidationStatus.INVALID ? "error" : "notice"}`;
    errors.hidden = false;
    replace(errors, ...unplaced);
  }
}

function historySection(
  company: Company,
  byId: Map<string, MetricDefinition>,
  chart: PeriodChart,
  errors: HTMLElement,
): { element: HTMLElement; refresh: () => Promise<void> } {
  const chosen = selectField("Metric to chart", "chart_metric", []);
  const tables = h("div", { class: "metric-histories" });
  const empty = h("div", { class: "empty", hidden: true }, h("p", {}, `No KPI recorded for ${company.name} yet: enter one above, or import a CSV file below.`));
  const charted = h("div", { class: "chart-area" }, chosen.wrapper, chart.element);
  const element = h(
    "section",
    { class: "panel", "aria-labelledby": "history-title" },
    h("h2", { id: "history-title" }, "History"),
    empty,
    charted,
    tables,
  );
  let groups = new Map<string, KpiValue[]>();

  function draw(): void {
    const definition = byId.get(chosen.select.value);
    const values = groups.get(chosen.select.value) ?? [];
    // ListKpis gives periods latest first; the chart reads left to right.
    const oldestFirst = [...values].reverse();
    const unit = definition?.unit ?? MetricUnit.UNSPECIFIED;
    chart.show(
      definition?.displayName ?? chosen.select.value,
      oldestFirst.map((kpi) => kpi.period),
      oldestFirst.map((kpi) => kpi.value),
      (value) => shown(value, unit),
    );
  }
  chosen.select.addEventListener("change", draw);

  async function refresh(): Promise<void> {
    let kpis: KpiValue[];
    try {
      kpis = await everyPage((token) =>
        metrics.listKpis({ companyId: company.companyId, pageSize: 1000, pageToken: token }).then((answer): [KpiValue[], string] => [answer.kpiValues, answer.nextPageToken]),
      );
    } catch (error) {
      showError(error, errors);
      return;
    }
    groups = new Map();
    for (const kpi of kpis) groups.set(kpi.metricId, [...(groups.get(kpi.metricId) ?? []), kpi]);
    empty.hidden = groups.size > 0;
    charted.hidden = groups.size === 0;
    const previous = chosen.select.value;
    replace(chosen.select, ...[...groups.keys()].map((id) => h("option", { value: id }, byId.get(id)?.displayName ?? id)));
    if (groups.has(previous)) chosen.select.value = previous;
    replace(tables, ...[...groups].map(([id, values]) => metricTable(byId.get(id), id, values, id === chosen.select.value)));
    if (groups.size > 0) draw();
  }

  return { element, refresh };
}

function metricTable(definition: MetricDefinition | undefined, metricId: string, values: KpiValue[], open: boolean): HTMLElement {
  const unit = definition?.unit ?? MetricUnit.UNSPECIFIED;
  const latest = values[0];
  return h(
    "details",
    { class: "metric-history", "data-metric-id": metricId, open },
    h(
      "summary",
      {},
      h("strong", {}, definition?.displayName ?? metricId),
      ` · ${count(values.length)} ${values.length === 1 ? "period" : "periods"}`,
      latest && ` · ${latest.period}: ${shown(latest.value, unit)}`,
    ),
    scroller(
      `${definition?.displayName ?? metricId} by period`,
      h(
        "table",
        { class: "data many-columns" },
        h("caption", { class: "visually-hidden" }, `${definition?.displayName ?? metricId} by period, latest first`),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col" }, "Period"),
            h("th", { scope: "col", class: "num" }, "Value"),
            h("th", { scope: "col", class: "num" }, "Revision"),
            h("th", { scope: "col" }, "Source"),
            h("th", { scope: "col" }, "Recorded (UTC)"),
            h("th", { scope: "col" }, "Note"),
          ),
        ),
        h(
          "tbody",
          {},
          ...values.map((kpi) =>
            h(
              "tr",
              { "data-metric-id": kpi.metricId, "data-period": kpi.period, "data-value": String(kpi.value) },
              h("th", { scope: "row" }, kpi.period),
              h("td", { class: "num" }, shown(kpi.value, unit)),
              h("td", { class: "num" }, kpi.revision),
              h("td", {}, SOURCES[kpi.source]),
              h("td", {}, dateTime(kpi.recordedAt ? timestampDate(kpi.recordedAt) : undefined)),
              h("td", {}, kpi.note),
            ),
          ),
        ),
      ),
    ),
  );
}

function calculatorSection(definitions: MetricDefinition[]): HTMLElement {
  const calculable = definitions.filter((definition) => definition.inputs.length > 0);
  const errors = banner();
  const metric = selectField("Metric", "metric_id", metricOptions(calculable));
  const formula = h("p", { class: "formula" });
  const inputs = h("div", { class: "field-row" });
  const submit = h("button", { type: "submit", class: "primary" }, "Calculate");
  const form = h(
    "form",
    { "aria-label": "Calculator", novalidate: true },
    h("div", { class: "field-row" }, metric.wrapper),
    formula,
    inputs,
    errors,
    h("div", { class: "actions" }, submit),
  );
  const result = h("div", { class: "calculation", "aria-live": "polite" });
  let fields: { name: string; input: HTMLInputElement; wrapper: HTMLElement }[] = [];

  function showInputs(): void {
    const definition = calculable.find((candidate) => candidate.metricId === metric.select.value);
    clearErrors(errors, form);
    replace(result);
    if (!definition) return;
    formula.textContent = `${definition.displayName} = ${definition.formula}`;
    fields = definition.inputs.map((input) => {
      // Named as CalculateKpi names a bad input: `inputs[start_arr]`.
      const made = field(`${input.name} (${UNITS[input.unit].words})`, `inputs[${input.name}]`, { autocomplete: "off", inputmode: "decimal" });
      explain(made.wrapper, h("p", {}, input.description));
      return { name: input.name, input: made.input, wrapper: made.wrapper };
    });
    replace(inputs, ...fields.map((one) => one.wrapper));
  }
  metric.select.addEventListener("change", showInputs);
  showInputs();

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearErrors(errors, form);
    // A blank input is left out, so that the API names it as required.
    const values = Object.fromEntries(fields.filter((one) => one.input.value.trim() !== "").map((one) => [one.name, typedNumber(one.input.value)]));
    submit.disabled = true;
    withRenewal(() => metrics.calculateKpi({ metricId: metric.select.value, inputs: values }))
      .then((answer) =>
        replace(
          result,
          h("dl", { class: "figures" }, rawFigure(`${answer.metricId} (${UNITS[answer.unit].words})`, "calculation.value", answer.value, answer.unit)),
          h("p", { class: "formula" }, answer.formula),
          scroller(
            "The quantities of the calculation",
            h(
              "table",
              { class: "data many-columns" },
              h("caption", { class: "visually-hidden" }, "The quantities of the calculation, in its order"),
              h(
                "thead",
                {},
                h("tr", {}, ...["Quantity", "Value", "Unit", "Kind", "What it is"].map((title, index) => h("th", { scope: "col", class: index === 1 ? "num" : undefined }, title))),
              ),
              h(
                "tbody",
                {},
                ...answer.components.map((component) =>
                  h(
                    "tr",
                    { "data-component": component.name, "data-value": String(component.value) },
                    h("th", { scope: "row" }, h("code", {}, component.name)),
                    h("td", { class: "num" }, shown(component.value, component.unit)),
                    h("td", {}, UNITS[component.unit].words),
                    h("td", {}, component.derived ? "derived" : "input"),
                    h("td", { class: "prose" }, component.description),
                  ),
                ),
              ),
            ),
          ),
        ),
      )
      .catch((error: unknown) => {
        replace(result);
        showError(error, errors, form);
      })
      .finally(() => (submit.disabled = false));
  });

  return h(
    "section",
    { class: "panel", "aria-labelledby": "calculator-title" },
    h("h2", { id: "calculator-title" }, "Calculators"),
    h("p", { class: "muted" }, "Calculate a metric from its formula's inputs. Nothing is stored."),
    form,
    result,
  );
}

function importSection(company: Company, stored: () => Promise<void>): HTMLElement {
  const errors = banner();
  const file = field("CSV file", "csv_content", { type: "file", accept: ".csv,text/csv" });
  const zone = h("div", { class: "dropzone" }, h("p", {}, "Drop a CSV file here, or choose one:"), file.wrapper);
  const outcome = h("div", { class: "import-outcome", "aria-live": "polite" });

  async function dryRun(chosen: File): Promise<void> {
    clearErrors(errors, zone);
    replace(outcome, h("p", { class: "muted" }, `Checking ${chosen.name}…`));
    try {
      const csvContent = await chosen.text();
      const answer = await withRenewal(() => metrics.importKpis({ csvContent, companyId: company.companyId, dryRun: true }));
      showDryRun(chosen.name, csvContent, answer);
    } catch (error) {
      replace(outcome);
      showError(error, errors, zone);
    }
  }

  function showDryRun(name: string, csvContent: string, answer: ImportKpisResponse): void {
    const store = h("button", { type: "button", class: "primary", "data-action": "store" }, `Store ${count(answer.acceptedRowCount)} valid ${answer.acceptedRowCount === 1n ? "row" : "rows"}`);
    store.addEventListener("click", () => {
      store.disabled = true;
      withRenewal(() => metrics.importKpis({ csvContent, companyId: company.companyId }))
        .then(async (done) => {
          replace(outcome);
          notify(
            errors,
            `Stored ${count(done.acceptedRowCount)} rows of ${name}: ${count(done.createdCount)} new, ${count(done.updatedCount)} updated, ${count(done.unchangedCount)} unchanged.`,
          );
          await stored();
        })
        .catch((error: unknown) => {
          store.disabled = false;
          showError(error, errors, zone);
        });
    });
    replace(
      outcome,
      h("h3", {}, `Checked ${name}; nothing stored yet`),
      h(
        "dl",
        { class: "figures" },
        figure("Rows read", "import.total_row_count", count(answer.totalRowCount)),
        figure("Valid rows", "import.accepted_row_count", count(answer.acceptedRowCount)),
        figure("Rows with errors", "import.rejected_row_count", count(answer.rejectedRowCount)),
      ),
      issueTable("Rows with errors, which will not be stored", "rejected", answer.rejectedRows),
      issueTable("Warnings on valid rows", "warning", answer.warnings),
      answer.acceptedRowCount > 0n ? h("div", { class: "actions" }, store) : h("p", {}, "No row is valid: correct the file and choose it again."),
    );
  }

  file.input.addEventListener("change", () => {
    const chosen = file.input.files?.[0];
    if (chosen) void dryRun(chosen);
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const dropped = event.dataTransfer?.files[0];
    if (dropped) void dryRun(dropped);
  });

  return h(
    "section",
    { class: "panel", "aria-labelledby": "import-title" },
    h("h2", { id: "import-title" }, "Import a CSV file"),
    h("p", {}, `Every row is checked first and nothing is stored until you choose to store the valid rows. Rows without a company_id column belong to ${company.name}.`),
    h(
      "details",
      { class: "csv-format" },
      h("summary", {}, "The file's format"),
      h("p", {}, "UTF-8 text, comma-separated, quoted as RFC 4180 (a note holding a comma goes in double quotes); at most 4 MiB and 50,000 rows. The first line names the columns, in any order and any case:"),
      h(
        "ul",
        {},
        h("li", {}, h("code", {}, "metric_id"), " (required): the metric, for example ", h("code", {}, "arr"), "; the ids are those of the metrics above."),
        h("li", {}, h("code", {}, "period"), " (required): ", h("code", {}, "YYYY"), ", ", h("code", {}, "YYYY-Qn"), " or ", h("code", {}, "YYYY-MM"), ", at a granularity the metric allows."),
        h("li", {}, h("code", {}, "value"), " (required): a plain number with ", h("code", {}, "."), " as the decimal point, without thousands separators, currency or %; percentages on the 0–100 scale."),
        h("li", {}, h("code", {}, "note"), " (optional): free text, at most 1,000 characters."),
        h("li", {}, h("code", {}, "company_id"), " (optional): when present, every row must name this company (", h("code", {}, company.companyId), ")."),
      ),
      h("p", {}, "Line 1 is the header; errors name the line of their row. A row repeating the metric and period of an earlier row is refused. Blank lines are skipped."),
      h("pre", {}, "metric_id,period,value,note\narr,2026-Q1,1200000,\nndr,2026-Q1,107.5,\"after the price change, finally\"\nmrr,2026-03,100000,"),
    ),
    zone,
    errors,
    outcome,
  );
}

function issueTable(caption: string, kind: string, issues: ImportRowIssue[]): HTMLElement | undefined {
  if (issues.length === 0) return undefined;
  return scroller(
    caption,
    h(
      "table",
      { class: "data", "data-issues": kind },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, "Line"), h("th", { scope: "col" }, "Column"), h("th", { scope: "col" }, "Problem"))),
      h(
        "tbody",
        {},
        ...issues.map((issue) =>
          h(
            "tr",
            { "data-line": issue.lineNumber },
            h("th", { scope: "row", class: "num" }, issue.lineNumber),
            h("td", {}, issue.column ? h("code", {}, issue.column) : "the whole row"),
            h("td", {}, issue.reason),
          ),
        ),
      ),
    ),
  );
}

/**
 * One metric over its periods: uPlot with the period's position as x and the
 * period as the API wrote it as the label, since months, quarters and years
 * are not points in time. The numbers are in the metric tables below.
 */
class PeriodChart {
  readonly element: HTMLElement;
  private plot: uPlot | undefined;
  private readonly caption: HTMLElement;
  private readonly canvas: HTMLElement;
  private readonly observer: ResizeObserver;

  constructor() {
    this.caption = h("figcaption");
    this.canvas = h("div", { class: "chart-canvas", "aria-hidden": "true" });
    this.element = h("figure", { class: "chart" }, this.caption, this.canvas);
    this.observer = new ResizeObserver(() => this.plot?.setSize({ width: this.width(), height: 240 }));
    this.observer.observe(this.canvas);
  }

  private width(): number {
    return Math.max(260, this.canvas.clientWidth);
  }

  show(label: string, periods: string[], values: number[], format: (value: number) => string): void {
    this.caption.textContent = `${label} by period`;
    this.plot?.destroy();
    this.plot = new uPlot(
      {
        width: this.width(),
        height: 240,
        scales: { x: { time: false } },
        series: [
          { label: "Period", value: (_, index) => periods[index] ?? "" },
          { label, stroke: "#2358c4", fill: "rgba(35, 88, 196, 0.12)", width: 2, points: { show: true, size: 7 }, value: (_, v) => (v == null ? "—" : format(v)) },
        ],
        axes: [
          { stroke: "#3d4451", incrs: [1, 2, 3, 4, 6, 8, 12, 24], space: 56, values: (_, ticks) => ticks.map((tick) => periods[tick] ?? "") },
          { stroke: "#3d4451", size: 64, values: (_, ticks) => ticks.map((tick) => compact.format(tick)) },
        ],
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
      },
      [periods.map((_, index) => index), values],
      this.canvas,
    );
    // Half a period of room on each side, so that one period is a point, not an edge.
    this.plot.setScale("x", { min: -0.5, max: periods.length - 0.5 });
  }

  destroy(): void {
    this.observer.disconnect();
    this.plot?.destroy();
  }
}
