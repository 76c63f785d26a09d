// The console's shell: who is signed in, the navigation, and the page the
// address names (#/dashboard, #/events, …). Signed out, `/` is the sign-in form.
import "./style.css";
import "uplot/dist/uPlot.min.css";
import { currentUser, onSessionChange, renew, signOut, signedIn } from "./api.js";
import { Role } from "./gen/metrix/auth/v1/auth_pb.js";
import { banner, h, replace, showError } from "./ui.js";
import type { View } from "./view.js";
import { finishGoogleSignIn, signInPage, signUpPage } from "./views/auth.js";
import { dashboardView } from "./views/dashboard.js";
import { eventsView } from "./views/events.js";
import { adminView } from "./views/admin.js";
import { companiesView } from "./views/companies.js";
import { kpisView } from "./views/kpis.js";
import { benchmarksView } from "./views/benchmarks.js";
import { reportsView } from "./views/reports.js";
import { dataPointsView } from "./views/datapoints.js";

interface Page {
  path: string;
  title: string;
  view: View;
  adminOnly?: boolean;
}

const PAGES: Page[] = [
  { path: "dashboard", title: "Dashboard", view: dashboardView },
  { path: "events", title: "Events", view: eventsView },
  { path: "companies", title: "Companies", view: companiesView },
  { path: "kpis", title: "KPIs", view: kpisView },
  { path: "benchmarks", title: "Benchmarks", view: benchmarksView },
  { path: "reports", title: "Reports", view: reportsView },
  { path: "data-points", title: "Data points", view: dataPointsView },
  { path: "admin", title: "Administration", view: adminView, adminOnly: true },
];

const root = document.getElementById("app") ?? document.body;
let stop: (() => void) | void = undefined;

function route(): { path: string; parameters: URLSearchParams } {
  const [path = "", query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  return { path, parameters: new URLSearchParams(query) };
}

async function render(): Promise<void> {
  if (stop) stop();
  stop = undefined;
  const { path, parameters } = route();
  if (!signedIn()) {
    const invitation = path.startsWith("invite/") ? decodeURIComponent(path.slice("invite/".length)) : undefined;
    replace(root, path === "sign-up" || invitation ? signUpPage(invitation) : signInPage());
    document.title = "Sign in · Metrix";
    root.querySelector("input")?.focus();
    return;
  }
  const main = h("main", { id: "main", tabindex: -1 });
  const errors = banner();
  let me;
  try {
    me = await currentUser();
  } catch (error) {
    replace(root, h("main", { id: "main" }, h("h1", {}, "Metrix"), errors));
    showError(error, errors);
    return;
  }
  const admin = me.user.role === Role.ADMIN;
  const visible = PAGES.filter((page) => !page.adminOnly || admin);
  const page = visible.find((candidate) => candidate.path === path) ?? visible[0];
  if (!page) return;
  const signOutButton = h("button", { type: "button", class: "link", "data-action": "sign-out" }, "Sign out");
  signOutButton.addEventListener("click", () => void signOut().then(() => (location.hash = "#/")));
  replace(
    root,
    h("a", { class: "skip", href: "#main", onclick: (event: Event) => (event.preventDefault(), main.focus()) }, "Skip to content"),
    h(
      "header",
      { class: "top" },
      h("a", { class: "brand", href: "#/dashboard" }, "Metrix"),
      h(
        "nav",
        { "aria-label": "Console" },
        h(
          "ul",
          {},
          ...visible.map((candidate) =>
            h("li", {}, h("a", { href: `#/${candidate.path}`, "aria-current": candidate === page ? "page" : undefined }, candidate.title)),
          ),
        ),
      ),
      h(
        "div",
        { class: "who" },
        h("span", { "data-user": me.user.email }, me.user.displayName || me.user.email),
        h("span", { class: "muted" }, ` · ${me.organization?.displayName ?? ""} · ${Role[me.user.role].toLowerCase().replace("_", " ")}`),
        " ",
        signOutButton,
      ),
    ),
    main,
  );
  document.title = `${page.title} · Metrix`;
  stop = page.view(main, parameters);
}

async function start(): Promise<void> {
  const query = new URLSearchParams(location.search);
  if (query.has("code") && query.has("state")) {
    history.replaceState(null, "", "/#/dashboard");
    try {
      await finishGoogleSignIn(query);
    } catch (error) {
      const errors = banner();
      replace(root, signInPage());
      root.querySelector("form")?.append(errors);
      showError(error, errors);
      return;
    }
  } else {
    await renew();
  }
  onSessionChange(() => void render());
  window.addEventListener("hashchange", () => void render());
  await render();
}

void start();
