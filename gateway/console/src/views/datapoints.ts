// The organisation's time series: the catalogue (ListDataPointSeries: each
// series with its type, unit, tag keys, point count and time span) and a query
// of one series (QueryDataPoints): an aggregation, a filter per tag key, an
// app, a time range and a bucket width; the buckets as a uPlot chart and as a
// table. Every value is the API's; the console only adds the unit.
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { metrics, withRenewal } from "../api.js";
import {
  Aggregation,
  DataPointType,
  type DataPointBucket,
  type DataPointSeries,
  type QueryDataPointsRequestSchema,
  type QueryDataPointsResponse,
} from "../gen/metrix/metrics/v1/metrics_pb.js";
import { TimeChart } from "../chart.js";
import { banner, clearErrors, count, dateTime, field, h, number, replace, scroller, selectField, showError } from "../ui.js";
import type { View } from "../view.js";
import { everyPage } from "./companies.js";

type Query = MessageInitShape<typeof QueryDataPointsRequestSchema>;

const AGGREGATIONS: [Aggregation, string][] = [
  [Aggregation.UNSPECIFIED, "Default: sum for counters, mean otherwise"],
  [Aggregation.COUNT, "Count"],
  [Aggregation.SUM, "Sum"],
  [Aggregation.MIN, "Min"],
  [Aggregation.MAX, "Max"],
  [Aggregation.MEAN, "Mean"],
  [Aggregation.MEDIAN, "Median"],
  [Aggregation.P90, "P90"],
  [Aggregation.P95, "P95"],
  [Aggregation.P99, "P99"],
];

const TYPES: Record<DataPointType, string> = {
  [DataPointType.UNSPECIFIED]: "—",
  [DataPointType.GAUGE]: "gauge",
  [DataPointType.COUNTER]: "counter",
  [DataPointType.TIMING]: "timing",
};

/** A range offered, with a bucket width (seconds) giving a readable number of buckets. */
interface Preset {
  key: string;
  label: string;
  ms: number;
  width: string;
}

const LAST_HOUR: Preset = { key: "hour", label: "Last hour", ms: 3_600_000, width: "60" };
const PRESETS: Preset[] = [
  LAST_HOUR,
  { key: "day", label: "Last day", ms: 86_400_000, width: "900" },
  { key: "week", label: "Last week", ms: 604_800_000, width: "3600" },
  { key: "custom", label: "Custom range", ms: 0, width: "" },
];

/** A Timestamp as RFC 3339 with every digit the API sent, so the same range can be asked for again. */
export function exactTime(stamp: Timestamp | undefined): string {
  if (!stamp) return "";
  const whole = new Date(Number(stamp.seconds) * 1000).toISOString().replace(/\.\d+Z$/, "");
  return `${whole}.${String(stamp.nanos).padStart(9, "0")}Z`;
}

/** The unit a series' values are in: timings without one are milliseconds, as the contract says. */
function unitOf(series: DataPointSeries): string {
  return series.unit || (series.type === DataPointType.TIMING ? "ms" : "");
}

/** What the page holds while it is shown: whether it was left, and the chart to destroy then. */
interface Life {
  stopped: boolean;
  chart?: TimeChart;
}

export const dataPointsView: View = (main) => {
  const errors = banner();
  const life: Life = { stopped: false };
  replace(main, h("h1", {}, "Data points"), errors, h("p", { class: "muted" }, "Loading…"));

  void (async () => {
    let series: DataPointSeries[];
    try {
      series = await everyPage((token) =>
        metrics.listDataPointSeries({ pageSize: 200, pageToken: token }).then((answer): [DataPointSeries[], string] => [answer.series, answer.nextPageToken]),
      );
    } catch (error) {
      replace(main, h("h1", {}, "Data points"), errors);
      showError(error, errors);
      return;
    }
    if (life.stopped) return;
    if (series.length === 0) {
      replace(main, h("h1", {}, "Data points"), emptyState());
      return;
    }
    replace(main, h("h1", {}, "Data points"), errors, querySection(series, life), catalogue(series));
  })();

  return () => {
    life.stopped = true;
    life.chart?.destroy();
  };
};

