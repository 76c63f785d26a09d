// Time-series charts: uPlot, sized to their container, with the same numbers
// as an accessible table for screen readers and keyboard users.
import uPlot from "uplot";
import { count, h, replace } from "./ui.js";

export interface Series {
  label: string;
  times: Date[];
  values: number[];
}

/** A chart element that redraws when its data or width changes. */
export class TimeChart {
  readonly element: HTMLElement;
  private plot: uPlot | undefined;
  private readonly canvas: HTMLElement;
  private readonly table: HTMLTableElement;
  private readonly observer: ResizeObserver;

  constructor(private readonly title: string, private readonly format: (value: number) => string = count) {
    this.canvas = h("div", { class: "chart-canvas", "aria-hidden": "true" });
    this.table = h("table");
    this.element = h("figure", { class: "chart" }, h("figcaption", {}, title), this.canvas, h("div", { class: "visually-hidden" }, this.table));
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(this.canvas);
  }

  update(series: Series): void {
    const xs = series.times.map((time) => time.getTime() / 1000);
    const data: uPlot.AlignedData = [xs, series.values];
    replace(
      this.table,
      h("caption", {}, `${this.title}: ${series.label}`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Time (UTC)"), h("th", { scope: "col" }, series.label))),
      h(
        "tbody",
        {},
        ...series.times.map((time, index) =>
          h("tr", {}, h("td", {}, time.toISOString()), h("td", {}, this.format(series.values[index] ?? 0))),
        ),
      ),
    );
    if (this.plot && this.plot.series[1]?.label === series.label) {
      this.plot.setData(data);
      return;
    }
    // A new label (hourly buckets became daily ones) needs a new plot.
    this.plot?.destroy();
    const width = Math.max(280, this.canvas.clientWidth);
    this.plot = new uPlot(
      {
        width,
        height: 220,
        tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"),
        series: [
          {},
          { label: series.label, stroke: "#2358c4", fill: "rgba(35, 88, 196, 0.12)", width: 2, value: (_, v) => (v == null ? "—" : this.format(v)) },
        ],
        axes: [
          { stroke: "#3d4451" },
          // As wide as the longest tick label: uPlot's default width cuts off labels carrying a unit.
          { stroke: "#3d4451", values: (_, ticks) => ticks.map((tick) => this.format(tick)), size: (_, values) => Math.max(50, 16 + 8 * Math.max(0, ...(values ?? []).map((value) => value.length))) },
        ],
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
      },
      data,
      this.canvas,
    );
  }

  private resize(): void {
    if (!this.plot) return;
    const width = Math.max(280, this.canvas.clientWidth);
    if (Math.abs(width - this.plot.width) > 2) this.plot.setSize({ width, height: 220 });
  }

  destroy(): void {
    this.observer.disconnect();
    this.plot?.destroy();
  }
}
