// Administration (ADMIN only; the shell hides the page from everyone else):
// users and roles, invitations, API keys, service accounts and the audit log,
// one section at a time (#/admin?section=…). Secrets (invitation links, API
// keys, client secrets) live only in the section that received them: leaving
// it redraws the page without them, and the API never returns them again.
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { auth, currentUser, withRenewal } from "../api.js";
import { AuditEventKind, Role, type ApiKey, type AuditEvent, type ServiceAccount, type User } from "../gen/metrix/auth/v1/auth_pb.js";
import { append, banner, clearErrors, dateTime, field, h, notify, replace, showError } from "../ui.js";
import type { View } from "../view.js";

const SECTIONS: [string, string, (body: HTMLElement) => void][] = [
  ["users", "Users", usersSection],
  ["invitations", "Invitations", invitationsSection],
  ["api-keys", "API keys", apiKeysSection],
  ["service-accounts", "Service accounts", serviceAccountsSection],
  ["audit", "Audit log", auditSection],
];

/** The organisation scopes the contract lets an admin grant, and what each allows. */
const SCOPES: [string, string][] = [
  ["events:write", "send events"],
  ["events:forward", "state the users' address and user agent on the events a server forwards"],
  ["metrics:write", "record KPIs, data points and company facts"],
  ["read", "read metrics, events and benchmarks"],
];

const GRANTABLE_ROLES = [Role.COMPANY_USER, Role.ANALYST, Role.ADMIN];
const PAGE_SIZE = 50;

export const adminView: View = (main, parameters) => {
  const wanted = parameters.get("section");
  const section = SECTIONS.find(([candidate]) => candidate === wanted) ?? SECTIONS[0];
  if (!section) return;
  const [path, title, draw] = section;
  const body = h(
    "section",
    { class: "admin-section", "data-admin-section": path, "aria-labelledby": "admin-section-title" },
    h("h2", { id: "admin-section-title" }, title),
  );
  replace(
    main,
    h("h1", {}, "Administration"),
    h(
      "nav",
      { class: "subnav", "aria-label": "Administration" },
      h(
        "ul",
        {},
        ...SECTIONS.map(([candidate, label]) =>
          h("li", {}, h("a", { href: `#/admin?section=${candidate}`, "aria-current": candidate === path ? "page" : undefined }, label)),
        ),
      ),
    ),
    body,
  );
  draw(body);
};

// ---- Users and roles