function emptyState(): HTMLElement {
  return h(
    "div",
    { class: "empty" },
    h("h2", {}, "No data points yet"),
    h(
      "p",
      {},
      "Record your first point with an API key that has the metrics:write scope (",
      h("a", { href: "#/admin" }, "Administration → API keys"),
      "; ask an admin if you are not one), then reload this page:",
    ),
    h(
      "pre",
      { "data-curl": "" },
      `curl -s ${location.origin}/v1/dataPoints -H 'x-api-key: YOUR_KEY' \\\n  -d '{"dataPoints":[{"name":"api.latency","type":"DATA_POINT_TYPE_TIMING","value":42,"unit":"ms","tags":{"route":"/v1/events"}}]}'`,
    ),
  );
}

function catalogue(series: DataPointSeries[]): HTMLElement {
  return h(
    "section",
    { class: "panel", "aria-labelledby": "series-title" },
    h("h2", { id: "series-title" }, "Your organisation's series"),
    scroller(
      "Series",
      h(
        "table",
        { class: "data many-columns", "data-series-list": "" },
        h("caption", { class: "visually-hidden" }, "Your organisation's data point series, by name"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ...["Name", "Type", "Unit", "Tag keys", "Points", "First point (UTC)", "Last point (UTC)"].map((title) => h("th", { scope: "col", class: title === "Points" ? "num" : undefined }, title)),
          ),
        ),
        h(
          "tbody",
          {},
          ...series.map((one) =>
            h(
              "tr",
              { "data-series": one.name, "data-type": `DATA_POINT_TYPE_${DataPointType[one.type]}`, "data-tag-keys": one.tagKeys.join(","), "data-point-count": String(one.pointCount) },
              h("th", { scope: "row" }, h("code", {}, one.name)),
              h("td", {}, TYPES[one.type]),
              h("td", { "data-unit": one.unit }, one.unit || "—"),
              h("td", {}, one.tagKeys.length === 0 ? "—" : one.tagKeys.join(", ")),
              h("td", { class: "num" }, count(one.pointCount)),
              h("td", { class: "time" }, dateTime(one.firstPointTime ? timestampDate(one.firstPointTime) : undefined)),
              h("td", { class: "time" }, dateTime(one.lastPointTime ? timestampDate(one.lastPointTime) : undefined)),
            ),
          ),
        ),
      ),
    ),
  );
}

