// The live product dashboard: WatchDashboard's answers, as they come.
import { timestampDate, timestampFromDate, durationMs } from "@bufbuild/protobuf/wkt";
import { ConnectError, Code } from "@connectrpc/connect";
import { metrics, withRenewal, renew, describe } from "../api.js";
import { RangePreset, type Dashboard } from "../gen/metrix/metrics/v1/metrics_pb.js";
import { TimeChart } from "../chart.js";
import { banner, count, dateTime, field, figure, h, percent, replace, showError } from "../ui.js";
import type { View } from "../view.js";

const PRESETS: [RangePreset, string][] = [
  [RangePreset.HOUR, "Last hour"],
  [RangePreset.DAY, "Last day"],
  [RangePreset.WEEK, "Last week"],
  [RangePreset.CUSTOM, "Custom range"],
];

export const dashboardView: View = (main) => {
  const controller = { current: new AbortController() };
  let preset = RangePreset.DAY;
  const errors = banner();
  const status = h("span", { class: "live-state", role: "status", "data-live": "connecting" }, "Connecting…");
  const appFilter = field("App", "app_id", { placeholder: "every app", autocomplete: "off" });
  const start = field("From (UTC)", "start_time", { type: "datetime-local" });
  const end = field("Until (UTC)", "end_time", { type: "datetime-local" });
  const custom = h("div", { class: "custom-range", hidden: true }, start.wrapper, end.wrapper);
  const apply = h("button", { type: "submit" }, "Apply");
  const tabs = PRESETS.map(([value, label]) =>
    h("button", { type: "button", class: "tab", "aria-pressed": String(value === preset), "data-preset": RangePreset[value] }, label),
  );
  tabs.forEach((tab, index) =>
    tab.addEventListener("click", () => {
      preset = PRESETS[index]?.[0] ?? RangePreset.DAY;
      tabs.forEach((other) => other.setAttribute("aria-pressed", String(other === tab)));
      custom.hidden = preset !== RangePreset.CUSTOM;
      if (preset !== RangePreset.CUSTOM) watch();
    }),
  );
  const controls = h(
    "form",
    { class: "controls", "aria-label": "Dashboard range" },
    h("div", { class: "tabs", role: "group", "aria-label": "Range" }, ...tabs),
    appFilter.wrapper,
    custom,
    apply,
  );
  controls.addEventListener("submit", (event) => {
    event.preventDefault();
    watch();
  });

  const figures = h("dl", { class: "figures" });
  const topTypes = h("div", { class: "top-types" });
  const chart = new TimeChart("Events over time");
  const computed = h("p", { class: "muted" });
  const empty = h("div", { class: "empty", hidden: true });

  replace(
    main,
    h("div", { class: "page-head" }, h("h1", {}, "Dashboard"), status),
    controls,
    errors,
    empty,
    figures,
    h("div", { class: "columns" }, chart.element, topTypes),
    computed,
  );

  function render(dashboard: Dashboard): void {
    const active = dashboard.activeUsers;
    replace(
      figures,
      figure("Events in range", "total_events", count(dashboard.totalEvents)),
      figure("Events in the last minute", "events_last_minute", count(dashboard.eventsLastMinute)),
      figure("Active users in range", "active_users.in_range", count(active?.inRange ?? 0n)),
      figure("Daily active users", "active_users.daily", count(active?.daily ?? 0n)),
      figure("Weekly active users", "active_users.weekly", count(active?.weekly ?? 0n)),
      figure("Monthly active users", "active_users.monthly", count(active?.monthly ?? 0n)),
    );
    replace(
      topTypes,
      h("h2", {}, "Top event types"),
      dashboard.topEventTypes.length === 0
        ? h("p", { class: "muted" }, "No events in this range.")
        : h(
            "table",
            { class: "data" },
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Type"), h("th", { scope: "col", class: "num" }, "Events"), h("th", { scope: "col", class: "num" }, "Share"))),
            h(
              "tbody",
              {},
              ...dashboard.topEventTypes.map((type) =>
                h("tr", { "data-event-type": type.eventType }, h("td", {}, type.eventType), h("td", { class: "num" }, count(type.count)), h("td", { class: "num" }, percent(type.share))),
              ),
            ),
          ),
    );
    const width = dashboard.bucketWidth ? durationMs(dashboard.bucketWidth) : 0;
    chart.update({
      label: width >= 86_400_000 ? "Events per day" : width >= 3_600_000 ? "Events per hour" : "Events per bucket",
      times: dashboard.series.map((bucket) => (bucket.startTime ? timestampDate(bucket.startTime) : new Date(0))),
      values: dashboard.series.map((bucket) => Number(bucket.eventCount)),
    });
    computed.textContent = `Computed ${dateTime(dashboard.computeTime ? timestampDate(dashboard.computeTime) : undefined)}`;
    empty.hidden = dashboard.totalEvents > 0n || dashboard.activeUsers?.monthly !== 0n;
    if (!empty.hidden) {
      replace(
        empty,
        h("h2", {}, "No events yet"),
        h("p", {}, "Send your first event with an API key that has the events:write scope (Administration → API keys):"),
        h("pre", {}, `curl -s ${location.origin}/v1/events -H 'x-api-key: YOUR_KEY' \\\n  -d '{"event":{"appId":"web","eventType":"page_view","userId":"u-1"}}'`),
      );
    }
  }

  function setStatus(state: "live" | "connecting" | "reconnecting", text: string): void {
    status.dataset.live = state;
    status.textContent = text;
  }

  function request() {
    const range =
      preset === RangePreset.CUSTOM
        ? {
            startTime: start.input.value ? timestampFromDate(new Date(`${start.input.value}Z`)) : undefined,
            endTime: end.input.value ? timestampFromDate(new Date(`${end.input.value}Z`)) : undefined,
          }
        : undefined;
    return { appId: appFilter.input.value.trim(), rangePreset: preset, customRange: range };
  }

  function watch(): void {
    controller.current.abort();
    const aborter = new AbortController();
    controller.current = aborter;
    void follow(aborter.signal, request());
  }

  async function follow(signal: AbortSignal, body: ReturnType<typeof request>): Promise<void> {
    let delay = 500;
    errors.hidden = true;
    setStatus("connecting", "Connecting…");
    while (!signal.aborted) {
      try {
        for await (const answer of metrics.watchDashboard(body, { signal })) {
          delay = 500;
          errors.hidden = true;
          setStatus("live", "Live");
          if (answer.dashboard) render(answer.dashboard);
        }
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ConnectError && error.code === Code.Unauthenticated) {
          if (await renew()) continue;
          return;
        }
        if (error instanceof ConnectError && error.code === Code.InvalidArgument) {
          setStatus("reconnecting", "Stopped");
          showError(error, errors, controls);
          return;
        }
        setStatus("reconnecting", `Reconnecting… (${describe(error).message})`);
      }
      if (signal.aborted) return;
      setStatus("reconnecting", "Reconnecting…");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 15_000);
    }
  }

  // The first numbers as soon as possible, then the live stream.
  void withRenewal(() => metrics.getDashboard(request()))
    .then((answer) => answer.dashboard && render(answer.dashboard))
    .catch((error: unknown) => showError(error, errors, controls));
  watch();

  return () => {
    controller.current.abort();
    chart.destroy();
  };
};
