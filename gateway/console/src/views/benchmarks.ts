// Benchmarks: where a company stands among anonymised peers. One slice
// (metric × revenue band × sector × period) drawn as its percentile band with
// the company's value on it (GetBenchmark, RankCompany), or why it is
// withheld; the slice over time with its trend (GetBenchmarkTimeSeries); the
// company's ranking across every metric (RankCompany) and a what-if
// (CalculateRanking). Every figure is the API's, only formatted;
// docs/benchmarks.md says what each one means.
import uPlot from "uplot";
import { benchmark, metrics, withRenewal } from "../api.js";
import {
  Quartile,
  RankingStatus,
  SuppressionStatus,
  TimeGranularity,
  TrendDirection,
  TrendStatistic,
  type BenchmarkStatistics,
  type GetBenchmarkTimeSeriesResponse,
  type MetricRanking,
  type OverallScore,
  type Trend,
} from "../gen/metrix/benchmark/v1/benchmark_pb.js";
import { MetricUnit, type Company, type MetricDefinition } from "../gen/metrix/metrics/v1/metrics_pb.js";
import type { RevenueBand, Sector } from "../gen/metrix/common/v1/common_pb.js";
import { banner, clearErrors, count, field, figure, h, number, replace, selectField, showError } from "../ui.js";
import type { View } from "../view.js";

type Format = (value: number) => string;

interface Reference {
  definitions: MetricDefinition[];
  bands: RevenueBand[];
  sectors: Sector[];
  companies: Company[];
}

const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", minimumFractionDigits: 0, maximumFractionDigits: 2 });

/** A metric's values in its unit, two decimals at most (the tests round the same way). */
function formatFor(unit: MetricUnit | undefined): Format {
  switch (unit) {
    case MetricUnit.USD:
      return (value) => money.format(value);
    case MetricUnit.PERCENT:
      return (value) => `${number(value)} %`;
    case MetricUnit.RATIO:
      return (value) => `${number(value)}×`;
    case MetricUnit.MONTHS:
      return (value) => `${number(value)} months`;
    default:
      return number;
  }
}

const UNIT_WORDS: Partial<Record<MetricUnit, string>> = {
  [MetricUnit.USD]: "USD",
  [MetricUnit.PERCENT]: "%",
  [MetricUnit.RATIO]: "×",
  [MetricUnit.MONTHS]: "months",
};

const QUARTILES: Record<Quartile, string> = {
  [Quartile.UNSPECIFIED]: "—",
  [Quartile.TOP]: "Top quartile",
  [Quartile.UPPER_MIDDLE]: "Upper middle",
  [Quartile.LOWER_MIDDLE]: "Lower middle",
  [Quartile.BOTTOM]: "Bottom quartile",
};

export const benchmarksView: View = (main) => {
  const errors = banner();
  const chart = new PeriodChart();
  let open = true;
  replace(main, h("h1", {}, "Benchmarks"), errors, h("p", { class: "muted", role: "status" }, "Loading the metrics, bands and sectors…"));
  reference()
    .then((data) => open && benchmarksPage(main, data, chart))
    .catch((error: unknown) => showError(error, errors));
  return () => {
    open = false;
    chart.destroy();
  };
};

/** The metrics, bands, sectors and the organisation's companies: small lists, one page each. */
async function reference(): Promise<Reference> {
  const [definitions, bands, sectors, companies] = await Promise.all([
    withRenewal(() => metrics.listMetricDefinitions({ pageSize: 1000 })),
    withRenewal(() => benchmark.listRevenueBands({ pageSize: 200 })),
    withRenewal(() => benchmark.listSectors({ pageSize: 200 })),
    withRenewal(() => metrics.listCompanies({ pageSize: 1000 })),
  ]);
  return {
    definitions: definitions.metricDefinitions,
    bands: bands.revenueBands,
    sectors: sectors.sectors,
    companies: companies.companies,
  };
}