function usersSection(body: HTMLElement): void {
  const errors = banner();
  const detail = h("div", { class: "panel user-detail", hidden: true });
  const table = pagedTable<User>({
    label: "Users",
    columns: ["Name", "Email", "Role", "Sign-in", "Created (UTC)", "Last sign-in (UTC)", "Status", "Actions"],
    load: async (pageToken) => {
      const answer = await withRenewal(() => auth.listUsers({ pageSize: PAGE_SIZE, pageToken }));
      return { items: answer.users, next: answer.nextPageToken };
    },
    row: userRow,
    empty: "No user yet: invite your colleagues from Invitations.",
    errors,
  });
  append(body, errors, table.element, detail);

  function userRow(user: User): HTMLTableRowElement {
    const manage = h("button", { type: "button", "aria-label": `Manage ${user.email}` }, "Manage");
    const tr = h(
      "tr",
      { "data-user-id": user.userId, "data-role": Role[user.role], "data-state": user.deactivateTime ? "deactivated" : "active" },
      h("td", {}, user.displayName),
      h("td", {}, user.email),
      h("td", {}, roleName(user.role)),
      h("td", {}, user.signInMethods.join(", ")),
      h("td", { class: "time" }, when(user.createTime)),
      h("td", { class: "time" }, when(user.lastSignInTime)),
      h("td", {}, user.deactivateTime ? `Deactivated ${when(user.deactivateTime)}` : "Active"),
      h("td", {}, manage),
    );
    manage.addEventListener("click", () => void manageUser(user, tr));
    return tr;
  }

  // The role form and deactivation live in a panel under the table, so
  // each error is shown beside the control that caused it.
  async function manageUser(user: User, tr: HTMLTableRowElement): Promise<HTMLElement> {
    const me = await currentUser();
    const errors = banner();
    const role = roleSelect("Role", user.role);
    const heading = h("h3", { tabindex: -1 }, `Manage ${user.displayName || user.email}`);
    const deactivate = h("button", { type: "button", class: "danger" }, "Deactivate…");
    const form = h(
      "form",
      { "aria-label": `Role of ${user.email}` },
      role.wrapper,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Change role")),
    );
    const closed = user.deactivateTime !== undefined;
    replace(
      detail,
      heading,
      h("p", { class: "muted" }, user.email),
      closed ? h("p", {}, `Deactivated ${when(user.deactivateTime)}: the role of a deactivated user cannot change.`) : form,
      !closed && user.userId === me.user.userId && h("p", { class: "muted" }, "You cannot deactivate yourself; another admin can."),
      errors,
      h(
        "div",
        { class: "actions" },
        !closed && user.userId !== me.user.userId && deactivate,
        h("button", { type: "button", onclick: () => (detail.hidden = true) }, "Close"),
      ),
    );
    detail.hidden = false;
    heading.focus();

    // The row and the panel are redrawn from the API's answer.
    async function update(changed: User, message: string): Promise<void> {
      const next = userRow(changed);
      tr.replaceWith(next);
      notify(await manageUser(changed, next), message);
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const chosen = Number(role.select.value) as Role;
      const demotion = user.role === Role.ADMIN && chosen !== Role.ADMIN;
      const confirmation = {
        question: `Make ${user.email} ${roleName(chosen).toLowerCase()}?`,
        consequence: "They lose their admin rights at once.",
        verb: "Change role",
      };
      void act(errors, form, demotion ? confirmation : undefined, async () => {
        const answer = await withRenewal(() => auth.updateUserRole({ userId: user.userId, role: chosen }));
        if (answer.user) await update(answer.user, `${answer.user.email} is now ${roleName(answer.user.role).toLowerCase()}.`);
      });
    });
    deactivate.addEventListener("click", () => {
      const confirmation = {
        question: `Deactivate ${user.email}?`,
        consequence: "Every session of theirs ends, the API keys they created are revoked, and they can no longer sign in. The account and its audit trail are kept.",
        verb: "Deactivate",
      };
      void act(errors, form, confirmation, async () => {
        const answer = await withRenewal(() => auth.deactivateUser({ userId: user.userId }));
        if (answer.user)
          await update(answer.user, `${answer.user.email} is deactivated. Sessions ended: ${answer.revokedSessionCount}; API keys revoked: ${answer.revokedApiKeys.length}.`);
      });
    });
    return errors;
  }
}

// ---- Invitations

function invitationsSection(body: HTMLElement): void {
  const errors = banner();
  const email = field("Email", "email", { type: "email", autocomplete: "off", required: true });
  const role = roleSelect("Role", Role.COMPANY_USER);
  const form = h(
    "form",
    { class: "filters", "aria-label": "Invite a user" },
    email.wrapper,
    role.wrapper,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Invite")),
  );
  const sent = h(
    "div",
    { class: "invitations" },
    h("p", { class: "empty" }, "No invitation sent from this page yet: enter a colleague's email and role above to get a link to send them."),
  );
  append(
    body,
    h("p", {}, "An invitation is a one-time link, shown only here and only once: send it to the invitee, who signs up with the invited email and joins with the chosen role."),
    form,
    errors,
    sent,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearErrors(errors, form);
    void (async () => {
      try {
        const answer = await withRenewal(() => auth.inviteUser({ email: email.input.value.trim(), role: Number(role.select.value) as Role }));
        const invitation = answer.invitation;
        const link = `${location.origin}/#/invite/${encodeURIComponent(answer.invitationToken)}`;
        const granted = roleName(invitation?.role ?? Role.UNSPECIFIED).toLowerCase();
        sent.querySelector(".empty")?.remove();
        sent.prepend(
          h(
            "div",
            { class: "panel", "data-invitation-id": invitation?.invitationId },
            h("p", {}, h("strong", {}, invitation?.email), ` as ${granted}, valid until ${when(invitation?.expireTime)}`),
            secretBox(`Invitation link for ${invitation?.email ?? ""}`, link, "invitation"),
          ),
        );
        form.reset();
      } catch (error) {
        showError(error, errors, form);
      }
    })();
  });
}

// ---- API keys