function querySection(series: DataPointSeries[], life: Life): HTMLElement {
  const errors = banner();
  const name = selectField(
    "Series",
    "name",
    series.map((one): [string, string] => [one.name, `${one.name} (${TYPES[one.type]})`]),
  );
  const aggregation = selectField(
    "Aggregation",
    "aggregation",
    AGGREGATIONS.map(([value, label]): [string, string] => [String(value), label]),
  );
  const app = field("App", "app_id", { autocomplete: "off", placeholder: "every app" });
  const width = field("Bucket width (seconds)", "bucket_width", { autocomplete: "off", inputmode: "decimal", value: LAST_HOUR.width });
  const tags = h("fieldset", { class: "tag-filters" });
  let tagInputs: [string, HTMLInputElement][] = [];

  // The range: its own violations (`time_range`) go under the presets, those of its ends under each end.
  let preset = LAST_HOUR;
  const start = field("From (UTC)", "start_time", { type: "datetime-local", step: 1 });
  const end = field("Until (UTC)", "end_time", { type: "datetime-local", step: 1 });
  const custom = h("div", { class: "custom-range", hidden: true }, start.wrapper, end.wrapper);
  const tabs = PRESETS.map((one) =>
    h("button", { type: "button", class: "tab", "aria-pressed": String(one === preset), "data-preset": one.key, onclick: () => choose(one) }, one.label),
  );
  const range = h(
    "fieldset",
    { class: "field range", "data-field": "time_range" },
    h("legend", {}, "Time range"),
    h("div", { class: "tabs" }, ...tabs),
    h("p", { class: "field-error", role: "alert" }),
    custom,
  );

  const submit = h("button", { type: "submit", class: "primary" }, "Query");
  const form = h(
    "form",
    { "aria-label": "Query a series", novalidate: true },
    h("div", { class: "field-row" }, name.wrapper, aggregation.wrapper, app.wrapper, width.wrapper),
    tags,
    range,
    errors,
    h("div", { class: "actions" }, submit),
  );
  const state = h("p", { class: "muted query-state", role: "status", "data-state": "idle" });
  const result = h("div", { class: "query-result" });

  function choose(chosen: Preset): void {
    preset = chosen;
    tabs.forEach((tab) => tab.setAttribute("aria-pressed", String(tab.dataset.preset === chosen.key)));
    custom.hidden = chosen.key !== "custom";
    if (chosen.key === "custom") return;
    width.input.value = chosen.width;
    void run();
  }

  function chosenSeries(): DataPointSeries | undefined {
    return series.find((one) => one.name === name.select.value);
  }

  /** One input per tag key of the chosen series: an empty one does not filter. */
  function showTags(): void {
    const keys = chosenSeries()?.tagKeys ?? [];
    const made = keys.map((key) => [key, field(key, `tags[${key}]`, { autocomplete: "off", placeholder: "any value" })] as const);
    tagInputs = made.map(([key, one]) => [key, one.input]);
    replace(
      tags,
      h("legend", {}, "Tags"),
      keys.length === 0 ? h("p", { class: "muted" }, "This series' points carry no tags.") : h("div", { class: "field-row" }, ...made.map(([, one]) => one.wrapper)),
    );
  }
  name.select.addEventListener("change", () => {
    showTags();
    void run();
  });

  function timeRange(): Query["timeRange"] {
    if (preset.key === "custom") {
      const at = (text: string) => (text ? timestampFromDate(new Date(`${text}Z`)) : undefined);
      return { startTime: at(start.input.value), endTime: at(end.input.value) };
    }
    const now = Date.now();
    return { startTime: timestampFromDate(new Date(now - preset.ms)), endTime: timestampFromDate(new Date(now)) };
  }

  /** The width as typed, in seconds; empty asks for one bucket, unreadable is sent as 0 s, which the API explains. */
  function bucketWidth(): Query["bucketWidth"] {
    const text = width.input.value.trim();
    if (text === "") return undefined;
    const seconds = Number(text);
    if (!Number.isFinite(seconds)) return { seconds: 0n, nanos: 0 };
    const whole = Math.trunc(seconds);
    return { seconds: BigInt(whole), nanos: Math.round((seconds - whole) * 1e9) };
  }

  function request(): Query {
    return {
      name: name.select.value,
      aggregation: Number(aggregation.select.value) as Aggregation,
      appId: app.input.value.trim(),
      tags: Object.fromEntries(tagInputs.filter(([, input]) => input.value.trim() !== "").map(([key, input]) => [key, input.value.trim()])),
      timeRange: timeRange(),
      bucketWidth: bucketWidth(),
    };
  }

  // Only the latest query's answer is drawn, whichever arrives last.
  let latest = 0;
  async function run(): Promise<void> {
    const mine = ++latest;
    const asked = request();
    const widthText = width.input.value.trim();
    const shown = chosenSeries();
    clearErrors(errors, form);
    state.dataset.state = "loading";
    state.textContent = "Querying…";
    try {
      const answer = await withRenewal(() => metrics.queryDataPoints(asked));
      if (mine !== latest || life.stopped || !shown) return;
      draw(shown, asked, widthText, answer);
      state.dataset.state = "done";
      state.textContent = "";
    } catch (error) {
      if (mine !== latest) return;
      replace(result);
      state.dataset.state = "failed";
      state.textContent = "The query failed: see the message above.";
      showError(error, errors, form);
    }
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void run();
  });

  function draw(shown: DataPointSeries, asked: Query, widthText: string, answer: QueryDataPointsResponse): void {
    const unit = unitOf(shown);
    // A count is a number of points, not a value in the series' unit.
    const format = answer.aggregation === Aggregation.COUNT || !unit ? number : (value: number) => `${number(value)} ${unit}`;
    const how = AGGREGATIONS.find(([value]) => value === answer.aggregation)?.[1] ?? Aggregation[answer.aggregation];
    const from = answer.timeRange?.startTime;
    const until = answer.timeRange?.endTime;
    life.chart?.destroy();
    const chart = new TimeChart(`${how} of ${shown.name}`, format);
    life.chart = chart;
    const summary = h(
      "p",
      {
        class: "query-summary",
        "data-name": shown.name,
        "data-aggregation": `AGGREGATION_${Aggregation[answer.aggregation]}`,
        "data-start-time": exactTime(from),
        "data-end-time": exactTime(until),
        "data-tags": JSON.stringify(asked.tags ?? {}),
      },
      `${how} of `,
      h("code", {}, shown.name),
      ` from ${dateTime(from ? timestampDate(from) : undefined)} until ${dateTime(until ? timestampDate(until) : undefined)}`,
      asked.bucketWidth ? `, in buckets of ${widthText} s` : ", in one bucket",
      `: ${count(answer.buckets.length)} ${answer.buckets.length === 1 ? "bucket" : "buckets"} with points.`,
    );
    if (answer.buckets.length === 0) {
      replace(result, summary, h("p", { class: "empty" }, `No point of ${shown.name} matches in this range: widen the range, or clear a tag or app filter.`));
      return;
    }
    replace(result, summary, chart.element, bucketTable(shown.name, answer.buckets, format));
    chart.update({
      label: unit && answer.aggregation !== Aggregation.COUNT ? `${how} (${unit})` : how,
      times: answer.buckets.map((bucket) => (bucket.startTime ? timestampDate(bucket.startTime) : new Date(0))),
      values: answer.buckets.map((bucket) => bucket.value),
    });
  }

  showTags();
  void run();
  return h(
    "section",
    { class: "panel", "aria-labelledby": "query-title" },
    h("h2", { id: "query-title" }, "Query a series"),
    form,
    state,
    result,
  );
}