function benchmarksPage(main: HTMLElement, data: Reference, chart: PeriodChart): void {
  const definition = (id: string) => data.definitions.find((candidate) => candidate.metricId === id);
  const metricName = (id: string) => definition(id)?.displayName ?? id;
  const formatOf = (id: string) => formatFor(definition(id)?.unit);
  const bandName = (id: string) => data.bands.find((candidate) => candidate.id === id)?.displayName ?? id;
  const sectorName = (id: string) => (id === "" ? "every sector" : (data.sectors.find((candidate) => candidate.id === id)?.displayName ?? id));
  const bandOptions = data.bands.map((band): [string, string] => [band.id, band.displayName]);
  const sectorOptions: [string, string][] = [["", "All sectors"], ...data.sectors.map((sector): [string, string] => [sector.id, sector.displayName])];

  // The slice picker.
  const company = selectField("Company", "company_id", data.companies.map((candidate) => [candidate.companyId, candidate.name]));
  const metric = selectField("Metric", "metric_id", data.definitions.map((candidate) => [candidate.metricId, candidate.displayName]));
  const band = selectField("Revenue band", "revenue_band_id", bandOptions);
  const sector = selectField("Sector", "sector_id", sectorOptions);
  const period = field("Period (YYYY-Qn or YYYY-MM)", "period", { placeholder: "latest quarter", list: "bench-periods", autocomplete: "off" });
  const periods = h("datalist", { id: "bench-periods" });
  const form = h(
    "form",
    { class: "controls bench-picker", "aria-label": "Benchmark slice", "data-form": "slice" },
    data.companies.length > 0 && company.wrapper,
    metric.wrapper,
    band.wrapper,
    sector.wrapper,
    period.wrapper,
    periods,
    h("button", { type: "submit", class: "primary" }, "Show"),
  );

  const sliceErrors = banner();
  const sliceCaption = h("p", { class: "muted" });
  const sliceBody = h("div", { class: "slice-body" });
  const slice = h(
    "section",
    { class: "panel bench-slice", "aria-labelledby": "bench-slice-title", "data-state": "loading", tabindex: -1 },
    h("h2", { id: "bench-slice-title" }, "Peer distribution"),
    sliceCaption,
    sliceErrors,
    sliceBody,
  );

  const seriesErrors = banner();
  const trendText = h("p", { "data-trend": "" });
  const series = h(
    "section",
    { class: "panel bench-series", "aria-labelledby": "bench-series-title", "data-state": "loading" },
    h("h2", { id: "bench-series-title" }, "Over time"),
    seriesErrors,
    chart.element,
    trendText,
  );

  const rankingErrors = banner();
  const rankingBody = h("div");
  const ranking = h(
    "section",
    { class: "panel", "aria-labelledby": "bench-ranking-title", "data-ranking": "", "data-state": "loading" },
    h("h2", { id: "bench-ranking-title" }, "Ranking across every metric"),
    rankingErrors,
    rankingBody,
  );

  // The what-if: hypothetical values for some metrics, ranked against a band and sector.
  const whatIfBand = selectField("Revenue band", "revenue_band_id", bandOptions);
  const whatIfSector = selectField("Sector", "sector_id", sectorOptions);
  const values = data.definitions.map((candidate) => {
    const unit = UNIT_WORDS[candidate.unit];
    return {
      metricId: candidate.metricId,
      ...field(unit ? `${candidate.displayName} (${unit})` : candidate.displayName, `values[${candidate.metricId}]`, { inputmode: "decimal", autocomplete: "off" }),
    };
  });
  const whatIfForm = h(
    "form",
    { "aria-label": "What-if values", "data-form": "whatif" },
    h("div", { class: "controls-row" }, whatIfBand.wrapper, whatIfSector.wrapper),
    h("div", { class: "whatif-values" }, ...values.map((value) => value.wrapper)),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Rank these values")),
  );
  const whatIfErrors = banner();
  const whatIfResult = h("div", { "data-whatif": "" });
  const whatIf = h(
    "section",
    { class: "panel", "aria-labelledby": "bench-whatif-title" },
    h("h2", { id: "bench-whatif-title" }, "What if"),
    h("p", { class: "muted" }, "Enter values for the metrics you want to try (leave the others empty) to see where they would rank among the peers of the band and sector you choose, in the period chosen above. Nothing is stored."),
    whatIfForm,
    whatIfErrors,
    whatIfResult,
  );

  replace(
    main,
    h("h1", {}, "Benchmarks"),
    h("p", { class: "muted" }, "Anonymised peers: other organisations' companies, each value distorted by a fixed 10–25 %, and a slice only when enough organisations contribute."),
    form,
    slice,
    series,
    ranking,
    whatIf,
  );

  const chosenCompany = () => data.companies.find((candidate) => candidate.companyId === company.select.value);
  const defaultMetric = data.definitions[0]?.metricId;
  if (defaultMetric) metric.select.value = defaultMetric;

  let sliceTurn = 0;
  async function showSlice(): Promise<void> {
    const turn = ++sliceTurn;
    const request = { metricId: metric.select.value, revenueBandId: band.select.value, sectorId: sector.select.value, period: period.input.value.trim() };
    const format = formatOf(request.metricId);
    clearErrors(sliceErrors, form);
    slice.dataset.state = "loading";
    void showSeries(request, turn);
    try {
      const answer = await withRenewal(() => benchmark.getBenchmark(request));
      const resolved = answer.slice ?? request;
      const result = answer.results[0];
      const statistics = result?.statistics;
      const owner = chosenCompany();
      // The company's own value and rank among exactly these peers; not asked when the slice is withheld.
      const rank =
        owner && statistics && !withheld(statistics)
          ? await withRenewal(() =>
              benchmark.rankCompany({
                companyId: owner.companyId,
                metricIds: [request.metricId],
                revenueBandId: resolved.revenueBandId,
                sectorId: resolved.sectorId,
                allSectors: resolved.sectorId === "",
                period: resolved.period,
              }),
            )
              .then((ranked) => ranked.rankings[0])
              .catch((error: unknown) => void showError(error, sliceErrors, form))
          : undefined;
      if (turn !== sliceTurn) return;
      sliceCaption.textContent = `${metricName(resolved.metricId)} · ${bandName(resolved.revenueBandId)} · ${sectorName(resolved.sectorId)} · ${resolved.period} · ${result?.source?.displayName ?? ""}`;
      slice.dataset.slice = [resolved.metricId, resolved.revenueBandId, resolved.sectorId, resolved.period].join("|");
      slice.dataset.suppression = SuppressionStatus[statistics?.suppression?.status ?? SuppressionStatus.UNSPECIFIED];
      if (!statistics) replace(sliceBody);
      else if (withheld(statistics))
        replace(
          sliceBody,
          explanation(statistics, resolved.sectorId !== "", () => {
            sector.select.value = "";
            void showSlice();
          }),
        );
      else replace(sliceBody, distribution(statistics, format, owner, rank, metricName(resolved.metricId), resolved.period));
      slice.dataset.state = "ready";
    } catch (error) {
      if (turn !== sliceTurn) return;
      replace(sliceBody);
      showError(error, sliceErrors, form);
      slice.dataset.state = "error";
    }
  }

  async function showSeries(request: { metricId: string; revenueBandId: string; sectorId: string; period: string }, turn: number): Promise<void> {
    clearErrors(seriesErrors);
    series.dataset.state = "loading";
    // Months when a month was asked for, quarters otherwise.
    const granularity = /^\d{4}-\d{2}$/.test(request.period) ? TimeGranularity.MONTH : TimeGranularity.QUARTER;
    try {
      const answer = await withRenewal(() =>
        benchmark.getBenchmarkTimeSeries({ metricId: request.metricId, revenueBandId: request.revenueBandId, sectorId: request.sectorId, granularity }),
      );
      if (turn !== sliceTurn) return;
      const format = formatOf(request.metricId);
      chart.update(answer, `${metricName(request.metricId)}, ${bandName(request.revenueBandId)}, ${sectorName(request.sectorId)}`, format);
      series.dataset.slice = [request.metricId, request.revenueBandId, request.sectorId].join("|");
      trendText.dataset.trend = TrendDirection[answer.trend?.direction ?? TrendDirection.UNSPECIFIED];
      const charted = answer.points.some((point) => point.statistics?.p50 !== undefined);
      trendText.textContent = charted
        ? trendWords(answer.trend, format, granularity)
        : "No period of this slice has figures to chart: each one is withheld or has no data. Try every sector or another revenue band.";
      // The periods the series knows are the ones worth offering in the picker.
      replace(periods, ...answer.points.map((point) => h("option", { value: point.period })).reverse());
      series.dataset.state = "ready";
    } catch (error) {
      if (turn !== sliceTurn) return;
      showError(error, seriesErrors);
      series.dataset.state = "error";
    }
  }

  let rankedFor = "";
  /** The company's ranking; the first one also picks the peers it was ranked against for the slice and the what-if. */
  async function showRanking(first = false): Promise<void> {
    const owner = chosenCompany();
    if (!owner) {
      replace(
        rankingBody,
        h("div", { class: "empty" }, h("p", {}, "Your organisation has no company yet. Create one and record its KPIs to see how it ranks against its peers; the peer figures above need no company.")),
      );
      ranking.dataset.state = "ready";
      return;
    }
    const request = { companyId: owner.companyId, period: period.input.value.trim() };
    rankedFor = `${request.companyId}|${request.period}`;
    clearErrors(rankingErrors);
    ranking.dataset.state = "loading";
    try {
      const answer = await withRenewal(() => benchmark.rankCompany(request));
      const peers = `${bandName(answer.revenueBandId)}, ${sectorName(answer.sectorId)}, ${answer.period}`;
      const widened = answer.sectorId === "" && owner.sectorId !== "";
      ranking.dataset.period = answer.period;
      replace(
        rankingBody,
        h(
          "p",
          {},
          `${owner.name} against its peers: ${peers}.`,
          widened && ` ${sectorName(owner.sectorId)} alone has too few peers, so every sector of the band counts.`,
        ),
        overall(answer.overall, "overall"),
        findings(answer.rankings, metricName, formatOf),
        rankingTable("Ranking by metric", answer.rankings, metricName, formatOf, (metricId) => {
          metric.select.value = metricId;
          band.select.value = answer.revenueBandId;
          sector.select.value = answer.sectorId;
          void showSlice();
          slice.focus();
        }),
      );
      for (const value of values) {
        const current = answer.rankings.find((candidate) => candidate.metricId === value.metricId)?.value;
        value.input.placeholder = current === undefined ? "" : `now ${formatOf(value.metricId)(current)}`;
      }
      ranking.dataset.state = "ready";
      if (first) pickPeers(answer.revenueBandId, answer.sectorId);
    } catch (error) {
      showError(error, rankingErrors, form);
      ranking.dataset.state = "error";
    }
  }

  function pickPeers(bandId: string, sectorId: string): void {
    for (const select of [band.select, whatIfBand.select]) select.value = bandId;
    for (const select of [sector.select, whatIfSector.select]) select.value = sectorId;
  }

  async function showWhatIf(): Promise<void> {
    clearErrors(whatIfErrors, whatIfForm);
    const entered = values.filter((value) => value.input.value.trim() !== "");
    const request = {
      // A value that is not a number is sent as NaN, so that the API names the field and says why.
      values: Object.fromEntries(entered.map((value) => [value.metricId, Number(value.input.value.trim())])),
      revenueBandId: whatIfBand.select.value,
      sectorId: whatIfSector.select.value,
      period: period.input.value.trim(),
      companyId: chosenCompany()?.companyId ?? "",
    };
    try {
      const answer = await withRenewal(() => benchmark.calculateRanking(request));
      replace(
        whatIfResult,
        h("p", {}, `Where these values would rank among ${bandName(answer.revenueBandId)}, ${sectorName(answer.sectorId)}, ${answer.period}:`),
        overall(answer.overall, "whatif.overall"),
        rankingTable("What-if ranking by metric", answer.rankings, metricName, formatOf),
      );
    } catch (error) {
      showError(error, whatIfErrors, whatIfForm);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void showSlice();
    if (rankedFor !== `${company.select.value}|${period.input.value.trim()}`) void showRanking();
  });
  whatIfForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void showWhatIf();
  });

  // The company's own peers are the natural first slice: its band until RankCompany says which sector it was compared with.
  const owner = chosenCompany();
  if (owner?.revenueBandId) pickPeers(owner.revenueBandId, "");
  void showRanking(true).finally(() => void showSlice());
}

