// Signing up, in and out in the console.
import { pass } from "./lib.mjs";

export default async function (suite) {
  const page = await suite.newPage();
  const suffix = `${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  const account = { email: `founder-${suffix}@example.com`, password: "correct horse battery staple" };

  // Signed out, `/` is the sign-in form at once.
  await page.goto(suite.gateway);
  await page.getByLabel("Email").waitFor({ timeout: 5_000 });
  await page.getByLabel("Password").waitFor();
  pass("signed out, / shows the sign-in form");
  await suite.review(page, "sign-in");

  // A refused sign-in is shown in words.
  await page.getByLabel("Email").fill(account.email);
  await page.getByLabel("Password").fill("not the password at all");
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.locator(".banner.error").waitFor();
  pass(`a refused sign-in is explained: "${(await page.locator(".banner.error").innerText()).trim()}"`);

  // Sign up: a too-short password is named next to its field.
  await page.getByRole("link", { name: "Sign up" }).click();
  await page.getByLabel("Email").fill(account.email);
  await page.getByLabel(/^Password/).fill("short");
  await page.getByLabel("Organisation").fill(`Founders ${suffix}`);
  await page.getByRole("button", { name: "Create the account" }).click();
  const passwordError = page.locator('.field[data-field="password"] .field-error');
  await passwordError.filter({ hasText: /./ }).waitFor();
  pass(`sign-up names the password field: "${await passwordError.innerText()}"`);
  await suite.review(page, "sign-up");

  await page.getByLabel(/^Password/).fill(account.password);
  await page.getByLabel("Your name").fill("Ada Founder");
  await page.getByRole("button", { name: "Create the account" }).click();
  await page.locator('.live-state[data-live="live"]').waitFor({ timeout: 10_000 });
  pass("sign-up lands on the live dashboard");

  // A reload keeps the session (the refresh token is in this tab's sessionStorage, never localStorage).
  await page.reload();
  await page.locator('.live-state[data-live="live"]').waitFor({ timeout: 10_000 });
  const stored = await page.evaluate(() => ({ local: localStorage.length, session: Object.keys(sessionStorage) }));
  if (stored.local !== 0) throw new Error(`the console wrote ${stored.local} items to localStorage`);
  pass(`a reload keeps the session; localStorage is empty (sessionStorage: ${stored.session.join(", ")})`);

  // Sign out revokes the session: its refresh token no longer works.
  const refreshToken = await page.evaluate(() => sessionStorage.getItem("metrix.refresh"));
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("Email").waitFor();
  const reuse = await suite.raw("POST", "/v1/auth/tokens:refresh", { body: { refreshToken } });
  if (reuse.ok) throw new Error("the signed-out session's refresh token still works");
  pass(`sign-out revokes the session (its refresh token is now ${reuse.status})`);

  await page.getByLabel("Email").fill(account.email);
  await page.getByLabel("Password").fill(account.password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.locator('.live-state[data-live="live"]').waitFor({ timeout: 10_000 });
  pass("signed in again");
  await page.context().close();
}
