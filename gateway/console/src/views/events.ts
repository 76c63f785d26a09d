// The event explorer: the live tail (WatchEvents), a filtered and paginated
// list (ListEvents), one event's detail (GetEvent) and exports (ExportEvents).
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { toJsonString } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { metrics, renew, withRenewal } from "../api.js";
import { EventSchema, ExportFormat, type Event } from "../gen/metrix/metrics/v1/metrics_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { EventFilterSchema } from "../gen/metrix/metrics/v1/metrics_pb.js";
import { banner, clearErrors, count, dateTime, field, h, notify, replace, showError } from "../ui.js";
import type { View } from "../view.js";

const TAIL_LENGTH = 50;
const PAGE_SIZE = 25;

export const eventsView: View = (main) => {
  const tailAbort = new AbortController();
  const errors = banner();
  const filters = {
    type: field("Event type", "event_types", { placeholder: "page_view", autocomplete: "off" }),
    name: field("Event name", "event_name", { autocomplete: "off" }),
    user: field("User", "user_id", { autocomplete: "off" }),
    session: field("Session", "session_id", { autocomplete: "off" }),
    app: field("App", "app_id", { autocomplete: "off" }),
    from: field("From (UTC)", "start_time", { type: "datetime-local" }),
    until: field("Until (UTC)", "end_time", { type: "datetime-local" }),
  };
  const form = h(
    "form",
    { class: "filters", "aria-label": "Event filters" },
    ...Object.values(filters).map((filter) => filter.wrapper),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Search")),
  );
  const list = h("div", { class: "event-list" });
  const more = h("button", { type: "button", hidden: true }, "Next page");
  const detail = h("section", { class: "event-detail", "aria-label": "Event detail", hidden: true });
  const tailStatus = h("span", { class: "live-state", role: "status", "data-live": "connecting" }, "Connecting…");
  const tail = h("ol", { class: "tail", "aria-live": "off" });
  const exports = h(
    "div",
    { class: "actions" },
    h("button", { type: "button", "data-export": "csv", onclick: () => void download(ExportFormat.CSV) }, "Export CSV"),
    h("button", { type: "button", "data-export": "ndjson", onclick: () => void download(ExportFormat.NDJSON) }, "Export NDJSON"),
  );

  replace(
    main,
    h("h1", {}, "Events"),
    h(
      "section",
      { class: "panel", "aria-labelledby": "tail-title" },
      h("div", { class: "page-head" }, h("h2", { id: "tail-title" }, "Live tail"), tailStatus),
      tail,
    ),
    h("section", { class: "panel", "aria-labelledby": "search-title" }, h("h2", { id: "search-title" }, "Search"), form, errors, exports, list, more),
    detail,
  );

  function filter(): MessageInitShape<typeof EventFilterSchema> {
    const type = filters.type.input.value.trim();
    const from = filters.from.input.value;
    const until = filters.until.input.value;
    return {
      eventTypes: type ? type.split(",").map((part) => part.trim()) : [],
      eventName: filters.name.input.value.trim(),
      userId: filters.user.input.value.trim(),
      sessionId: filters.session.input.value.trim(),
      appId: filters.app.input.value.trim(),
      timeRange:
        from || until
          ? {
              startTime: from ? timestampFromDate(new Date(`${from}Z`)) : undefined,
              endTime: until ? timestampFromDate(new Date(`${until}Z`)) : undefined,
            }
          : undefined,
    };
  }

  let pageToken = "";
  async function search(next: boolean): Promise<void> {
    clearErrors(errors, form);
    try {
      const answer = await withRenewal(() => metrics.listEvents({ filter: filter(), pageSize: PAGE_SIZE, pageToken: next ? pageToken : "" }));
      pageToken = answer.nextPageToken;
      more.hidden = pageToken === "";
      const rows = answer.events.map(row);
      if (next) list.querySelector("tbody")?.append(...rows);
      else
        replace(
          list,
          rows.length === 0
            ? h("p", { class: "muted" }, "No event matches these filters.")
            : h(
                "table",
                { class: "data" },
                h("thead", {}, h("tr", {}, ...["Time (UTC)", "Type", "Name", "User", "App"].map((title) => h("th", { scope: "col" }, title)))),
                h("tbody", {}, ...rows),
              ),
        );
    } catch (error) {
      showError(error, errors, form);
    }
  }

  function row(event: Event): HTMLElement {
    const open = h("button", { type: "button", class: "link", onclick: () => void show(event.eventId) }, event.eventType);
    return h(
      "tr",
      { "data-event-id": event.eventId },
      h("td", {}, dateTime(event.correctedTimestamp ? timestampDate(event.correctedTimestamp) : undefined)),
      h("td", {}, open),
      h("td", {}, event.eventName),
      h("td", {}, event.userId),
      h("td", {}, event.appId),
    );
  }

  async function show(eventId: string): Promise<void> {
    try {
      const answer = await withRenewal(() => metrics.getEvent({ eventId }));
      if (!answer.event) return;
      detail.hidden = false;
      replace(
        detail,
        h("h2", {}, `Event ${eventId}`),
        h("pre", { class: "json", tabindex: 0 }, toJsonString(EventSchema, answer.event, { prettySpaces: 2 })),
        h("button", { type: "button", onclick: () => (detail.hidden = true) }, "Close"),
      );
      detail.querySelector("button")?.focus();
    } catch (error) {
      showError(error, errors);
    }
  }

  async function download(format: ExportFormat): Promise<void> {
    clearErrors(errors, form);
    try {
      const parts: string[] = [];
      let type = "text/plain";
      let exported = 0n;
      for await (const chunk of metrics.exportEvents({ filter: filter(), format })) {
        parts.push(chunk.data);
        type = chunk.contentType || type;
        exported += chunk.eventCount;
      }
      const link = h("a", {
        href: URL.createObjectURL(new Blob(parts, { type })),
        download: format === ExportFormat.CSV ? "events.csv" : "events.ndjson",
      });
      document.body.append(link);
      link.click();
      link.remove();
      notify(errors, `Exported ${count(exported)} events.`);
    } catch (error) {
      showError(error, errors, form);
    }
  }

  async function follow(): Promise<void> {
    let delay = 500;
    while (!tailAbort.signal.aborted) {
      try {
        tailStatus.dataset.live = "connecting";
        const opened = () => {
          tailStatus.dataset.live = "live";
          tailStatus.textContent = "Live";
        };
        for await (const answer of metrics.watchEvents({ filter: {} }, { signal: tailAbort.signal, onHeader: opened })) {
          delay = 500;
          opened();
          if (answer.event) {
            tail.prepend(tailItem(answer.event));
            while (tail.children.length > TAIL_LENGTH) tail.lastElementChild?.remove();
          }
          if (answer.skippedCount > 0n) tail.prepend(h("li", { class: "muted" }, `${count(answer.skippedCount)} events skipped to keep up`));
        }
      } catch (error) {
        if (tailAbort.signal.aborted) return;
        if (error instanceof ConnectError && error.code === Code.Unauthenticated && !(await renew())) return;
      }
      tailStatus.dataset.live = "reconnecting";
      tailStatus.textContent = "Reconnecting…";
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 15_000);
    }
  }

  function tailItem(event: Event): HTMLElement {
    return h(
      "li",
      { "data-event-id": event.eventId },
      h("time", {}, dateTime(event.receivedAt ? timestampDate(event.receivedAt) : undefined)),
      " ",
      h("strong", {}, event.eventType),
      event.eventName && ` ${event.eventName}`,
      event.userId && h("span", { class: "muted" }, ` · ${event.userId}`),
      h("span", { class: "muted" }, ` · ${event.appId}`),
    );
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void search(false);
  });
  more.addEventListener("click", () => void search(true));
  void search(false);
  void follow();
  return () => tailAbort.abort();
};