/** Whether a slice's figures are withheld (below k, or no data). */
function withheld(statistics: BenchmarkStatistics): boolean {
  const status = statistics.suppression?.status;
  return status === SuppressionStatus.SUPPRESSED_BELOW_K || status === SuppressionStatus.SUPPRESSED_NO_DATA;
}

/** Why a slice shows nothing, in the API's words and the rule behind them, and what to try instead. */
function explanation(statistics: BenchmarkStatistics, sectorChosen: boolean, widen: () => void): HTMLElement {
  const suppression = statistics.suppression;
  const belowK = suppression?.status === SuppressionStatus.SUPPRESSED_BELOW_K;
  return h(
    "div",
    { class: "withheld", "data-explanation": "" },
    h("h3", {}, belowK ? "Too few peers to show this slice" : "No peer data for this slice"),
    h("p", { "data-reason": "" }, suppression?.reason ?? ""),
    belowK
      ? h(
          "p",
          {},
          "To keep every company anonymous, a slice is shown only when at least ",
          h("strong", { "data-figure": "min_sample_size" }, count(suppression?.minSampleSize ?? 0)),
          " organisations other than yours have a value in it. How many have one is withheld too, so that no company's value can be read back from it.",
        )
      : h("p", {}, "No company outside your organisation has a value for this metric, band, sector and period."),
    h("p", {}, "Try every sector of the band, a neighbouring revenue band or another period (the chart below shows which periods have figures)."),
    sectorChosen && h("button", { type: "button", onclick: widen }, "Compare with every sector of the band"),
  );
}

