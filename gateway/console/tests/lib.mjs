// What every browser test of the console shares: Chromium, the API as curl
// calls it, accounts, axe-core, screenshots and checks at 375 px.
import { chromium } from "playwright-core";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

export const LIVE_WITHIN_MS = 2_000;
/** The account `metrix dev` seeds (crates/metrix/src/dev.rs): a company with KPIs and 300 peer companies. */
export const DEMO = { email: "demo@metrix.dev", password: "metrix demo password" };
const CHROMIUM = process.env.METRIX_CHROMIUM ?? "/usr/bin/chromium";
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

export function pass(message) {
  console.log(`ok   ${message}`);
}

/** The suite's state: the gateway, where screenshots go, the browser. */
export class Suite {
  constructor(gateway, screenshots, browser) {
    this.gateway = gateway;
    this.screenshots = screenshots;
    this.browser = browser;
    this.pageErrors = [];
  }

  static async open(gateway, screenshots) {
    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set METRIX_CHROMIUM)`);
    mkdirSync(screenshots, { recursive: true });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
    return new Suite(gateway, screenshots, browser);
  }

  async close() {
    await this.browser.close();
  }

  /** A page in a fresh context (its own sessionStorage). */
  async newPage(width = 1280) {
    // bypassCSP only so that axe-core can be injected; the console itself runs under the gateway's CSP.
    const context = await this.browser.newContext({ viewport: { width, height: 900 }, bypassCSP: true, acceptDownloads: true });
    const page = await context.newPage();
    page.on("pageerror", (error) => this.pageErrors.push(error.message));
    page.on("console", (message) => {
      if (message.type() === "error") console.error(`console error: ${message.text()}`);
    });
    return page;
  }

  /** The REST API, as curl calls it; throws with the answer on a non-2xx status. */
  async rest(method, path, { token, apiKey, body } = {}) {
    const response = await this.raw(method, path, { token, apiKey, body });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : {};
  }

  async raw(method, path, { token, apiKey, body } = {}) {
    const headers = { "content-type": "application/json" };
    if (token) headers.authorization = `Bearer ${token}`;
    if (apiKey) headers["x-api-key"] = apiKey;
    return fetch(`${this.gateway}${path}`, { method, headers, body: body && JSON.stringify(body) });
  }

  /** A new organisation's admin, signed up through the API: { email, password, token }. */
  async account(label) {
    const suffix = `${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
    const email = `${label}-${suffix}@example.com`;
    const password = "correct horse battery staple";
    const answer = await this.rest("POST", "/v1/auth:signUp", {
      body: { email, password, displayName: `${label} admin`, organizationName: `${label} ${suffix}` },
    });
    return { email, password, token: answer.tokens.accessToken, user: answer.user };
  }

  /**
   * An API key of `account`'s organisation with the events:write scope, and
   * a function that tracks `count` events of `type` with it (TrackEvents).
   */
  async eventSender(account) {
    const { key } = await this.rest("POST", "/v1/api-keys", {
      token: account.token,
      body: { displayName: "browser test", scopes: ["events:write"] },
    });
    return (count, type) =>
      this.rest("POST", "/v1/events:batch", {
        apiKey: key,
        body: {
          events: Array.from({ length: count }, (_, index) => ({ appId: "web", eventType: type, eventName: `${type} ${index}`, userId: `user-${index % 3}` })),
        },
      });
  }

  /** Signs in through the API: the access token. */
  async token(account) {
    const answer = await this.rest("POST", "/v1/auth:signIn", { body: { email: account.email, password: account.password } });
    return answer.tokens.accessToken;
  }

  /** Signs `account` in through the console's form and waits for the dashboard. */
  async signIn(page, account) {
    await page.goto(this.gateway);
    await page.getByLabel("Email").fill(account.email);
    await page.getByLabel("Password").fill(account.password);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.locator("header.top").waitFor({ timeout: 10_000 });
  }

  async accessible(page, view) {
    await page.addScriptTag({ content: axeSource });
    const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
    const serious = result.violations.filter((violation) => ["serious", "critical"].includes(violation.impact));
    if (serious.length > 0) {
      throw new Error(
        `axe-core on ${view}: ${serious.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`).join("; ")}`,
      );
    }
    pass(`axe-core: no serious or critical violation on ${view} (${result.violations.length} minor)`);
  }

  async shoot(page, name) {
    await page.screenshot({ path: join(this.screenshots, `${name}.png`), fullPage: true });
  }

  /** The view at 375 px: no horizontal scrolling, and a screenshot. */
  async narrow(page, view) {
    await page.setViewportSize({ width: 375, height: 800 });
    await page.waitForTimeout(200);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    if (overflow > 0) throw new Error(`${view} is ${overflow} px wider than a 375 px screen`);
    await this.shoot(page, `${view}-375`);
    pass(`${view} fits 375 px without horizontal scrolling`);
    await page.setViewportSize({ width: 1280, height: 900 });
  }

  /** The view's full checks: axe-core, a screenshot at 1280 px and the 375 px check. */
  async review(page, view) {
    await this.accessible(page, view);
    await this.shoot(page, view);
    await this.narrow(page, view);
  }
}

/** A figure shown with `data-figure="key"`, as an integer. */
export async function figure(page, key) {
  const text = await page.locator(`[data-figure="${key}"]`).innerText();
  return BigInt(text.replace(/[^0-9]/g, ""));
}

/** Polls `probe` until it returns something other than undefined. */
export async function waitFor(probe, withinMs, what) {
  const deadline = Date.now() + withinMs;
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`waited ${withinMs} ms for ${what}${last ? `: ${last.message}` : ""}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