function apiKeysSection(body: HTMLElement): void {
  const errors = banner();
  const name = field("Name", "display_name", { autocomplete: "off", required: true, maxlength: 100 });
  const scopes = scopesField();
  const expires = field("Expires (UTC, optional)", "expire_time", { type: "datetime-local" });
  const form = h(
    "form",
    { "aria-label": "Create an API key" },
    name.wrapper,
    scopes.wrapper,
    expires.wrapper,
    errors,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create the key")),
  );
  const created = h("div", { "aria-live": "polite" });
  const table = pagedTable<ApiKey>({
    label: "API keys",
    columns: ["Name", "Prefix", "Scopes", "Created (UTC)", "Expires (UTC)", "Last used (UTC)", "Status", "Actions"],
    load: async (pageToken) => {
      const answer = await withRenewal(() => auth.listApiKeys({ pageSize: PAGE_SIZE, pageToken }));
      return { items: answer.apiKeys, next: answer.nextPageToken };
    },
    row: keyRow,
    empty: "No API key yet. Create one above to send events or read data without signing in.",
    errors,
  });
  append(body, h("div", { class: "panel" }, h("h3", {}, "New API key"), form, created), table.element);

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearErrors(errors, form);
    replace(created);
    void (async () => {
      try {
        const expiry = expires.input.value;
        const answer = await withRenewal(() =>
          auth.createApiKey({
            displayName: name.input.value.trim(),
            scopes: scopes.chosen(),
            expireTime: expiry ? timestampFromDate(new Date(`${expiry}Z`)) : undefined,
          }),
        );
        form.reset();
        replace(
          created,
          secretBox(`API key "${answer.apiKey?.displayName ?? ""}" (for the x-api-key header)`, answer.key, "api-key"),
        );
        table.reload();
      } catch (error) {
        showError(error, errors, form);
      }
    })();
  });

  function keyRow(key: ApiKey): HTMLTableRowElement {
    const revoke = h("button", { type: "button", class: "danger", "aria-label": `Revoke ${key.displayName}` }, "Revoke…");
    const tr = h(
      "tr",
      { "data-api-key-id": key.apiKeyId, "data-state": key.revokeTime ? "revoked" : "active" },
      h("td", {}, key.displayName),
      h("td", {}, h("code", {}, key.prefix)),
      h("td", {}, key.scopes.join(", ")),
      h("td", { class: "time" }, when(key.createTime)),
      h("td", { class: "time" }, key.expireTime ? when(key.expireTime) : "Never"),
      h("td", { class: "time" }, when(key.lastUseTime)),
      h("td", {}, key.revokeTime ? `Revoked ${when(key.revokeTime)}` : "Active"),
      h("td", {}, !key.revokeTime && revoke),
    );
    revoke.addEventListener("click", () => {
      const confirmation = {
        question: `Revoke the API key "${key.displayName}"?`,
        consequence: `Every call made with ${key.prefix}… is refused from now on. This cannot be undone.`,
        verb: "Revoke the key",
      };
      void act(table.errors, undefined, confirmation, async () => {
        const answer = await withRenewal(() => auth.revokeApiKey({ apiKeyId: key.apiKeyId }));
        if (answer.apiKey) tr.replaceWith(keyRow(answer.apiKey));
        notify(table.errors, `The API key "${key.displayName}" is revoked.`);
      });
    });
    return tr;
  }
}

// ---- Service accounts