/** A slice's figures: the band with the company on it, its legend, and every number the API gave. */
function distribution(
  statistics: BenchmarkStatistics,
  format: Format,
  owner: Company | undefined,
  rank: MetricRanking | undefined,
  metricLabel: string,
  period: string,
): HTMLElement {
  const placed = rank?.status === RankingStatus.RANKED && rank.value !== undefined ? rank.value : undefined;
  const shown = (value: number | undefined) => (value === undefined ? "withheld" : format(value));
  const suppression = statistics.suppression;
  return h(
    "div",
    {},
    band(statistics, format, owner && placed !== undefined ? { name: owner.name, value: placed } : undefined),
    h(
      "ul",
      { class: "legend", "aria-hidden": "true" },
      statistics.p10 !== undefined && h("li", {}, h("span", { class: "swatch outer" }), "P10–P90"),
      h("li", {}, h("span", { class: "swatch inner" }), "P25–P75"),
      h("li", {}, h("span", { class: "swatch median" }), "Median"),
      h("li", {}, h("span", { class: "swatch mean" }), "Mean"),
      placed !== undefined && owner && h("li", {}, h("span", { class: "swatch you" }), owner.name),
    ),
    owner && rank && companyLine(owner, rank, format, metricLabel, period),
    suppression?.status === SuppressionStatus.TAILS_OMITTED &&
      h("p", { class: "muted", "data-reason": "" }, `${suppression.reason}: they need at least ${count(suppression.tailMinSampleSize)} values.`),
    h(
      "dl",
      { class: "figures compact" },
      figure("Peers (n)", "n", count(statistics.n)),
      figure("P10", "p10", shown(statistics.p10)),
      figure("P25", "p25", shown(statistics.p25)),
      figure("Median", "p50", shown(statistics.p50)),
      figure("P75", "p75", shown(statistics.p75)),
      figure("P90", "p90", shown(statistics.p90)),
      figure("Mean", "mean", shown(statistics.mean)),
      figure("Standard deviation", "std_dev", shown(statistics.stdDev)),
      interval("Mean, 95 % interval", "mean_ci", statistics.meanConfidenceInterval, format),
      interval("Median, 95 % interval", "median_ci", statistics.medianConfidenceInterval, format),
      figure("Outliers left out", "outlier_count", count(statistics.outlierCount)),
    ),
  );
}

