// Administration: the users against ListUsers, an invitation accepted in
// another browser (a company user, who sees no administration), an API key
// shown once, working, then revoked, a role change, a service account's
// secret rotated, and the audit log against ListAuditEvents.
import { pass, waitFor } from "./lib.mjs";

const REVOKED_WITHIN_MS = 5_000;

export default async function (suite) {
  const admin = await suite.account("admin");
  const page = await suite.newPage();
  await suite.signIn(page, admin);
  await page.getByRole("link", { name: "Administration" }).click();
  await page.locator('[data-admin-section="users"] tr[data-user-id]').first().waitFor({ timeout: 5_000 });
  await expectUsers(suite, page, admin.token);

  // Invite a colleague and take the link the console shows.
  const colleague = { email: `colleague-${Date.now()}@example.com`, password: "another horse battery staple" };
  await section(page, "Invitations");
  await page.getByLabel("Email").fill(colleague.email);
  await page.getByRole("button", { name: "Invite" }).click();
  const link = await page.locator('[data-secret="invitation"]').inputValue({ timeout: 5_000 });
  if (!link.startsWith(`${suite.gateway}/#/invite/mxi_`)) throw new Error(`the invitation link is ${link}`);
  pass(`the invitation link is shown: ${link.slice(0, 40)}…`);
  await suite.shoot(page, "admin-invitations");

  // Accepted in another browser, it makes a company user who sees no administration.
  const invitee = await suite.newPage();
  await invitee.goto(link);
  await invitee.getByRole("heading", { name: "Join your team on Metrix" }).waitFor({ timeout: 5_000 });
  await invitee.getByLabel("Email").fill(colleague.email);
  await invitee.getByLabel(/^Password/).fill(colleague.password);
  await invitee.getByLabel("Your name").fill("Grace Colleague");
  await invitee.getByRole("button", { name: "Accept the invitation" }).click();
  await invitee.locator("header.top").waitFor({ timeout: 10_000 });
  colleague.token = await suite.token(colleague);
  const { user: joined } = await suite.rest("GET", "/v1/users/me", { token: colleague.token });
  if (joined.role !== "ROLE_COMPANY_USER" || joined.organizationId !== admin.user.organizationId)
    throw new Error(`the invitee joined as ${joined.role} of ${joined.organizationId}`);
  pass("the invitation, accepted in another browser, makes a company user of the admin's organisation");
  if ((await invitee.getByRole("link", { name: "Administration" }).count()) !== 0) throw new Error("a company user sees the Administration link");
  await invitee.goto(`${suite.gateway}/#/admin?section=api-keys`);
  await invitee.reload();
  await invitee.getByRole("heading", { name: "Dashboard", level: 1 }).waitFor({ timeout: 10_000 });
  if ((await invitee.locator("[data-admin-section]").count()) !== 0) throw new Error("#/admin shows administration to a company user");
  pass("a company user has no Administration link, and #/admin falls back to the dashboard");
  await invitee.context().close();

  // An API key: scopes are required, the key is shown once and works.
  await section(page, "API keys");
  await page.locator(".table-scroll .empty, .table-scroll table").first().waitFor({ timeout: 5_000 });
  await page.getByLabel("Name").fill("browser key");
  await page.getByRole("button", { name: "Create the key" }).click();
  const scopesError = page.locator('.field[data-field="scopes"] .field-error');
  await scopesError.filter({ hasText: /./ }).waitFor({ timeout: 5_000 });
  pass(`a key without scopes is refused under its scopes: "${await scopesError.innerText()}"`);
  await page.getByRole("checkbox", { name: /^events:write/ }).check();
  await page.getByRole("button", { name: "Create the key" }).click();
  const key = await page.locator('[data-secret="api-key"]').inputValue({ timeout: 5_000 });
  const send = () => suite.raw("POST", "/v1/events", { apiKey: key, body: { event: { appId: "web", eventType: "page_view", userId: "u-1" } } });
  const sent = await send();
  if (!sent.ok) throw new Error(`the new key cannot send an event: ${sent.status} ${await sent.text()}`);
  pass("the API key shown once sends an event through POST /v1/events");
  await page.locator(".secret").getByRole("button", { name: "Copy" }).click();
  const copied = page.locator('.secret [role="status"]').filter({ hasText: /./ });
  await copied.waitFor({ timeout: 5_000 });
  pass(`the copy button answers: "${await copied.innerText()}"`);
  await page.locator("tr[data-api-key-id]").first().waitFor();
  const keys = await suite.rest("GET", "/v1/api-keys?pageSize=50", { token: admin.token });
  const listedKeys = await page.locator("tr[data-api-key-id]").evaluateAll((rows) => rows.map((row) => row.dataset.apiKeyId));
  same(listedKeys, keys.apiKeys.map((apiKey) => apiKey.apiKeyId), "the API keys", "ListApiKeys");
  if (!key.startsWith(keys.apiKeys[0].prefix)) throw new Error(`the key shown does not start with the listed prefix ${keys.apiKeys[0].prefix}`);
  pass("the API key list equals ListApiKeys, and the key shown starts with its prefix");
  await suite.review(page, "admin-api-keys");

  // Leaving the page and coming back never shows it again.
  await page.getByRole("link", { name: "Dashboard", exact: true }).click();
  await page.getByRole("heading", { name: "Dashboard", level: 1 }).waitFor();
  await page.getByRole("link", { name: "Administration" }).click();
  await section(page, "API keys");
  await page.locator("tr[data-api-key-id]").first().waitFor();
  if ((await page.locator("[data-secret]").count()) !== 0 || (await page.content()).includes(key)) throw new Error("the API key is shown again");
  pass("after leaving the page and coming back, the key is not shown again");

  // Revoked after a confirmation, it is refused within seconds.
  await page.getByRole("button", { name: "Revoke browser key" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Revoke the key" }).click();
  await page.locator('tr[data-api-key-id][data-state="revoked"]').waitFor({ timeout: 5_000 });
  const revoked = Date.now();
  const refusal = await waitFor(async () => {
    const answer = await send();
    return [401, 403].includes(answer.status) ? answer.status : undefined;
  }, REVOKED_WITHIN_MS, "the revoked key to be refused");
  pass(`the revoked key is refused (${refusal}) ${Date.now() - revoked} ms after revocation`);

  // The colleague's role: a deactivation can be cancelled; a new role reaches ListUsers.
  await section(page, "Users");
  await page.getByRole("button", { name: `Manage ${colleague.email}` }).click();
  await page.getByRole("button", { name: "Deactivate…" }).click();
  await page.getByRole("dialog").waitFor();
  await suite.shoot(page, "admin-confirm");
  await page.keyboard.press("Escape");
  await page.getByRole("dialog").waitFor({ state: "detached" });
  const kept = await suite.rest("GET", "/v1/users", { token: admin.token });
  if (kept.users.find((user) => user.userId === joined.userId)?.deactivateTime) throw new Error("a cancelled deactivation deactivated the user");
  pass("deactivation asks for confirmation, and Escape cancels it");
  await page.getByLabel("Role", { exact: true }).selectOption({ label: "Analyst" });
  await page.getByRole("button", { name: "Change role" }).click();
  await page.locator(`tr[data-user-id="${joined.userId}"][data-role="ANALYST"]`).waitFor({ timeout: 5_000 });
  const after = await suite.rest("GET", "/v1/users", { token: admin.token });
  const role = after.users.find((user) => user.userId === joined.userId)?.role;
  if (role !== "ROLE_ANALYST") throw new Error(`ListUsers reports the colleague as ${role}`);
  pass("the role changed in the console is ROLE_ANALYST in ListUsers");
  await expectUsers(suite, page, admin.token);
  await suite.review(page, "admin");

  // A service account: its secret is shown once, works, and a rotation replaces it.
  await section(page, "Service accounts");
  await page.getByLabel("Name").fill("nightly import");
  await page.getByRole("checkbox", { name: /^read/ }).check();
  await page.getByRole("button", { name: "Create the account" }).click();
  const firstSecret = await page.locator('[data-secret="client-secret"]').inputValue({ timeout: 5_000 });
  const clientId = await page.locator(".panel[data-client-id]").getAttribute("data-client-id");
  const issue = (clientSecret) => suite.raw("POST", "/v1/auth/tokens:issueServiceToken", { body: { clientId, clientSecret } });
  if (!(await issue(firstSecret)).ok) throw new Error("the service account's secret does not issue a token");
  await page.getByRole("button", { name: "Rotate the secret of nightly import" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Rotate the secret" }).click();
  await waitFor(async () => {
    const shown = await page.locator('[data-secret="client-secret"]').inputValue();
    return shown !== firstSecret ? shown : undefined;
  }, 5_000, "the rotated secret");
  const secondSecret = await page.locator('[data-secret="client-secret"]').inputValue();
  await suite.shoot(page, "admin-service-accounts");
  if ((await issue(firstSecret)).ok || !(await issue(secondSecret)).ok) throw new Error("the rotation did not replace the secret");
  const accounts = await suite.rest("GET", "/v1/service-accounts", { token: admin.token });
  const listedAccounts = await page.locator("tr[data-client-id]").evaluateAll((rows) => rows.map((row) => row.dataset.clientId));
  same(listedAccounts, accounts.serviceAccounts.map((account) => account.clientId), "the service accounts", "ListServiceAccounts");
  pass("a service account's secret is shown once and works; its rotation refuses the old one; the list equals ListServiceAccounts");

  // The audit log: ListAuditEvents' first page, newest first, with every action above.
  await section(page, "Audit log");
  await page.locator("tr[data-audit-event-id]").first().waitFor({ timeout: 5_000 });
  const audit = await suite.rest("GET", "/v1/audit-events?pageSize=50", { token: admin.token });
  const rows = await page.locator("tr[data-audit-event-id]").evaluateAll((found) => found.map((row) => [row.dataset.auditEventId, row.dataset.kind]));
  same(rows, audit.auditEvents.map((event) => [event.auditEventId, event.kind.replace(/^AUDIT_EVENT_KIND_/, "")]), "the audit log", "ListAuditEvents");
  const kinds = new Set(rows.map(([, kind]) => kind));
  for (const kind of ["USER_INVITED", "API_KEY_CREATED", "API_KEY_REVOKED", "ROLE_CHANGED", "SERVICE_ACCOUNT_CREATED", "SERVICE_ACCOUNT_SECRET_ROTATED"]) {
    if (!kinds.has(kind)) throw new Error(`the audit log has no ${kind}`);
  }
  pass(`the audit log equals ListAuditEvents' first page (${rows.length} events) and lists the invitation, the key, the role change and the service account`);
  await page.getByLabel("Kind").selectOption({ label: "API key revoked" });
  await page.getByRole("button", { name: "Show" }).click();
  await waitFor(async () => ((await page.locator('tr[data-audit-event-id]:not([data-kind="API_KEY_REVOKED"])').count()) === 0 ? true : undefined), 5_000, "the filtered audit log");
  const filtered = await suite.rest("GET", "/v1/audit-events?pageSize=50&kind=AUDIT_EVENT_KIND_API_KEY_REVOKED", { token: admin.token });
  const filteredRows = await page.locator("tr[data-audit-event-id]").evaluateAll((found) => found.map((row) => row.dataset.auditEventId));
  same(filteredRows, filtered.auditEvents.map((event) => event.auditEventId), "the filtered audit log", "ListAuditEvents by kind");
  pass("filtering the audit log by kind equals ListAuditEvents with that kind");
  await page.getByLabel("Kind").selectOption({ label: "All kinds" });
  await page.getByRole("button", { name: "Show" }).click();
  await page.locator('tr[data-audit-event-id]:not([data-kind="API_KEY_REVOKED"])').first().waitFor({ timeout: 5_000 });
  await suite.review(page, "admin-audit");
  await page.context().close();
}

/** Opens a section of the administration page. */
async function section(page, name) {
  await page.getByRole("navigation", { name: "Administration" }).getByRole("link", { name }).click();
  await page.getByRole("heading", { name, level: 2 }).waitFor();
}

/** The users table equals ListUsers: ids, emails, roles and standing, in order. */
async function expectUsers(suite, page, token) {
  const { users } = await suite.rest("GET", "/v1/users?pageSize=50", { token });
  const expected = users.map((user) => [user.userId, user.email, user.role.replace(/^ROLE_/, ""), user.deactivateTime ? "deactivated" : "active"]);
  const shown = await page
    .locator("tr[data-user-id]")
    .evaluateAll((rows) => rows.map((row) => [row.dataset.userId, row.cells[1]?.textContent, row.dataset.role, row.dataset.state]));
  same(shown, expected, "the users", "ListUsers");
  pass(`the users table equals ListUsers (${shown.length} users)`);
}

function same(shown, expected, what, rpc) {
  if (JSON.stringify(shown) !== JSON.stringify(expected)) throw new Error(`${what} show ${JSON.stringify(shown)}, ${rpc} answers ${JSON.stringify(expected)}`);
}
