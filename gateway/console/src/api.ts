// The console's one way to the platform: Connect-ES clients over grpc-web,
// generated from proto/, through the gateway that served this page.
//
// Tokens: the access token lives in this module's memory only; the refresh
// token in sessionStorage (this tab only, gone with the tab; never
// localStorage), so a reload keeps the session and another tab or a later
// visit does not. The access token is renewed a minute before it expires.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { AuthService, type TokenPair, type User, type Organization } from "./gen/metrix/auth/v1/auth_pb.js";
import { MetricsService } from "./gen/metrix/metrics/v1/metrics_pb.js";
import { BenchmarkService } from "./gen/metrix/benchmark/v1/benchmark_pb.js";
import { BadRequestSchema } from "./gen/google/rpc/error_details_pb.js";

const REFRESH_KEY = "metrix.refresh";
const RENEW_BEFORE_MS = 60_000;

interface Session {
  accessToken: string;
  refreshToken: string;
  accessExpireMs: number;
}

let session: Session | undefined;
let renewTimer: number | undefined;
let renewing: Promise<boolean> | undefined;
const listeners = new Set<(signedIn: boolean) => void>();

const withToken: Interceptor = (next) => async (request) => {
  if (session) request.header.set("authorization", `Bearer ${session.accessToken}`);
  return next(request);
};

const transport = createGrpcWebTransport({
  baseUrl: location.origin,
  interceptors: [withToken],
});

export const auth: Client<typeof AuthService> = createClient(AuthService, transport);
export const metrics: Client<typeof MetricsService> = createClient(MetricsService, transport);
export const benchmark: Client<typeof BenchmarkService> = createClient(BenchmarkService, transport);

/** Calls `listener` whenever the console signs in or out. */
export function onSessionChange(listener: (signedIn: boolean) => void): void {
  listeners.add(listener);
}

export function signedIn(): boolean {
  return session !== undefined;
}

/** The access token, for the few downloads made with fetch (report files). */
export function accessToken(): string | undefined {
  return session?.accessToken;
}

/** Keeps a token pair from SignIn, SignUp or RefreshToken. */
export function keep(tokens: TokenPair | undefined): void {
  if (!tokens) throw new Error("the answer held no tokens");
  const wasSignedIn = session !== undefined;
  session = {
    accessToken: tokens.accessToken,
    refreshToken: tokens.refreshToken,
    accessExpireMs: tokens.accessTokenExpireTime ? timestampMs(tokens.accessTokenExpireTime) : Date.now() + 300_000,
  };
  sessionStorage.setItem(REFRESH_KEY, tokens.refreshToken);
  window.clearTimeout(renewTimer);
  const wait = Math.max(5_000, session.accessExpireMs - Date.now() - RENEW_BEFORE_MS);
  renewTimer = window.setTimeout(() => void renew(), wait);
  if (!wasSignedIn) listeners.forEach((listener) => listener(true));
}

function forget(): void {
  const wasSignedIn = session !== undefined;
  session = undefined;
  window.clearTimeout(renewTimer);
  sessionStorage.removeItem(REFRESH_KEY);
  if (wasSignedIn) listeners.forEach((listener) => listener(false));
}

/** Exchanges the refresh token for a new pair; false (and signed out) when refused. */
export function renew(): Promise<boolean> {
  const refreshToken = session?.refreshToken ?? sessionStorage.getItem(REFRESH_KEY);
  if (!refreshToken) return Promise.resolve(false);
  renewing ??= auth
    .refreshToken({ refreshToken })
    .then((answer) => {
      keep(answer.tokens);
      return true;
    })
    .catch((error: unknown) => {
      // A refusal of the token ends the session; anything else (the platform
      // unreachable, a rate limit) keeps it for the next attempt.
      const refused =
        error instanceof ConnectError && [Code.Unauthenticated, Code.InvalidArgument, Code.NotFound, Code.PermissionDenied].includes(error.code);
      if (refused) forget();
      else renewTimer = window.setTimeout(() => void renew(), 10_000);
      return false;
    })
    .finally(() => {
      renewing = undefined;
    });
  return renewing;
}

/** Signs out: the session is revoked by auth, then forgotten here. */
export async function signOut(): Promise<void> {
  const refreshToken = session?.refreshToken;
  try {
    if (refreshToken) await auth.signOut({ refreshToken });
  } finally {
    forget();
  }
}

/** Runs `call`; when the access token was refused, renews once and retries. */
export async function withRenewal<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof ConnectError && error.code === Code.Unauthenticated && (await renew())) {
      return call();
    }
    throw error;
  }
}

export interface Me {
  user: User;
  organization: Organization | undefined;
}

let me: Me | undefined;

/** The signed-in user and organisation (GetCurrentUser), read once per session. */
export async function currentUser(): Promise<Me> {
  if (me) return me;
  const answer = await withRenewal(() => auth.getCurrentUser({}));
  if (!answer.user) throw new Error("the answer held no user");
  me = { user: answer.user, organization: answer.organization };
  return me;
}

onSessionChange(() => {
  me = undefined;
});

/** A field violation: the field named as the contract names it, and why. */
export interface Violation {
  field: string;
  description: string;
}

/** The words of an error, and its field violations when the API named fields. */
export function describe(error: unknown): { message: string; violations: Violation[] } {
  if (error instanceof ConnectError) {
    const violations = error
      .findDetails(BadRequestSchema)
      .flatMap((detail) => detail.fieldViolations.map(({ field, description }) => ({ field, description })));
    const message = (() => {
      switch (error.code) {
        case Code.Unavailable:
          return "The platform cannot be reached right now; try again in a moment.";
        case Code.Unauthenticated:
          return error.rawMessage || "Your session has ended; sign in again.";
        case Code.PermissionDenied:
          return error.rawMessage || "Your role does not allow this.";
        default:
          return error.rawMessage || Code[error.code];
      }
    })();
    return { message, violations };
  }
  return { message: error instanceof Error ? error.message : String(error), violations: [] };
}