function interval(label: string, key: string, bounds: { lowerBound?: number; upperBound?: number } | undefined, format: Format): HTMLElement {
  const lower = bounds?.lowerBound;
  const upper = bounds?.upperBound;
  return h(
    "div",
    { class: "figure interval" },
    h("dt", {}, label),
    lower === undefined || upper === undefined
      ? h("dd", { "data-figure": key }, "—")
      : h("dd", { "data-figure": key }, h("span", { "data-figure": `${key}.lower` }, format(lower)), " to ", h("span", { "data-figure": `${key}.upper` }, format(upper))),
  );
}

/** The company's value and rank among the slice's peers, or why it is not placed. */
function companyLine(owner: Company, rank: MetricRanking, format: Format, metricLabel: string, period: string): HTMLElement | undefined {
  if (rank.status === RankingStatus.NO_COMPANY_VALUE) {
    return h("p", { "data-company": "no-value" }, `${owner.name} has no ${metricLabel} value for ${period}: record it on the KPIs page to see it placed among its peers.`);
  }
  if (rank.status !== RankingStatus.RANKED || rank.value === undefined) return undefined;
  return h(
    "p",
    { "data-company": "ranked" },
    h("strong", {}, owner.name),
    ": ",
    h("span", { "data-figure": "company.value" }, format(rank.value)),
    rank.percentileRank !== undefined && ", percentile rank ",
    rank.percentileRank !== undefined && h("span", { "data-figure": "company.percentile_rank" }, number(rank.percentileRank)),
    ` (${QUARTILES[rank.quartile].toLowerCase()}) among these peers.`,
  );
}