function serviceAccountsSection(body: HTMLElement): void {
  const errors = banner();
  const name = field("Name", "display_name", { autocomplete: "off", required: true, maxlength: 100 });
  const scopes = scopesField();
  const form = h(
    "form",
    { "aria-label": "Create a service account" },
    name.wrapper,
    scopes.wrapper,
    errors,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create the account")),
  );
  const secret = h("div", { "aria-live": "polite" });
  const table = pagedTable<ServiceAccount>({
    label: "Service accounts",
    columns: ["Name", "Client id", "Scopes", "Created (UTC)", "Secret rotated (UTC)", "Status", "Actions"],
    load: async (pageToken) => {
      const answer = await withRenewal(() => auth.listServiceAccounts({ pageSize: PAGE_SIZE, pageToken }));
      return { items: answer.serviceAccounts, next: answer.nextPageToken };
    },
    row: accountRow,
    empty: "No service account yet. Create one above for a program that signs in with its own client id and secret.",
    errors,
  });
  append(
    body,
    h(
      "div",
      { class: "panel" },
      h("h3", {}, "New service account"),
      h("p", { class: "muted" }, "A service account gets short-lived tokens from its client id and secret (POST /v1/auth/tokens:issueServiceToken)."),
      form,
    ),
    secret,
    table.element,
  );

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearErrors(errors, form);
    replace(secret);
    void (async () => {
      try {
        const answer = await withRenewal(() => auth.createServiceAccount({ displayName: name.input.value.trim(), scopes: scopes.chosen() }));
        form.reset();
        showSecret(answer.serviceAccount, answer.clientSecret);
        table.reload();
      } catch (error) {
        showError(error, errors, form);
      }
    })();
  });

  function showSecret(account: ServiceAccount | undefined, clientSecret: string): void {
    replace(
      secret,
      h(
        "div",
        { class: "panel", "data-client-id": account?.clientId },
        h("p", {}, "Client id of ", h("strong", {}, account?.displayName), ": ", h("code", {}, account?.clientId)),
        secretBox(`Client secret of "${account?.displayName ?? ""}"`, clientSecret, "client-secret"),
      ),
    );
  }

  function accountRow(account: ServiceAccount): HTMLTableRowElement {
    const rotate = h("button", { type: "button", "aria-label": `Rotate the secret of ${account.displayName}` }, "Rotate secret…");
    const revoke = h("button", { type: "button", class: "danger", "aria-label": `Revoke ${account.displayName}` }, "Revoke…");
    const tr = h(
      "tr",
      { "data-client-id": account.clientId, "data-state": account.revokeTime ? "revoked" : "active" },
      h("td", {}, account.displayName),
      h("td", {}, h("code", {}, account.clientId)),
      h("td", {}, account.scopes.join(", ")),
      h("td", { class: "time" }, when(account.createTime)),
      h("td", { class: "time" }, when(account.secretRotateTime)),
      h("td", {}, account.revokeTime ? `Revoked ${when(account.revokeTime)}` : "Active"),
      h("td", {}, !account.revokeTime && h("div", { class: "row-actions" }, rotate, revoke)),
    );
    rotate.addEventListener("click", () => {
      const confirmation = {
        question: `Rotate the secret of "${account.displayName}"?`,
        consequence: "The current secret and the tokens issued with it stop working at once: deploy the new secret to the service.",
        verb: "Rotate the secret",
      };
      void act(table.errors, undefined, confirmation, async () => {
        const answer = await withRenewal(() => auth.rotateServiceAccountSecret({ clientId: account.clientId }));
        if (answer.serviceAccount) tr.replaceWith(accountRow(answer.serviceAccount));
        showSecret(answer.serviceAccount, answer.clientSecret);
      });
    });
    revoke.addEventListener("click", () => {
      const confirmation = {
        question: `Revoke the service account "${account.displayName}"?`,
        consequence: "It can no longer obtain tokens, and the tokens it holds are refused. This cannot be undone.",
        verb: "Revoke the account",
      };
      void act(table.errors, undefined, confirmation, async () => {
        const answer = await withRenewal(() => auth.revokeServiceAccount({ clientId: account.clientId }));
        if (answer.serviceAccount) tr.replaceWith(accountRow(answer.serviceAccount));
        notify(table.errors, `The service account "${account.displayName}" is revoked.`);
      });
    });
    return tr;
  }
}

// ---- Audit log

