// Signed-out pages: sign in, sign up (with an invitation token when the link
// carried one), and Google sign-in when the platform has it configured.
import { auth, keep } from "../api.js";
import { banner, field, h, onSubmit, showError } from "../ui.js";

export function signInPage(): HTMLElement {
  const errors = banner();
  const email = field("Email", "email", { type: "email", autocomplete: "username", required: true });
  const password = field("Password", "password", { type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h("form", { "aria-label": "Sign in", novalidate: true }, email.wrapper, password.wrapper, errors, submit);
  onSubmit(form, errors, submit, async () => {
    const answer = await auth.signIn({ email: email.input.value.trim(), password: password.input.value });
    keep(answer.tokens);
  });
  return h(
    "main",
    { class: "signed-out", id: "main" },
    h("h1", {}, "Sign in to Metrix"),
    form,
    h("p", {}, "No account yet? ", h("a", { href: "#/sign-up" }, "Sign up")),
    googleButton(errors),
  );
}

export function signUpPage(invitationToken?: string): HTMLElement {
  const errors = banner();
  const email = field("Email", "email", { type: "email", autocomplete: "username", required: true });
  const password = field("Password (at least 12 characters)", "password", {
    type: "password",
    autocomplete: "new-password",
    required: true,
    minlength: 12,
  });
  const name = field("Your name", "display_name", { autocomplete: "name" });
  const organization = invitationToken ? undefined : field("Organisation", "organization_name", { autocomplete: "organization" });
  const submit = h("button", { type: "submit", class: "primary" }, invitationToken ? "Accept the invitation" : "Create the account");
  const form = h(
    "form",
    { "aria-label": "Sign up", novalidate: true },
    email.wrapper,
    password.wrapper,
    name.wrapper,
    organization?.wrapper,
    invitationToken && h("div", { class: "field", "data-field": "invitation_token" }, h("p", { class: "field-error", role: "alert" })),
    errors,
    submit,
  );
  onSubmit(form, errors, submit, async () => {
    const answer = await auth.signUp({
      email: email.input.value.trim(),
      password: password.input.value,
      displayName: name.input.value.trim(),
      organizationName: organization?.input.value.trim() ?? "",
      invitationToken: invitationToken ?? "",
    });
    keep(answer.tokens);
    location.hash = "#/dashboard";
  });
  return h(
    "main",
    { class: "signed-out", id: "main" },
    h("h1", {}, invitationToken ? "Join your team on Metrix" : "Create your Metrix account"),
    form,
    h("p", {}, "Already have an account? ", h("a", { href: "#/" }, "Sign in")),
  );
}

// Google sign-in with PKCE: the verifier is made here and kept in this tab's
// sessionStorage until Google sends the browser back to /#/oauth?code=…&state=….
const VERIFIER_KEY = "metrix.pkce";

function googleButton(errors: HTMLElement): HTMLElement {
  const button = h("button", { type: "button", class: "secondary", hidden: true }, "Sign in with Google");
  button.addEventListener("click", () => {
    void (async () => {
      try {
        const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
        const challenge = base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
        const answer = await auth.getAuthUrl({ codeChallenge: challenge, redirectUri: `${location.origin}/` });
        sessionStorage.setItem(VERIFIER_KEY, JSON.stringify({ verifier, state: answer.state }));
        location.assign(answer.authorizationUrl);
      } catch (error) {
        showError(error, errors);
      }
    })();
  });
  // Shown only when the platform answers GetAuthUrl (Google configured).
  void (async () => {
    try {
      const probe = base64url(crypto.getRandomValues(new Uint8Array(32)));
      await auth.getAuthUrl({ codeChallenge: base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(probe)))) });
      button.hidden = false;
    } catch {
      button.hidden = true;
    }
  })();
  return button;
}

/** Finishes the Google sign-in this tab started, from the query Google sent back. */
export async function finishGoogleSignIn(parameters: URLSearchParams): Promise<void> {
  const kept = sessionStorage.getItem(VERIFIER_KEY);
  sessionStorage.removeItem(VERIFIER_KEY);
  if (!kept) throw new Error("This sign-in was not started in this tab; start it again.");
  const { verifier, state } = JSON.parse(kept) as { verifier: string; state: string };
  if (parameters.get("state") !== state) throw new Error("The sign-in answer does not match the one this tab started.");
  const answer = await auth.handleOAuthCallback({
    code: parameters.get("code") ?? "",
    state,
    codeVerifier: verifier,
  });
  keep(answer.tokens);
}

function base64url(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