const SVG = "http://www.w3.org/2000/svg";

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attributes: Record<string, string | number>, ...children: (Node | string)[]): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  element.append(...children);
  return element;
}

/**
 * The P10–P90 and P25–P75 ranges, the median, the mean and the company's
 * value on one axis. x is a share of the width, so the drawing fits any
 * screen and its text keeps its size.
 */
function band(statistics: BenchmarkStatistics, format: Format, company: { name: string; value: number } | undefined): SVGSVGElement {
  const { p10, p25, p50, p75, p90, mean } = statistics;
  const ends = [p10, p25, p50, p75, p90, mean, company?.value].filter((value): value is number => value !== undefined);
  const min = Math.min(...ends);
  const max = Math.max(...ends);
  const share = (value: number) => (max === min ? 0.5 : (value - min) / (max - min));
  const at = (value: number) => `${(4 + share(value) * 92).toFixed(2)}%`;
  const across = (from: number, to: number) => `${((share(to) - share(from)) * 92).toFixed(2)}%`;
  const marks: SVGElement[] = [];
  if (p10 !== undefined && p90 !== undefined) marks.push(svg("rect", { class: "outer", x: at(p10), width: across(p10, p90), y: 34, height: 22, "data-mark": "p10-p90" }));
  if (p25 !== undefined && p75 !== undefined) marks.push(svg("rect", { class: "inner", x: at(p25), width: across(p25, p75), y: 30, height: 30, "data-mark": "p25-p75" }));
  if (p50 !== undefined) marks.push(svg("line", { class: "median", x1: at(p50), x2: at(p50), y1: 26, y2: 64, "data-mark": "p50" }));
  if (mean !== undefined) marks.push(svg("circle", { class: "mean", cx: at(mean), cy: 45, r: 5, "data-mark": "mean" }));
  if (company) {
    const side = share(company.value);
    marks.push(
      svg("line", { class: "you", x1: at(company.value), x2: at(company.value), y1: 18, y2: 72, "data-mark": "company" }),
      svg("text", { x: at(company.value), y: 13, "text-anchor": side < 0.25 ? "start" : side > 0.75 ? "end" : "middle" }, `${company.name} ${format(company.value)}`),
    );
  }
  const described = [
    p10 !== undefined && `P10 ${format(p10)}`,
    p25 !== undefined && `P25 ${format(p25)}`,
    p50 !== undefined && `median ${format(p50)}`,
    p75 !== undefined && `P75 ${format(p75)}`,
    p90 !== undefined && `P90 ${format(p90)}`,
    mean !== undefined && `mean ${format(mean)}`,
    company && `${company.name} ${format(company.value)}`,
  ].filter(Boolean);
  return svg("svg", { class: "band", width: "100%", height: 80, role: "img", "aria-label": `Peer distribution: ${described.join(", ")}` }, ...marks);
}

function overall(score: OverallScore | undefined, key: string): HTMLElement {
  return h(
    "dl",
    { class: "figures compact" },
    figure("Overall score", `${key}.score`, score?.score === undefined ? "—" : number(score.score)),
    figure("Overall quartile", `${key}.quartile`, QUARTILES[score?.quartile ?? Quartile.UNSPECIFIED]),
    figure("Metrics ranked", `${key}.ranked`, `${count(score?.rankedMetricCount ?? 0)} of ${count(score?.metricCount ?? 0)}`),
  );
}