function auditSection(body: HTMLElement): void {
  const errors = banner();
  const kinds = Object.values(AuditEventKind).filter((value): value is AuditEventKind => typeof value === "number" && value !== AuditEventKind.UNSPECIFIED);
  const kind = h(
    "select",
    { id: "audit-kind", name: "kind", "aria-describedby": "audit-kind-error" },
    h("option", { value: "0" }, "All kinds"),
    ...kinds.map((value) => h("option", { value }, words(AuditEventKind[value]))),
  );
  const form = h(
    "form",
    { class: "filters", "aria-label": "Audit log filters" },
    h("div", { class: "field", "data-field": "kind" }, h("label", { for: "audit-kind" }, "Kind"), kind, h("p", { class: "field-error", id: "audit-kind-error", role: "alert" })),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Show")),
  );
  // The kind of the pages shown: "Next page" continues them even if the select changed since.
  let chosen = AuditEventKind.UNSPECIFIED;
  // Actors and subjects are ids; the organisation's users are named by email.
  const emails = new Map<string, string>();
  const named = withRenewal(() => auth.listUsers({ pageSize: 200 })).then(
    (answer) => answer.users.forEach((user) => emails.set(user.userId, user.email)),
    () => undefined,
  );
  const table = pagedTable<AuditEvent>({
    label: "Audit events, newest first",
    columns: ["Time (UTC)", "Kind", "Actor", "Subject", "Details", "From"],
    load: async (pageToken) => {
      const [answer] = await Promise.all([withRenewal(() => auth.listAuditEvents({ pageSize: PAGE_SIZE, pageToken, kind: chosen })), named]);
      return { items: answer.auditEvents, next: answer.nextPageToken };
    },
    row: (event) =>
      h(
        "tr",
        { "data-audit-event-id": event.auditEventId, "data-kind": AuditEventKind[event.kind] },
        h("td", { class: "time" }, when(event.createTime)),
        h("td", {}, words(AuditEventKind[event.kind])),
        h("td", {}, who(event.actorId)),
        h("td", {}, who(event.subjectId)),
        h(
          "td",
          {},
          Object.entries(event.details)
            .sort(([a], [b]) => a.localeCompare(b))
            .map(([name, value]) => `${name}: ${value}`)
            .join(", "),
        ),
        h("td", {}, event.ipAddress, event.userAgent && h("span", { class: "muted user-agent", title: event.userAgent }, event.userAgent)),
      ),
    empty: "No event of this kind yet; choose All kinds to see every event.",
    errors,
    form,
  });
  append(body, h("p", {}, "Security events of the organisation: sign-ins, role changes, invitations, keys and service accounts."), form, errors, table.element);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    chosen = Number(kind.value) as AuditEventKind;
    table.reload();
  });

  function who(id: string): HTMLElement | string {
    if (!id) return "—";
    const email = emails.get(id);
    return email ? h("span", { title: id }, email) : h("code", {}, id);
  }
}

// ---- Shared pieces

interface Listing<T> {
  items: T[];
  next: string;
}

/**
 * A table read page by page ("Next page" appends to it), in a container that
 * scrolls sideways on a narrow screen, or what to do next when it is empty.
 */
function pagedTable<T>(options: {
  label: string;
  columns: string[];
  load: (pageToken: string) => Promise<Listing<T>>;
  row: (item: T) => HTMLTableRowElement;
  empty: string;
  errors: HTMLElement;
  form?: HTMLElement;
}): { element: HTMLElement; reload: () => void; errors: HTMLElement } {
  const holder = h("div", { class: "table-scroll", role: "region", "aria-label": options.label, tabindex: 0 });
  const more = h("button", { type: "button", hidden: true }, "Next page");
  const rowErrors = banner();
  let pageToken = "";
  async function read(next: boolean): Promise<void> {
    clearErrors(options.errors, options.form);
    try {
      const page = await options.load(next ? pageToken : "");
      pageToken = page.next;
      more.hidden = pageToken === "";
      const rows = page.items.map(options.row);
      const tbody = holder.querySelector("tbody");
      if (next && tbody) tbody.append(...rows);
      else
        replace(
          holder,
          rows.length === 0
            ? h("p", { class: "empty" }, options.empty)
            : h(
                "table",
                { class: "data" },
                h("caption", { class: "visually-hidden" }, options.label),
                h("thead", {}, h("tr", {}, ...options.columns.map((title) => h("th", { scope: "col" }, title)))),
                h("tbody", {}, ...rows),
              ),
        );
    } catch (error) {
      showError(error, options.errors, options.form);
    }
  }
  more.addEventListener("click", () => void read(true));
  void read(false);
  // A row's action reports in its own banner, right above the table.
  return { element: h("div", {}, rowErrors, holder, more), reload: () => void read(false), errors: rowErrors };
}

/** What a destructive action asks before it runs. */
interface Confirmation {
  question: string;
  consequence: string;
  verb: string;
}

/**
 * Runs `action`, once the admin confirmed it in a modal dialog when it asks
 * for a `confirmation` (Escape or Cancel change nothing), and shows its error
 * in `errors` (field violations under the fields of `form`).
 */
