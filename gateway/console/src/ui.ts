// Small DOM helpers: the console builds its pages from these, no framework.
import { describe, type Violation } from "./api.js";

type Child = Node | string | number | null | undefined | false;
type Attributes = Record<string, string | number | boolean | EventListener | undefined>;

/** An element with attributes (`on…` are listeners, booleans toggle) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, ...children);
  return element;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
}

/** Replaces every child of `parent`. */
export function replace(parent: Node, ...children: Child[]): void {
  while (parent.firstChild) parent.removeChild(parent.firstChild);
  append(parent, ...children);
}

const integer = new Intl.NumberFormat("en-US");
const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });

/** A count as the API gave it (int64 arrives as bigint), grouped by thousands. */
export function count(value: bigint | number): string {
  return integer.format(value);
}

export function number(value: number): string {
  return decimal.format(value);
}

export function percent(share: number): string {
  return `${decimal.format(share * 100)} %`;
}

export function dateTime(date: Date | undefined): string {
  return date ? date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "—";
}

let fieldCounter = 0;

/** A labelled input with a place for its error, named after the contract's field. */
export function field(
  label: string,
  name: string,
  attributes: Attributes = {},
): { wrapper: HTMLElement; input: HTMLInputElement } {
  const id = `f${++fieldCounter}`;
  const input = h("input", { id, name, "aria-describedby": `${id}-error`, ...attributes });
  return { wrapper: labelled(id, label, name, input), input };
}

/** A control with its label and the place for its error, found by the contract's field `name`. */
function labelled(id: string, label: string, name: string, control: HTMLElement): HTMLElement {
  return h(
    "div",
    { class: "field", "data-field": name },
    h("label", { for: id }, label),
    control,
    h("p", { class: "field-error", id: `${id}-error`, role: "alert" }),
  );
}

/**
 * Shows an error next to what caused it: each field violation under the field
 * of `form` named like it (the last part of its path), the rest in `banner`.
 */
export function showError(error: unknown, banner: HTMLElement, form?: HTMLElement): void {
  const { message, violations } = describe(error);
  clearErrors(banner, form);
  const unplaced: Violation[] = [];
  for (const violation of violations) {
    const place = form ? fieldFor(form, violation.field) : undefined;
    if (place) {
      place.classList.add("invalid");
      const text = place.querySelector(".field-error");
      if (text) text.textContent = violation.description;
      place.querySelector("input, select, textarea")?.setAttribute("aria-invalid", "true");
    } else {
      unplaced.push(violation);
    }
  }
  banner.className = "banner error";
  banner.hidden = false;
  replace(
    banner,
    h("p", {}, message),
    unplaced.length > 0 &&
      h("ul", {}, ...unplaced.map((violation) => h("li", {}, h("code", {}, violation.field), ": ", violation.description))),
  );
}

export function clearErrors(banner: HTMLElement, form?: HTMLElement): void {
  banner.hidden = true;
  replace(banner);
  form?.querySelectorAll(".field.invalid").forEach((place) => {
    place.classList.remove("invalid");
    const text = place.querySelector(".field-error");
    if (text) text.textContent = "";
    place.querySelector("[aria-invalid]")?.removeAttribute("aria-invalid");
  });
}

function fieldFor(form: HTMLElement, path: string): HTMLElement | undefined {
  const candidates = [path, path.replace(/\[\d+\]/g, ""), path.split(".").pop() ?? path];
  for (const candidate of candidates) {
    const place = form.querySelector<HTMLElement>(`.field[data-field="${CSS.escape(candidate)}"]`);
    if (place) return place;
  }
  return undefined;
}

/**
 * Runs `action` when `form` is submitted: earlier errors cleared, the button
 * disabled while it runs, a failure shown next to its fields.
 */
export function onSubmit(form: HTMLFormElement, errors: HTMLElement, button: HTMLButtonElement, action: () => Promise<unknown>): void {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearErrors(errors, form);
    button.disabled = true;
    action()
      .catch((error: unknown) => showError(error, errors, form))
      .finally(() => {
        button.disabled = false;
      });
  });
}

/** Shows a success in the area errors use. */
export function notify(banner: HTMLElement, message: string): void {
  banner.className = "banner notice";
  banner.hidden = false;
  replace(banner, h("p", {}, message));
}

/** An alert area for errors that belong to no one field. */
export function banner(): HTMLElement {
  return h("div", { class: "banner error", role: "alert", hidden: true });
}

/** A titled figure: a label and a number the tests read by `data-figure`. */
export function figure(label: string, key: string, value: string): HTMLElement {
  return h("div", { class: "figure" }, h("dt", {}, label), h("dd", { "data-figure": key }, value));
}

/** A labelled select with a place for its error, named after the contract's field. */
export function selectField(
  label: string,
  name: string,
  options: [value: string, text: string][],
  attributes: Attributes = {},
): { wrapper: HTMLElement; select: HTMLSelectElement } {
  const id = `f${++fieldCounter}`;
  const select = h(
    "select",
    { id, name, "aria-describedby": `${id}-error`, ...attributes },
    ...options.map(([value, text]) => h("option", { value }, text)),
  );
  return { wrapper: labelled(id, label, name, select), select };
}

/** A wide table's container: it scrolls sideways on a narrow screen, and takes focus so a keyboard can scroll it. */
export function scroller(label: string, table: HTMLTableElement): HTMLElement {
  return h("div", { class: "table-wrap", role: "region", "aria-label": label, tabindex: 0 }, table);
}