/** Strengths (top quartile, best first) and weaknesses (bottom quartile, worst first), as reports read them. */
function findings(rankings: MetricRanking[], name: (id: string) => string, formatOf: (id: string) => Format): HTMLElement {
  const byScore = (a: MetricRanking, b: MetricRanking) => (b.score ?? 0) - (a.score ?? 0);
  const strengths = rankings.filter((ranking) => ranking.quartile === Quartile.TOP).sort(byScore);
  const weaknesses = rankings.filter((ranking) => ranking.quartile === Quartile.BOTTOM).sort((a, b) => byScore(b, a));
  const list = (key: string, title: string, items: MetricRanking[], none: string) =>
    h(
      "div",
      { [`data-${key}`]: "" },
      h("h3", {}, title),
      items.length === 0
        ? h("p", { class: "muted" }, none)
        : h(
            "ul",
            {},
            ...items.map((ranking) =>
              h(
                "li",
                { "data-metric": ranking.metricId },
                h("strong", {}, name(ranking.metricId)),
                ranking.value !== undefined && `: ${formatOf(ranking.metricId)(ranking.value)}`,
                ranking.percentileRank !== undefined && `, percentile rank ${number(ranking.percentileRank)}`,
              ),
            ),
          ),
    );
  return h(
    "div",
    { class: "findings" },
    list("strengths", "Strengths", strengths, "No metric in the top quartile of these peers yet."),
    list("weaknesses", "Weaknesses", weaknesses, "No metric in the bottom quartile: nothing stands out as weak against these peers."),
  );
}

const NOT_RANKED: Partial<Record<RankingStatus, string>> = {
  [RankingStatus.NO_COMPANY_VALUE]: "No value for this period",
  [RankingStatus.PEERS_SUPPRESSED]: "Too few peers (withheld)",
};

/** One row per metric: the value, its rank and score among the peers, and how many peers. */
function rankingTable(
  caption: string,
  rankings: MetricRanking[],
  name: (id: string) => string,
  formatOf: (id: string) => Format,
  show?: (metricId: string) => void,
): HTMLElement {
  const cell = (column: string, text: string) => h("td", { class: "num", "data-col": column }, text);
  const optional = (value: number | undefined, format: Format) => (value === undefined ? "—" : format(value));
  // A region with a name and a tab stop, so that a keyboard can scroll it on a narrow screen.
  return h(
    "div",
    { class: "table-scroll", role: "region", tabindex: 0, "aria-label": caption },
    h(
      "table",
      { class: "data" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Metric"),
          ...["Value", "Percentile rank", "Score"].map((title) => h("th", { scope: "col", class: "num" }, title)),
          h("th", { scope: "col" }, "Quartile"),
          h("th", { scope: "col", class: "num" }, "Peers"),
        ),
      ),
      h(
        "tbody",
        {},
        ...rankings.map((ranking) => {
          const peers = ranking.peerStatistics;
          return h(
            "tr",
            { "data-metric": ranking.metricId, "data-status": RankingStatus[ranking.status] },
            h(
              "th",
              { scope: "row" },
              show ? h("button", { type: "button", class: "link", onclick: () => show(ranking.metricId), "aria-label": `Show the peer distribution of ${name(ranking.metricId)}` }, name(ranking.metricId)) : name(ranking.metricId),
            ),
            cell("value", optional(ranking.value, formatOf(ranking.metricId))),
            cell("percentile_rank", optional(ranking.percentileRank, number)),
            cell("score", optional(ranking.score, number)),
            h("td", { "data-col": "quartile" }, ranking.status === RankingStatus.RANKED ? QUARTILES[ranking.quartile] : (NOT_RANKED[ranking.status] ?? "—")),
            cell("n", peers && peers.n > 0 ? count(peers.n) : "withheld"),
          );
        }),
      ),
    ),
  );
}

/** The trend in words: the API's direction, slope, p-value and r². */
function trendWords(trend: Trend | undefined, format: Format, granularity: TimeGranularity): string {
  if (!trend || trend.direction === TrendDirection.INSUFFICIENT_DATA || trend.slope === undefined) {
    return "Too few periods with figures to fit a trend.";
  }
  const statistic = trend.statistic === TrendStatistic.MEAN ? "Mean" : "Median";
  const direction =
    trend.direction === TrendDirection.INCREASING ? "rising" : trend.direction === TrendDirection.DECREASING ? "falling" : "flat (no significant change)";
  const unit = granularity === TimeGranularity.MONTH ? "month" : "quarter";
  const details = [
    trend.slopePValue !== undefined && (trend.slopePValue < 0.001 ? "p < 0.001" : `p = ${number(trend.slopePValue)}`),
    trend.rSquared !== undefined && `r² = ${number(trend.rSquared)}`,
    `${count(trend.pointCount)} periods`,
  ].filter(Boolean);
  return `Trend of the ${statistic.toLowerCase()}: ${direction}, ${trend.slope > 0 ? "+" : ""}${format(trend.slope)} per ${unit} (${details.join(", ")}).`;
}