async function act(errors: HTMLElement, form: HTMLElement | undefined, confirmation: Confirmation | undefined, action: () => Promise<void>): Promise<void> {
  clearErrors(errors, form);
  if (confirmation && !(await confirmed(confirmation))) return;
  try {
    await action();
  } catch (error) {
    showError(error, errors, form);
  }
}

function confirmed({ question, consequence, verb }: Confirmation): Promise<boolean> {
  const opener = document.activeElement instanceof HTMLElement ? document.activeElement : undefined;
  const dialog = h(
    "dialog",
    { class: "confirm", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" },
    h(
      "form",
      { method: "dialog" },
      h("h2", { id: "confirm-title" }, question),
      h("p", { id: "confirm-text" }, consequence),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "danger", value: "yes" }, verb),
        h("button", { type: "submit", value: "no", autofocus: true }, "Cancel"),
      ),
    ),
  );
  // Inside the page's main, so leaving the page takes the dialog with it.
  (document.getElementById("main") ?? document.body).append(dialog);
  dialog.showModal();
  return new Promise((resolve) =>
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "yes");
      dialog.remove();
      if (opener?.isConnected) opener.focus();
    }),
  );
}

let idCounter = 0;

/**
 * A secret shown once: a read-only field holding it (select and copy by hand
 * wherever the clipboard is refused) and a copy button.
 */
function secretBox(label: string, value: string, kind: string): HTMLElement {
  const id = `secret-${++idCounter}`;
  const input = h("input", { id, value, readonly: true, spellcheck: "false", autocomplete: "off", "data-secret": kind });
  const status = h("p", { class: "muted", role: "status" });
  const copy = h("button", { type: "button" }, "Copy");
  copy.addEventListener("click", () => {
    Promise.resolve()
      .then(() => navigator.clipboard.writeText(value))
      .then(
        () => (status.textContent = "Copied to the clipboard."),
        () => {
          input.select();
          status.textContent = "The browser refused the clipboard: the text is selected, copy it with Ctrl+C (⌘C on a Mac).";
        },
      );
  });
  return h(
    "div",
    { class: "secret" },
    h("label", { for: id }, label),
    h("div", { class: "secret-row" }, input, copy),
    h("p", { class: "warning" }, "Shown only this once: copy it now. Once you leave this page it cannot be shown again."),
    status,
  );
}

/** The scopes as checkboxes, in the wrapper their violations land in. */
function scopesField(): { wrapper: HTMLElement; chosen: () => string[] } {
  const id = `scopes-${++idCounter}`;
  const boxes = SCOPES.map(([scope]) => h("input", { type: "checkbox", name: "scopes", value: scope }));
  const wrapper = h(
    "div",
    { class: "field", "data-field": "scopes" },
    h(
      "fieldset",
      { "aria-describedby": `${id}-error` },
      h("legend", {}, "Scopes"),
      ...SCOPES.map(([scope, meaning], index) => h("label", { class: "check" }, boxes[index], h("span", {}, h("code", {}, scope), `: ${meaning}`))),
    ),
    h("p", { class: "field-error", id: `${id}-error`, role: "alert" }),
  );
  return { wrapper, chosen: () => boxes.filter((box) => box.checked).map((box) => box.value) };
}

/** A labelled role select in the wrapper a `role` violation lands in. */
function roleSelect(label: string, current: Role): { wrapper: HTMLElement; select: HTMLSelectElement } {
  const id = `role-${++idCounter}`;
  const select = h(
    "select",
    { id, name: "role", "aria-describedby": `${id}-error` },
    ...GRANTABLE_ROLES.map((role) => h("option", { value: role, selected: role === current }, roleName(role))),
  );
  const wrapper = h(
    "div",
    { class: "field", "data-field": "role" },
    h("label", { for: id }, label),
    select,
    h("p", { class: "field-error", id: `${id}-error`, role: "alert" }),
  );
  return { wrapper, select };
}

function roleName(role: Role): string {
  return words(Role[role]);
}

/** An enum value's name in words: `API_KEY_CREATED` → "API key created". */
function words(name: string | undefined): string {
  const text = (name ?? "").toLowerCase().replaceAll("_", " ").replace(/\bapi\b/, "API");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function when(time: Timestamp | undefined): string {
  return dateTime(time ? timestampDate(time) : undefined);
}