function bucketTable(name: string, buckets: DataPointBucket[], format: (value: number) => string): HTMLElement {
  return scroller(
    `${name} by bucket`,
    h(
      "table",
      { class: "data many-columns", "data-buckets": "" },
      h("caption", { class: "visually-hidden" }, `${name}: the buckets holding points, oldest first`),
      h(
        "thead",
        {},
        h("tr", {}, h("th", { scope: "col" }, "Start (UTC)"), h("th", { scope: "col" }, "End (UTC)"), h("th", { scope: "col", class: "num" }, "Value"), h("th", { scope: "col", class: "num" }, "Points")),
      ),
      h(
        "tbody",
        {},
        ...buckets.map((bucket) =>
          h(
            "tr",
            { "data-start-time": exactTime(bucket.startTime), "data-end-time": exactTime(bucket.endTime), "data-value": String(bucket.value), "data-count": String(bucket.count) },
            h("th", { scope: "row", class: "time" }, dateTime(bucket.startTime ? timestampDate(bucket.startTime) : undefined)),
            h("td", { class: "time" }, dateTime(bucket.endTime ? timestampDate(bucket.endTime) : undefined)),
            h("td", { class: "num" }, format(bucket.value)),
            h("td", { class: "num" }, count(bucket.count)),
          ),
        ),
      ),
    ),
  );
}