/**
 * A slice over time: uPlot over period indices (a withheld period is a gap,
 * never 0), the quartiles around the median and the API's trend line, with
 * the same numbers as a hidden table.
 */
class PeriodChart {
  readonly element: HTMLElement;
  private plot: uPlot | undefined;
  private readonly canvas: HTMLElement;
  private readonly table: HTMLTableElement;
  private readonly observer: ResizeObserver;

  constructor() {
    this.canvas = h("div", { class: "chart-canvas", "aria-hidden": "true" });
    this.table = h("table");
    this.element = h("figure", { class: "chart" }, h("figcaption", {}, "Median and quartiles by period"), this.canvas, h("div", { class: "visually-hidden" }, this.table));
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(this.canvas);
  }

  update(answer: GetBenchmarkTimeSeriesResponse, label: string, format: Format): void {
    const points = answer.points;
    const periods = points.map((point) => point.period);
    const pick = (key: "p25" | "p50" | "p75") => points.map((point) => point.statistics?.[key] ?? null);
    const cell = (column: string, value: number | undefined) => h("td", { "data-col": column }, value === undefined ? "—" : format(value));
    replace(
      this.table,
      h("caption", {}, `Peers over time: ${label}`),
      h("thead", {}, h("tr", {}, ...["Period", "Peers", "P25", "Median", "P75", "Mean"].map((title) => h("th", { scope: "col" }, title)))),
      h(
        "tbody",
        {},
        ...points.map((point) => {
          const statistics = point.statistics;
          const status = statistics?.suppression?.status ?? SuppressionStatus.UNSPECIFIED;
          const peers = status === SuppressionStatus.SUPPRESSED_NO_DATA ? "no data" : status === SuppressionStatus.SUPPRESSED_BELOW_K ? "withheld" : count(statistics?.n ?? 0);
          return h(
            "tr",
            { "data-period": point.period, "data-suppression": SuppressionStatus[status] },
            h("th", { scope: "row" }, point.period),
            h("td", { "data-col": "n" }, peers),
            cell("p25", statistics?.p25),
            cell("p50", statistics?.p50),
            cell("p75", statistics?.p75),
            cell("mean", statistics?.mean),
          );
        }),
      ),
    );
    // The API's fitted line: intercept + slope · x, x counted from the first period.
    const trend = answer.trend;
    const fitted = points.map((_, x) => (trend?.slope !== undefined && trend.intercept !== undefined ? trend.intercept + trend.slope * x : null));
    const value = (_: uPlot, raw: number | null) => (raw == null ? "—" : format(raw));
    this.plot?.destroy();
    this.plot = new uPlot(
      {
        width: Math.max(280, this.canvas.clientWidth),
        height: 240,
        scales: { x: { time: false } },
        series: [
          { label: "Period", value: (_, raw) => periods[raw] ?? "" },
          { label: "P25", stroke: "#5c6676", width: 1, dash: [4, 4], value },
          { label: "Median", stroke: "#2358c4", width: 2, points: { show: true }, value },
          { label: "P75", stroke: "#5c6676", width: 1, dash: [4, 4], value },
          { label: "Trend", stroke: "#b54708", width: 2, dash: [10, 5], value },
        ],
        axes: [
          { stroke: "#3d4451", incrs: [1, 2, 4, 8, 12, 24], space: 70, values: (_, ticks) => ticks.map((tick) => periods[tick] ?? "") },
          // As wide as its longest label (about 7 px a character), so that dollar amounts are not cut.
          { stroke: "#3d4451", size: (_, labels) => 16 + 7 * Math.max(4, ...(labels ?? []).map((label) => label.length)), values: (_, ticks) => ticks.map((tick) => format(tick)) },
        ],
        cursor: { drag: { x: false, y: false } },
      },
      [periods.map((_, index) => index), pick("p25"), pick("p50"), pick("p75"), fitted],
      this.canvas,
    );
  }

  private resize(): void {
    if (!this.plot) return;
    const width = Math.max(280, this.canvas.clientWidth);
    if (Math.abs(width - this.plot.width) > 2) this.plot.setSize({ width, height: 240 });
  }

  destroy(): void {
    this.observer.disconnect();
    this.plot?.destroy();
  }
}
