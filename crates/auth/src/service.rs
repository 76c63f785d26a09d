//! The gRPC face of the auth service: requests are parsed into domain types
//! here, permissions are checked here, and errors become statuses here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use ipnet::IpNet;
use metrix_core::authn::{Credential, Principal, Role, Scope, TokenError, TokenVerifier, identity, principal};
use metrix_core::cache::Cache;
use metrix_core::client::{ClientInfo, client_info};
use metrix_core::error::FieldViolation;
use metrix_core::page_token::{self, PageLimits};
use metrix_core::server::answer;
use metrix_core::time::{duration_micros, micros_of, now_micros, timestamp};
use metrix_proto::auth::v1::auth_service_server::AuthService;
use metrix_proto::auth::v1::*;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use crate::audit::{self, AuditEntry};
use crate::domain::{DisplayName, Email, NewPassword};
use crate::error::AuthError;
use crate::keys::KeyRing;
use crate::oauth::{Identity, OidcProvider};
use crate::passwords;
use crate::revocations::Revocations;
use crate::secrets::{constant_time_eq, digest, pkce_challenge, random_token};
use crate::store::{ApiKeyRow, AuthStore, Cursor, NewUser, RefreshRow, RevocationRow, ServiceAccountRow, UserRow};
use crate::throttle::Throttle;
use crate::tokens::{REFRESH_TOKEN_PREFIX, Subject, TokenIssuer, open_answer, seal_answer};

/// How long an OAuth `state` is remembered.
const OAUTH_STATE_TTL: Duration = Duration::from_secs(600);
/// How long an invitation is valid.
const INVITATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Signing keys rotate at most this often through the API.
const MIN_ROTATION_INTERVAL: Duration = Duration::from_secs(60);
/// `last_used_at` of an API key is written at most this often.
const API_KEY_TOUCH_INTERVAL: Duration = Duration::from_secs(60);
/// The provider name of Google identities.
const GOOGLE: &str = "google";
/// The channel on which a rotation tells every instance to reload keys.
pub const KEYS_ROTATED_CHANNEL: &str = "auth:keys-rotated";
/// The prefix of service account secrets.
const SERVICE_ACCOUNT_SECRET_PREFIX: &str = "mxs_";

/// What WatchRevocations streams.
pub type RevocationStream = futures::stream::BoxStream<'static, Result<WatchRevocationsResponse, Status>>;

/// Everything the handlers share.
pub struct AuthState {
    pub store: AuthStore,
    pub keys: Arc<KeyRing>,
    pub tokens: TokenIssuer,
    pub verifier: Arc<TokenVerifier>,
    /// What verifiers must refuse before it expires.
    pub revocations: Revocations,
    pub cache: Arc<dyn Cache>,
    pub pubsub: Arc<dyn metrix_core::cache::PubSub>,
    pub throttle: Throttle,
    pub google: Option<OidcProvider>,
    pub trusted_proxies: Vec<IpNet>,
}

/// The `AuthService` implementation.
#[derive(Clone)]
pub struct AuthApi {
    state: Arc<AuthState>,
}

/// What is remembered between GetAuthUrl and the callback, under the state.
#[derive(Serialize, Deserialize)]
struct PendingAuthorization {
    /// The caller's PKCE challenge; the verifier never reaches the server
    /// before the callback.
    code_challenge: String,
    nonce: String,
    redirect_uri: String,
}

impl AuthApi {
    /// Handlers over `state`.
    pub fn new(state: Arc<AuthState>) -> Self {
        Self { state }
    }

    fn client<T>(&self, request: &Request<T>) -> ClientInfo {
        client_info(request, &self.state.trusted_proxies)
    }

    fn require_provider(&self) -> Result<&OidcProvider, AuthError> {
        self.state
            .google
            .as_ref()
            .ok_or(AuthError::FailedPrecondition("google sign-in is not configured"))
    }

    async fn audit(&self, entry: AuditEntry<'_>) -> Result<(), AuthError> {
        audit::record(&self.state.store, entry).await
    }

    /// Applies revocations just committed here and announces them to every
    /// other verifier.
    async fn announce(&self, revocations: &[RevocationRow]) {
        self.state.revocations.announce(&self.state.verifier, revocations).await;
    }

    /// The caller, if they are a person holding one of the `allowed` roles
    /// *now*. The token's role is not trusted for this, not even a current
    /// token's (another instance may not have heard of a change yet): the
    /// user must exist in the token's organisation, be active and hold the
    /// role in the store, and the token's session must be open. So a token
    /// whose authorization was superseded is judged by the store too: a
    /// demoted admin's is PERMISSION_DENIED, a deactivated user's
    /// UNAUTHENTICATED.
    async fn current_user<T>(&self, request: &Request<T>, allowed: &[Role]) -> Result<(Principal, UserRow), Status> {
        let caller = identity(request)?;
        let Credential::AccessToken {
            session_id: Some(session_id),
        } = &caller.credential
        else {
            return Err(Status::permission_denied("your role does not allow this"));
        };
        if !caller.is_user() {
            return Err(Status::permission_denied("your role does not allow this"));
        }
        let user = self
            .state
            .store
            .user_by_id(&caller.subject)
            .await?
            .filter(|user| user.organization_id == caller.organization_id)
            .ok_or(AuthError::Unauthenticated("the account no longer exists"))?;
        if user.deactivated_at.is_some() {
            return Err(AuthError::Unauthenticated("the account is deactivated").into());
        }
        if !self.state.tokens.session_is_open(session_id).await? {
            return Err(AuthError::Unauthenticated("the session was signed out or revoked").into());
        }
        let role: Role = user
            .role
            .parse()
            .map_err(|_| AuthError::Crypto("stored role is unknown"))?;
        if !allowed.contains(&role) {
            return Err(Status::permission_denied("your role does not allow this"));
        }
        let current = Principal { role, ..caller.clone() };
        Ok((current, user))
    }

    /// The caller, if they are an ADMIN of their organisation now.
    async fn current_admin<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        Ok(self.current_user(request, &[Role::Admin]).await?.0)
    }

    /// The caller, if they are an active platform service account holding
    /// `scope` in the store (not only in the token's claims). A superseded
    /// service token (its secret rotated, its account revoked) is refused.
    async fn current_service<T>(&self, request: &Request<T>, scope: Scope) -> Result<Principal, Status> {
        let caller = principal(request)?;
        caller.require_platform_scope(scope)?;
        let account = self
            .state
            .store
            .service_account(&caller.subject)
            .await?
            .filter(|account| account.organization_id == caller.organization_id && account.revoked_at.is_none())
            .ok_or(AuthError::Unauthenticated("the service account was revoked"))?;
        let scopes = Scope::parse_list(&account.scopes).map_err(|_| AuthError::Crypto("stored scopes are unknown"))?;
        if !scopes.contains(&scope) {
            return Err(Status::permission_denied(format!(
                "only platform services with the {} scope may do this",
                scope.as_str()
            )));
        }
        Ok(caller.clone())
    }

    /// What every successful sign-in (or sign-up) does: audit it, note it,
    /// and start a session.
    async fn complete_sign_in(
        &self,
        user: &UserRow,
        kind: AuditEventKind,
        method: &str,
        client: &ClientInfo,
    ) -> Result<TokenPair, AuthError> {
        if user.deactivated_at.is_some() {
            let details = BTreeMap::from([("method", method.to_owned()), ("reason", "deactivated".to_owned())]);
            self.audit(AuditEntry {
                kind: AuditEventKind::SignInFailed,
                organization_id: &user.organization_id,
                actor_id: "",
                subject_id: &user.user_id,
                client,
                details,
            })
            .await?;
            return Err(AuthError::Unauthenticated("this account is deactivated"));
        }
        let details = BTreeMap::from([("method", method.to_owned())]);
        self.audit(AuditEntry {
            kind,
            organization_id: &user.organization_id,
            actor_id: &user.user_id,
            subject_id: &user.user_id,
            client,
            details,
        })
        .await?;
        self.state.store.record_sign_in(&user.user_id).await?;
        self.state.tokens.start_session(user).await
    }

    /// Signs in (or up) the owner of a verified external identity.
    async fn sign_in_with_identity(
        &self,
        identity: Identity,
        client: &ClientInfo,
    ) -> Result<(UserRow, TokenPair, bool), AuthError> {
        let store = &self.state.store;
        let email = Email::parse("id_token", &identity.email)?;
        let (user, new_user) = match store.user_by_identity(GOOGLE, &identity.subject).await? {
            Some(user) => (user, false),
            None => match store.user_by_email(email.as_str()).await? {
                Some(user) if user.password_hash.is_some() => {
                    // Password sign-up does not prove the address, so the
                    // account may belong to whoever typed it first: linking
                    // would hand the provider's (verified) owner an account
                    // someone else can still enter. The owner signs in with
                    // the password instead.
                    tracing::info!(user_id = %user.user_id, "google sign-in refused: a password account holds this email");
                    return Err(AuthError::FailedPrecondition(
                        "an account with this email signs in with a password; sign in with it instead",
                    ));
                }
                Some(user) => {
                    // An account without a password was created through this
                    // provider's verified email (another subject of the same
                    // provider, such as a re-created Google account).
                    store
                        .link_identity(GOOGLE, &identity.subject, &user.user_id, email.as_str())
                        .await?;
                    let linked = store
                        .user_by_id(&user.user_id)
                        .await?
                        .ok_or(AuthError::NotFound("user"))?;
                    (linked, false)
                }
                None => {
                    let display_name = identity.name.clone().unwrap_or_else(|| default_display_name(&email));
                    let organization_name = format!("{display_name}'s organisation");
                    let user = store
                        .create_organization_with_admin(
                            &organization_name,
                            NewUser {
                                email: email.as_str(),
                                display_name: &display_name,
                                password_hash: None,
                                identity: Some((GOOGLE, &identity.subject)),
                            },
                        )
                        .await?;
                    (user, true)
                }
            },
        };
        let kind = if new_user {
            AuditEventKind::SignUp
        } else {
            AuditEventKind::SignInSucceeded
        };
        let tokens = self.complete_sign_in(&user, kind, GOOGLE, client).await?;
        Ok((user, tokens, new_user))
    }

    async fn sign_up(&self, request: Request<SignUpRequest>) -> Result<SignUpResponse, AuthError> {
        let client = self.client(&request);
        let request = request.into_inner();
        let mut violations = Vec::new();
        let email = Email::parse("email", &request.email)
            .map_err(|violation| violations.push(violation))
            .ok();
        let password = NewPassword::parse("password", &request.password)
            .map_err(|violation| violations.push(violation))
            .ok();
        let display_name = if request.display_name.trim().is_empty() {
            None
        } else {
            DisplayName::parse("display_name", &request.display_name)
                .map_err(|violation| violations.push(violation))
                .ok()
        };
        let invited = !request.invitation_token.trim().is_empty();
        let organization_name = if invited {
            None
        } else {
            DisplayName::parse("organization_name", &request.organization_name)
                .map_err(|violation| violations.push(violation))
                .ok()
        };
        let (Some(email), Some(password)) = (email, password) else {
            return Err(violations.into());
        };
        if !violations.is_empty() {
            return Err(violations.into());
        }
        self.state.throttle.check_ip("sign-up", client.ip).await?;
        let display_name = display_name.map_or_else(|| default_display_name(&email), |name| name.as_str().to_owned());
        let password_hash = passwords::hash(SecretString::from(password.expose().to_owned())).await?;
        let new_user = NewUser {
            email: email.as_str(),
            display_name: &display_name,
            password_hash: Some(&password_hash),
            identity: None,
        };
        let user = match organization_name {
            Some(organization_name) => {
                self.state
                    .store
                    .create_organization_with_admin(organization_name.as_str(), new_user)
                    .await?
            }
            None => {
                self.state
                    .store
                    .create_invited_user(&digest(request.invitation_token.trim()), new_user)
                    .await?
            }
        };
        let tokens = self
            .complete_sign_in(&user, AuditEventKind::SignUp, "password", &client)
            .await?;
        Ok(SignUpResponse {
            user: Some(user_to_proto(user)),
            tokens: Some(tokens),
        })
    }

    async fn sign_in(&self, request: Request<SignInRequest>) -> Result<SignInResponse, AuthError> {
        let client = self.client(&request);
        let request = request.into_inner();
        let email = Email::parse("email", &request.email)?;
        if request.password.is_empty() {
            return Err(FieldViolation::new("password", "is required").into());
        }
        let throttle = &self.state.throttle;
        throttle.check_ip("sign-in", client.ip).await?;
        let attempt = throttle.begin_attempt(&email).await?;
        let user = self.state.store.user_by_email(email.as_str()).await?;
        let stored_hash = user.as_ref().and_then(|user| user.password_hash.clone());
        let matches = passwords::verify(SecretString::from(request.password), stored_hash).await?;
        let Some(user) = user.filter(|_| matches) else {
            let lockout = throttle.record_failure(&email, attempt).await?;
            if let Some(user) = self.state.store.user_by_email(email.as_str()).await? {
                let details = BTreeMap::from([("reason", "wrong password".to_owned())]);
                self.audit(AuditEntry {
                    kind: AuditEventKind::SignInFailed,
                    organization_id: &user.organization_id,
                    actor_id: "",
                    subject_id: &user.user_id,
                    client: &client,
                    details,
                })
                .await?;
                if let Some(lockout) = lockout {
                    let details = BTreeMap::from([("lockout_seconds", lockout.as_secs().to_string())]);
                    self.audit(AuditEntry {
                        kind: AuditEventKind::AccountLocked,
                        organization_id: &user.organization_id,
                        actor_id: "",
                        subject_id: &user.user_id,
                        client: &client,
                        details,
                    })
                    .await?;
                }
            }
            return Err(AuthError::Unauthenticated("invalid email or password"));
        };
        throttle.record_success(&email).await?;
        let tokens = self
            .complete_sign_in(&user, AuditEventKind::SignInSucceeded, "password", &client)
            .await?;
        Ok(SignInResponse {
            user: Some(user_to_proto(user)),
            tokens: Some(tokens),
        })
    }

    async fn get_auth_url(&self, request: Request<GetAuthUrlRequest>) -> Result<GetAuthUrlResponse, AuthError> {
        let provider = self.require_provider()?;
        let request = request.into_inner();
        let mut violations = Vec::new();
        let redirect_uri = provider
            .redirect_uri(request.redirect_uri.trim())
            .map_err(|violation| violations.push(violation))
            .ok();
        let code_challenge = request.code_challenge.trim();
        if !is_pkce_challenge(code_challenge) {
            violations.push(FieldViolation::new(
                "code_challenge",
                "must be the base64url S256 challenge (43 characters) of a PKCE verifier",
            ));
        }
        let Some(redirect_uri) = redirect_uri.filter(|_| violations.is_empty()) else {
            return Err(violations.into());
        };
        let state = random_token("");
        let pending = PendingAuthorization {
            code_challenge: code_challenge.to_owned(),
            nonce: random_token(""),
            redirect_uri: redirect_uri.to_string(),
        };
        let url = provider.authorization_url(&redirect_uri, &state, &pending.nonce, &pending.code_challenge);
        let stored = serde_json::to_vec(&pending).expect("pending authorizations serialise");
        self.state
            .cache
            .set(&oauth_state_key(&state), &stored, OAUTH_STATE_TTL)
            .await?;
        Ok(GetAuthUrlResponse {
            authorization_url: url.to_string(),
            state,
            expire_time: Some(timestamp(now_micros() + duration_micros(OAUTH_STATE_TTL))),
        })
    }

    async fn handle_oauth_callback(
        &self,
        request: Request<HandleOAuthCallbackRequest>,
    ) -> Result<HandleOAuthCallbackResponse, AuthError> {
        let client = self.client(&request);
        let request = request.into_inner();
        let provider = self.require_provider()?;
        let mut violations = Vec::new();
        if request.code.trim().is_empty() {
            violations.push(FieldViolation::new("code", "is required"));
        }
        if request.state.trim().is_empty() {
            violations.push(FieldViolation::new("state", "is required"));
        }
        if !is_pkce_verifier(request.code_verifier.trim()) {
            violations.push(FieldViolation::new(
                "code_verifier",
                "must be the PKCE verifier (43 to 128 unreserved characters) given to GetAuthUrl",
            ));
        }
        if !violations.is_empty() {
            return Err(violations.into());
        }
        self.state.throttle.check_ip("oauth", client.ip).await?;
        // Taking the state makes it single-use: a replayed callback finds nothing.
        let pending = self
            .state
            .cache
            .take(&oauth_state_key(request.state.trim()))
            .await?
            .and_then(|bytes| serde_json::from_slice::<PendingAuthorization>(&bytes).ok())
            .ok_or_else(|| {
                AuthError::invalid(FieldViolation::new(
                    "state",
                    "is unknown, used or expired: start the sign-in again",
                ))
            })?;
        let code_verifier = request.code_verifier.trim();
        if !constant_time_eq(&pkce_challenge(code_verifier), &pending.code_challenge) {
            return Err(
                FieldViolation::new("code_verifier", "does not match the challenge given to GetAuthUrl").into(),
            );
        }
        let id_token = provider
            .exchange_code(request.code.trim(), &pending.redirect_uri, code_verifier)
            .await?;
        let identity = provider.verify_id_token(&id_token, Some(&pending.nonce)).await?;
        let (user, tokens, new_user) = self.sign_in_with_identity(identity, &client).await?;
        Ok(HandleOAuthCallbackResponse {
            user: Some(user_to_proto(user)),
            tokens: Some(tokens),
            new_user,
        })
    }

    async fn sign_in_with_id_token(
        &self,
        request: Request<SignInWithIdTokenRequest>,
    ) -> Result<SignInWithIdTokenResponse, AuthError> {
        let client = self.client(&request);
        let request = request.into_inner();
        let provider = self.require_provider()?;
        if request.id_token.trim().is_empty() {
            return Err(FieldViolation::new("id_token", "is required").into());
        }
        self.state.throttle.check_ip("oauth", client.ip).await?;
        let nonce = Some(request.nonce.trim()).filter(|nonce| !nonce.is_empty());
        let identity = provider.verify_id_token(request.id_token.trim(), nonce).await?;
        let (user, tokens, new_user) = self.sign_in_with_identity(identity, &client).await?;
        Ok(SignInWithIdTokenResponse {
            user: Some(user_to_proto(user)),
            tokens: Some(tokens),
            new_user,
        })
    }

    async fn refresh_token(&self, request: Request<RefreshTokenRequest>) -> Result<RefreshTokenResponse, AuthError> {
        let client = self.client(&request);
        let presented = request.into_inner().refresh_token;
        let presented = presented.trim();
        if presented.is_empty() {
            return Err(FieldViolation::new("refresh_token", "is required").into());
        }
        self.state.throttle.check_ip("refresh", client.ip).await?;
        const INVALID: AuthError = AuthError::Unauthenticated("invalid refresh token");
        if !presented.starts_with(REFRESH_TOKEN_PREFIX) {
            return Err(INVALID);
        }
        let store = &self.state.store;
        let spent_hash = digest(presented);
        let row = store.refresh_token(&spent_hash).await?.ok_or(INVALID)?;
        if row.revoked_at.is_some() {
            return Err(AuthError::Unauthenticated("the session was revoked: sign in again"));
        }
        if row.family_expires_at <= now_micros() {
            return Err(AuthError::Unauthenticated("the session expired: sign in again"));
        }
        let user = store.user_by_id(&row.user_id).await?.ok_or(INVALID)?;
        if user.deactivated_at.is_some() {
            return Err(AuthError::Unauthenticated("this account is deactivated"));
        }
        let row = if row.used_at.is_none() {
            let successor = random_token(REFRESH_TOKEN_PREFIX);
            let successor_hash = digest(&successor);
            let tokens = self
                .state
                .tokens
                .pair(&user, &row.family_id, successor, row.family_expires_at)
                .await?;
            let sealed = seal_answer(presented, &tokens)?;
            if store
                .spend_refresh_token(&spent_hash, &row.family_id, &successor_hash, &sealed)
                .await?
            {
                return Ok(RefreshTokenResponse { tokens: Some(tokens) });
            }
            // A concurrent refresh of the same token (two tabs of one
            // browser) spent it first: its answer is this one's too. The
            // pair made here was never handed out and its refresh token
            // never stored.
            store.refresh_token(&spent_hash).await?.ok_or(INVALID)?
        } else {
            row
        };
        if row.revoked_at.is_some() {
            return Err(AuthError::Unauthenticated("the session was revoked: sign in again"));
        }
        if let Some(tokens) = self.retry_answer(&row, presented) {
            return Ok(RefreshTokenResponse { tokens: Some(tokens) });
        }
        // A spent token came back after the grace window, or after the pair
        // it was exchanged for was used: whoever holds it may be an
        // attacker, so the whole session ends, access tokens included.
        self.revoke_reused_family(&row, &client).await?;
        Err(AuthError::Unauthenticated(
            "refresh token reused: the session was revoked, sign in again",
        ))
    }

    /// The pair a spent refresh token was exchanged for, if presenting it
    /// again is a retry: within the grace window, and before that pair's
    /// refresh token was used (a client that lost the answer cannot have).
    fn retry_answer(&self, row: &RefreshRow, presented: &str) -> Option<TokenPair> {
        let used_at = row.used_at?;
        let grace = duration_micros(self.state.tokens.policy.refresh_reuse_grace);
        if now_micros() - used_at > grace || row.successor_used_at.is_some() {
            return None;
        }
        open_answer(presented, row.successor_answer.as_deref()?)
    }

    /// Ends the session of a reused refresh token, announces it and audits it.
    async fn revoke_reused_family(&self, row: &RefreshRow, client: &ClientInfo) -> Result<(), AuthError> {
        let expires_at = self.state.revocations.expires_at();
        let Some(revocation) = self
            .state
            .store
            .revoke_family(&row.family_id, "refresh token reused", expires_at)
            .await?
        else {
            return Ok(());
        };
        self.announce(&[revocation]).await;
        tracing::warn!(organization_id = %row.organization_id, user_id = %row.user_id, family_id = %row.family_id, "refresh token reused, session revoked");
        let details = BTreeMap::from([("family_id", row.family_id.clone())]);
        self.audit(AuditEntry {
            kind: AuditEventKind::RefreshTokenReused,
            organization_id: &row.organization_id,
            actor_id: "",
            subject_id: &row.user_id,
            client,
            details,
        })
        .await?;
        self.state.tokens.close_session(&row.family_id).await
    }

    async fn sign_out(&self, request: Request<SignOutRequest>) -> Result<SignOutResponse, AuthError> {
        let client = self.client(&request);
        let presented = request.into_inner().refresh_token;
        if presented.trim().is_empty() {
            return Err(FieldViolation::new("refresh_token", "is required").into());
        }
        // Signing out is idempotent and says nothing about unknown tokens.
        let expires_at = self.state.revocations.expires_at();
        if let Some(row) = self.state.store.refresh_token(&digest(presented.trim())).await?
            && let Some(revocation) = self
                .state
                .store
                .revoke_family(&row.family_id, "signed out", expires_at)
                .await?
        {
            self.announce(&[revocation]).await;
            let details = BTreeMap::from([("family_id", row.family_id.clone())]);
            self.audit(AuditEntry {
                kind: AuditEventKind::SignedOut,
                organization_id: &row.organization_id,
                actor_id: &row.user_id,
                subject_id: &row.user_id,
                client: &client,
                details,
            })
            .await?;
            // Last: the revocation and its record stand even if the cache
            // is down (a stale marker cannot reopen a revoked session).
            self.state.tokens.close_session(&row.family_id).await?;
        }
        Ok(SignOutResponse {})
    }

    async fn validate_token(&self, request: Request<ValidateTokenRequest>) -> Result<ValidateTokenResponse, AuthError> {
        let token = request.into_inner().access_token;
        if token.trim().is_empty() {
            return Err(FieldViolation::new("access_token", "is required").into());
        }
        let header =
            jsonwebtoken::decode_header(token.trim()).map_err(|_| AuthError::Unauthenticated("malformed token"))?;
        let claims = self
            .state
            .verifier
            .verify(token.trim())
            .await
            .map_err(|error| match error {
                TokenError::KeysUnavailable => AuthError::Crypto("own signing keys unavailable"),
                TokenError::RevocationsUnavailable => AuthError::Unavailable("token revocations unavailable"),
                TokenError::SessionRevoked => AuthError::Unauthenticated("the session was signed out or revoked"),
                TokenError::Superseded => {
                    AuthError::Unauthenticated("the token was superseded by a change of role or account")
                }
                _ => AuthError::Unauthenticated("invalid access token"),
            })?;
        if let Some(session_id) = &claims.sid
            && !self.state.tokens.session_is_open(session_id).await?
        {
            return Err(AuthError::Unauthenticated("the session was signed out or revoked"));
        }
        let scopes =
            Scope::parse_list(&claims.scope).map_err(|_| AuthError::Unauthenticated("invalid access token"))?;
        Ok(ValidateTokenResponse {
            subject: claims.sub,
            organization_id: claims.org,
            role: claims.role.to_proto().into(),
            scopes: scopes.iter().map(|scope| scope.as_str().to_owned()).collect(),
            session_id: claims.sid.unwrap_or_default(),
            key_id: header.kid.unwrap_or_default(),
            issue_time: Some(timestamp(seconds_to_micros(claims.iat))),
            expire_time: Some(timestamp(seconds_to_micros(claims.exp))),
        })
    }

    async fn get_current_user(
        &self,
        request: Request<GetCurrentUserRequest>,
    ) -> Result<GetCurrentUserResponse, Status> {
        let (_, user) = self
            .current_user(&request, &[Role::CompanyUser, Role::Analyst, Role::Admin])
            .await?;
        let organization = self
            .state
            .store
            .organization(&user.organization_id)
            .await?
            .ok_or(AuthError::NotFound("organization"))?;
        Ok(GetCurrentUserResponse {
            user: Some(user_to_proto(user)),
            organization: Some(Organization {
                organization_id: organization.organization_id,
                display_name: organization.display_name,
                create_time: Some(timestamp(organization.created_at)),
            }),
        })
    }

    async fn list_users(&self, request: Request<ListUsersRequest>) -> Result<ListUsersResponse, Status> {
        let caller = self.current_admin(&request).await?;
        let request = request.get_ref();
        let (size, cursor) = page_token::page_request::<Cursor>(
            request.page_size,
            &request.page_token,
            &caller.organization_id,
            PageLimits::STANDARD,
        )
        .map_err(AuthError::from)?;
        let rows = self
            .state
            .store
            .list_users(&caller.organization_id, cursor.as_ref(), size + 1)
            .await?;
        let (rows, next_page_token) = page_token::paginate(rows, size, &caller.organization_id, |row| Cursor {
            created_at: row.created_at,
            id: row.user_id.clone(),
        });
        Ok(ListUsersResponse {
            users: rows.into_iter().map(user_to_proto).collect(),
            next_page_token,
        })
    }

    async fn update_user_role(
        &self,
        request: Request<UpdateUserRoleRequest>,
    ) -> Result<UpdateUserRoleResponse, Status> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let request = request.into_inner();
        let mut violations = Vec::new();
        if request.user_id.trim().is_empty() {
            violations.push(FieldViolation::new("user_id", "is required"));
        }
        let role = person_role("role", request.role)
            .map_err(|violation| violations.push(violation))
            .ok();
        let Some(role) = role.filter(|_| violations.is_empty()) else {
            return Err(AuthError::from(violations).into());
        };
        let change = self
            .state
            .store
            .update_role(
                &caller.organization_id,
                request.user_id.trim(),
                role.as_str(),
                self.state.revocations.expires_at(),
            )
            .await?;
        if let Some(revocation) = &change.revocation {
            self.announce(std::slice::from_ref(revocation)).await;
        }
        let details = BTreeMap::from([("old_role", change.old_role), ("new_role", role.as_str().to_owned())]);
        self.audit(AuditEntry {
            kind: AuditEventKind::RoleChanged,
            organization_id: &caller.organization_id,
            actor_id: &caller.subject,
            subject_id: request.user_id.trim(),
            client: &client,
            details,
        })
        .await?;
        let user = self
            .state
            .store
            .user_by_id(request.user_id.trim())
            .await?
            .ok_or(AuthError::NotFound("user"))?;
        Ok(UpdateUserRoleResponse {
            user: Some(user_to_proto(user)),
        })
    }

    async fn invite_user(&self, request: Request<InviteUserRequest>) -> Result<InviteUserResponse, Status> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let request = request.into_inner();
        let mut violations = Vec::new();
        let email = Email::parse("email", &request.email)
            .map_err(|violation| violations.push(violation))
            .ok();
        let role = person_role("role", request.role)
            .map_err(|violation| violations.push(violation))
            .ok();
        let (Some(email), Some(role)) = (email, role) else {
            return Err(AuthError::from(violations).into());
        };
        let token = random_token("mxi_");
        let expires_at = now_micros() + duration_micros(INVITATION_TTL);
        let invitation_id = self
            .state
            .store
            .create_invitation(
                &caller.organization_id,
                email.as_str(),
                role.as_str(),
                &digest(&token),
                &caller.subject,
                expires_at,
            )
            .await?;
        let details = BTreeMap::from([("email", email.to_string()), ("role", role.as_str().to_owned())]);
        self.audit(AuditEntry {
            kind: AuditEventKind::UserInvited,
            organization_id: &caller.organization_id,
            actor_id: &caller.subject,
            subject_id: &invitation_id,
            client: &client,
            details,
        })
        .await?;
        Ok(InviteUserResponse {
            invitation: Some(Invitation {
                invitation_id,
                email: email.to_string(),
                role: role.to_proto().into(),
                organization_id: caller.organization_id,
                expire_time: Some(timestamp(expires_at)),
            }),
            invitation_token: token,
        })
    }

    async fn create_api_key(&self, request: Request<CreateApiKeyRequest>) -> Result<CreateApiKeyResponse, Status> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let request = request.into_inner();
        let mut violations = Vec::new();
        let display_name = DisplayName::parse("display_name", &request.display_name)
            .map_err(|violation| violations.push(violation))
            .ok();
        let scopes = organization_scopes("scopes", &request.scopes)
            .map_err(|violation| violations.push(violation))
            .ok();
        let expires_at = match request.expire_time.as_ref().map(micros_of) {
            None => None,
            Some(Some(expires)) if expires > now_micros() => Some(expires),
            Some(_) => {
                violations.push(FieldViolation::new("expire_time", "must be a valid time in the future"));
                None
            }
        };
        let (Some(display_name), Some(scopes)) = (display_name, scopes) else {
            return Err(AuthError::from(violations).into());
        };
        if !violations.is_empty() {
            return Err(AuthError::from(violations).into());
        }
        let key = random_token("mx_");
        let prefix: String = key.chars().take(11).collect();
        let row = self
            .state
            .store
            .create_api_key(
                &caller.organization_id,
                display_name.as_str(),
                &prefix,
                &digest(&key),
                &Scope::join(&scopes),
                &caller.subject,
                expires_at,
            )
            .await?;
        let details = BTreeMap::from([("prefix", prefix), ("scopes", Scope::join(&scopes))]);
        self.audit(AuditEntry {
            kind: AuditEventKind::ApiKeyCreated,
            organization_id: &caller.organization_id,
            actor_id: &caller.subject,
            subject_id: &row.api_key_id,
            client: &client,
            details,
        })
        .await?;
        Ok(CreateApiKeyResponse {
            api_key: Some(api_key_to_proto(row)),
            key,
        })
    }

    async fn list_api_keys(&self, request: Request<ListApiKeysRequest>) -> Result<ListApiKeysResponse, Status> {
        let caller = self.current_admin(&request).await?;
        let request = request.get_ref();
        let (size, cursor) = page_token::page_request::<Cursor>(
            request.page_size,
            &request.page_token,
            &caller.organization_id,
            PageLimits::STANDARD,
        )
        .map_err(AuthError::from)?;
        let rows = self
            .state
            .store
            .list_api_keys(&caller.organization_id, cursor.as_ref(), size + 1)
            .await?;
        let (rows, next_page_token) = page_token::paginate(rows, size, &caller.organization_id, |row| Cursor {
            created_at: row.created_at,
            id: row.api_key_id.clone(),
        });
        Ok(ListApiKeysResponse {
            api_keys: rows.into_iter().map(api_key_to_proto).collect(),
            next_page_token,
        })
    }

    async fn revoke_api_key(&self, request: Request<RevokeApiKeyRequest>) -> Result<RevokeApiKeyResponse, Status> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let api_key_id = request.into_inner().api_key_id;
        if api_key_id.trim().is_empty() {
            return Err(AuthError::from(FieldViolation::new("api_key_id", "is required")).into());
        }
        let (row, revocation) = self
            .state
            .store
            .revoke_api_key(
                &caller.organization_id,
                api_key_id.trim(),
                self.state.revocations.expires_at(),
            )
            .await?
            .ok_or(AuthError::NotFound("api key"))?;
        let Some(revocation) = revocation else {
            // Revoking a revoked key changes nothing and records nothing.
            return Ok(RevokeApiKeyResponse {
                api_key: Some(api_key_to_proto(row)),
            });
        };
        self.announce(&[revocation]).await;
        self.audit(AuditEntry {
            kind: AuditEventKind::ApiKeyRevoked,
            organization_id: &caller.organization_id,
            actor_id: &caller.subject,
            subject_id: &row.api_key_id,
            client: &client,
            details: BTreeMap::new(),
        })
        .await?;
        Ok(RevokeApiKeyResponse {
            api_key: Some(api_key_to_proto(row)),
        })
    }

    async fn verify_api_key(&self, request: Request<VerifyApiKeyRequest>) -> Result<VerifyApiKeyResponse, Status> {
        self.current_service(&request, Scope::ApiKeysVerify).await?;
        let key = request.into_inner().key;
        let key = key.trim();
        if key.is_empty() {
            return Err(AuthError::from(FieldViolation::new("key", "is required")).into());
        }
        let row = self.verified_api_key(key).await?;
        Ok(VerifyApiKeyResponse {
            api_key: Some(api_key_to_proto(row)),
        })
    }

    /// The record of a valid API key (not revoked, not expired), with its
    /// last use noted.
    pub async fn verified_api_key(&self, key: &str) -> Result<ApiKeyRow, AuthError> {
        const INVALID: AuthError = AuthError::Unauthenticated("invalid api key");
        let row = self.state.store.api_key_by_hash(&digest(key)).await?.ok_or(INVALID)?;
        let now = now_micros();
        if row.revoked_at.is_some() || row.expires_at.is_some_and(|expires| expires <= now) {
            return Err(INVALID);
        }
        if row
            .last_used_at
            .is_none_or(|last| now - last >= duration_micros(API_KEY_TOUCH_INTERVAL))
        {
            self.state.store.touch_api_key(&row.api_key_id, now).await?;
        }
        Ok(row)
    }

    async fn create_service_account(
        &self,
        request: Request<CreateServiceAccountRequest>,
    ) -> Result<CreateServiceAccountResponse, Status> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let request = request.into_inner();
        let mut violations = Vec::new();
        let display_name = DisplayName::parse("display_name", &request.display_name)
            .map_err(|violation| violations.push(violation))
            .ok();
        let scopes = organization_scopes("scopes", &request.scopes)
            .map_err(|violation| violations.push(violation))
            .ok();
        let (Some(display_name), Some(scopes)) = (display_name, scopes) else {
            return Err(AuthError::from(violations).into());
        };
        let (account, secret) = create_service_account(
            &self.state.store,
            &caller.organization_id,
            display_name.as_str(),
            &scopes,
        )
        .await?;
        let details = BTreeMap::from([("scopes", account.scopes.clone())]);
        self.audit(AuditEntry {
            kind: AuditEventKind::ServiceAccountCreated,
            organization_id: &caller.organization_id,
            actor_id: &caller.subject,
            subject_id: &account.client_id,
            client: &client,
            details,
        })
        .await?;
        Ok(CreateServiceAccountResponse {
            service_account: Some(service_account_to_proto(account)),
            client_secret: secret,
        })
    }

    async fn issue_service_token(
        &self,
        request: Request<IssueServiceTokenRequest>,
    ) -> Result<IssueServiceTokenResponse, AuthError> {
        let client = self.client(&request);
        let request = request.into_inner();
        let mut violations = Vec::new();
        if request.client_id.trim().is_empty() {
            violations.push(FieldViolation::new("client_id", "is required"));
        }
        if request.client_secret.trim().is_empty() {
            violations.push(FieldViolation::new("client_secret", "is required"));
        }
        if !violations.is_empty() {
            return Err(violations.into());
        }
        self.state.throttle.check_ip("service-token", client.ip).await?;
        const INVALID: AuthError = AuthError::Unauthenticated("invalid client credentials");
        let account = self
            .state
            .store
            .service_account(request.client_id.trim())
            .await?
            .ok_or(INVALID)?;
        if !constant_time_eq(&digest(request.client_secret.trim()), &account.secret_hash)
            || account.revoked_at.is_some()
        {
            return Err(INVALID);
        }
        let scopes = Scope::parse_list(&account.scopes).map_err(|_| AuthError::Crypto("stored scopes are unknown"))?;
        let (access_token, expires) = self
            .state
            .tokens
            .access_token(Subject {
                subject: &account.client_id,
                organization_id: &account.organization_id,
                role: Role::Service,
                session_id: None,
                scopes: &scopes,
                authorization_version: account.authz_version,
            })
            .await?;
        Ok(IssueServiceTokenResponse {
            access_token,
            token_type: "Bearer".to_owned(),
            expire_time: Some(timestamp(expires)),
        })
    }

    async fn rotate_signing_keys(
        &self,
        request: Request<RotateSigningKeysRequest>,
    ) -> Result<RotateSigningKeysResponse, Status> {
        let client = self.client(&request);
        let caller = self.current_service(&request, Scope::KeysRotate).await?;
        let recently = self
            .state
            .keys
            .last_rotation_at()
            .await?
            .is_some_and(|rotated| now_micros() - rotated < duration_micros(MIN_ROTATION_INTERVAL));
        if recently {
            return Err(AuthError::FailedPrecondition("the signing keys were rotated less than a minute ago").into());
        }
        let rotation = rotate_keys(&self.state).await?;
        let details = BTreeMap::from([
            ("current_key_id", rotation.current_key_id.clone()),
            ("retired_key_id", rotation.retired_key_id.clone()),
        ]);
        self.audit(AuditEntry {
            kind: AuditEventKind::SigningKeysRotated,
            organization_id: &caller.organization_id,
            actor_id: &caller.subject,
            subject_id: &rotation.current_key_id,
            client: &client,
            details,
        })
        .await?;
        Ok(RotateSigningKeysResponse {
            current_key_id: rotation.current_key_id,
            next_key_id: rotation.next_key_id,
            retired_key_id: rotation.retired_key_id,
        })
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<ListAuditEventsResponse, Status> {
        let caller = self.current_admin(&request).await?;
        let request = request.get_ref();
        let kind = match AuditEventKind::try_from(request.kind) {
            Ok(AuditEventKind::Unspecified) => None,
            Ok(kind) => Some(audit::kind_name(kind)),
            Err(_) => {
                return Err(AuthError::from(FieldViolation::new("kind", "is not a known audit event kind")).into());
            }
        };
        let filters = format!("{}|{}", caller.organization_id, kind.unwrap_or(""));
        let (size, cursor) =
            page_token::page_request::<Cursor>(request.page_size, &request.page_token, &filters, PageLimits::STANDARD)
                .map_err(AuthError::from)?;
        let rows = self
            .state
            .store
            .list_audit(&caller.organization_id, kind, cursor.as_ref(), size + 1)
            .await?;
        let (rows, next_page_token) = page_token::paginate(rows, size, &filters, |row| Cursor {
            created_at: row.created_at,
            id: row.audit_event_id.clone(),
        });
        Ok(ListAuditEventsResponse {
            audit_events: rows.into_iter().map(audit::to_proto).collect(),
            next_page_token,
        })
    }

    async fn deactivate_user(&self, request: Request<DeactivateUserRequest>) -> Result<DeactivateUserResponse, Status> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let user_id = request.into_inner().user_id;
        let user_id = user_id.trim();
        if user_id.is_empty() {
            return Err(AuthError::from(FieldViolation::new("user_id", "is required")).into());
        }
        if user_id == caller.subject {
            return Err(AuthError::FailedPrecondition("you cannot deactivate yourself").into());
        }
        let deactivation = self
            .state
            .store
            .deactivate_user(&caller.organization_id, user_id, self.state.revocations.expires_at())
            .await?;
        if !deactivation.revocations.is_empty() {
            self.announce(&deactivation.revocations).await;
            let revoked_keys: Vec<&str> = deactivation
                .revoked_api_keys
                .iter()
                .map(|key| key.api_key_id.as_str())
                .collect();
            let details = BTreeMap::from([
                ("revoked_sessions", deactivation.revoked_sessions.len().to_string()),
                ("revoked_api_keys", revoked_keys.join(" ")),
            ]);
            self.audit(AuditEntry {
                kind: AuditEventKind::UserDeactivated,
                organization_id: &caller.organization_id,
                actor_id: &caller.subject,
                subject_id: user_id,
                client: &client,
                details,
            })
            .await?;
            for family_id in &deactivation.revoked_sessions {
                self.state.tokens.close_session(family_id).await?;
            }
        }
        let user = self
            .state
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::NotFound("user"))?;
        Ok(DeactivateUserResponse {
            user: Some(user_to_proto(user)),
            revoked_session_count: i32::try_from(deactivation.revoked_sessions.len()).unwrap_or(i32::MAX),
            revoked_api_keys: deactivation
                .revoked_api_keys
                .into_iter()
                .map(api_key_to_proto)
                .collect(),
        })
    }

    async fn list_service_accounts(
        &self,
        request: Request<ListServiceAccountsRequest>,
    ) -> Result<ListServiceAccountsResponse, Status> {
        let caller = self.current_admin(&request).await?;
        let request = request.get_ref();
        let (size, cursor) = page_token::page_request::<Cursor>(
            request.page_size,
            &request.page_token,
            &caller.organization_id,
            PageLimits::STANDARD,
        )
        .map_err(AuthError::from)?;
        let rows = self
            .state
            .store
            .list_service_accounts(&caller.organization_id, cursor.as_ref(), size + 1)
            .await?;
        let (rows, next_page_token) = page_token::paginate(rows, size, &caller.organization_id, |row| Cursor {
            created_at: row.created_at,
            id: row.client_id.clone(),
        });
        Ok(ListServiceAccountsResponse {
            service_accounts: rows.into_iter().map(service_account_to_proto).collect(),
            next_page_token,
        })
    }

    async fn rotate_service_account_secret(
        &self,
        request: Request<RotateServiceAccountSecretRequest>,
    ) -> Result<RotateServiceAccountSecretResponse, Status> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let client_id = request.into_inner().client_id;
        let client_id = client_id.trim();
        if client_id.is_empty() {
            return Err(AuthError::from(FieldViolation::new("client_id", "is required")).into());
        }
        let secret = random_token(SERVICE_ACCOUNT_SECRET_PREFIX);
        let (account, revocation) = self
            .state
            .store
            .rotate_service_account_secret(
                &caller.organization_id,
                client_id,
                &digest(&secret),
                self.state.revocations.expires_at(),
            )
            .await?;
        self.announce(&[revocation]).await;
        self.audit(AuditEntry {
            kind: AuditEventKind::ServiceAccountSecretRotated,
            organization_id: &caller.organization_id,
            actor_id: &caller.subject,
            subject_id: client_id,
            client: &client,
            details: BTreeMap::new(),
        })
        .await?;
        Ok(RotateServiceAccountSecretResponse {
            service_account: Some(service_account_to_proto(account)),
            client_secret: secret,
        })
    }

    async fn revoke_service_account(
        &self,
        request: Request<RevokeServiceAccountRequest>,
    ) -> Result<RevokeServiceAccountResponse, Status> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let client_id = request.into_inner().client_id;
        let client_id = client_id.trim();
        if client_id.is_empty() {
            return Err(AuthError::from(FieldViolation::new("client_id", "is required")).into());
        }
        let (account, revocation) = self
            .state
            .store
            .revoke_service_account(&caller.organization_id, client_id, self.state.revocations.expires_at())
            .await?
            .ok_or(AuthError::NotFound("service account"))?;
        if let Some(revocation) = revocation {
            self.announce(&[revocation]).await;
            self.audit(AuditEntry {
                kind: AuditEventKind::ServiceAccountRevoked,
                organization_id: &caller.organization_id,
                actor_id: &caller.subject,
                subject_id: client_id,
                client: &client,
                details: BTreeMap::new(),
            })
            .await?;
        }
        Ok(RevokeServiceAccountResponse {
            service_account: Some(service_account_to_proto(account)),
        })
    }

    async fn watch_revocations(&self) -> Result<RevocationStream, AuthError> {
        let feed = self.state.revocations.feed().await?;
        Ok(feed.map(|batch| batch.map(|batch| batch.to_proto())).boxed())
    }
}

/// Rotates the keys, reloads them here and tells every other instance.
pub async fn rotate_keys(state: &AuthState) -> Result<crate::keys::Rotation, AuthError> {
    let rotation = state.keys.rotate().await?;
    state.verifier.forget_keys().await;
    if let Err(error) = state
        .pubsub
        .publish(KEYS_ROTATED_CHANNEL, rotation.current_key_id.as_bytes())
        .await
    {
        // Other instances still pick the keys up within their reload interval.
        tracing::warn!(error = %metrix_core::error::error_chain(&error), "cannot announce the key rotation");
    }
    tracing::info!(current_key_id = %rotation.current_key_id, retired_key_id = %rotation.retired_key_id, "signing keys rotated");
    Ok(rotation)
}

/// Creates a service account with any scopes (the API restricts them to
/// organisation scopes before calling this); the account and its secret.
pub async fn create_service_account(
    store: &AuthStore,
    organization_id: &str,
    display_name: &str,
    scopes: &[Scope],
) -> Result<(ServiceAccountRow, String), AuthError> {
    let secret = random_token(SERVICE_ACCOUNT_SECRET_PREFIX);
    let account = ServiceAccountRow {
        client_id: format!("svc_{}", uuid::Uuid::new_v4().simple()),
        organization_id: organization_id.to_owned(),
        display_name: display_name.to_owned(),
        secret_hash: digest(&secret),
        scopes: Scope::join(scopes),
        created_at: now_micros(),
        authz_version: 0,
        revoked_at: None,
        secret_rotated_at: None,
    };
    store.create_service_account(&account).await?;
    Ok((account, secret))
}

fn person_role(field: &str, value: i32) -> Result<Role, FieldViolation> {
    match metrix_proto::auth::v1::Role::try_from(value)
        .ok()
        .and_then(Role::from_proto)
    {
        Some(role @ (Role::CompanyUser | Role::Analyst | Role::Admin)) => Ok(role),
        _ => Err(FieldViolation::new(
            field,
            "must be ROLE_COMPANY_USER, ROLE_ANALYST or ROLE_ADMIN",
        )),
    }
}

fn organization_scopes(field: &str, requested: &[String]) -> Result<Vec<Scope>, FieldViolation> {
    if requested.is_empty() {
        return Err(FieldViolation::new(
            field,
            "must name at least one of events:write, metrics:write, read",
        ));
    }
    let scopes = Scope::parse_list(&requested.join(" ")).map_err(|problem| FieldViolation::new(field, problem))?;
    if scopes.iter().any(|scope| !Scope::ORGANIZATION.contains(scope)) {
        return Err(FieldViolation::new(
            field,
            "may only contain events:write, metrics:write and read",
        ));
    }
    Ok(scopes)
}

fn default_display_name(email: &Email) -> String {
    email.as_str().split('@').next().unwrap_or_default().to_owned()
}

/// A PKCE S256 challenge: 43 base64url characters.
fn is_pkce_challenge(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// A PKCE verifier (RFC 7636 section 4.1).
fn is_pkce_verifier(text: &str) -> bool {
    (43..=128).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._~".contains(&byte))
}

fn oauth_state_key(state: &str) -> String {
    format!("auth:oauth:state:{}", digest(state))
}

fn seconds_to_micros(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX).saturating_mul(1_000_000)
}

fn user_to_proto(row: UserRow) -> User {
    let mut sign_in_methods = Vec::new();
    if row.password_hash.is_some() {
        sign_in_methods.push("password".to_owned());
    }
    if row.has_google {
        sign_in_methods.push(GOOGLE.to_owned());
    }
    let role = row
        .role
        .parse::<Role>()
        .map(Role::to_proto)
        .unwrap_or(metrix_proto::auth::v1::Role::Unspecified);
    User {
        user_id: row.user_id,
        email: row.email,
        display_name: row.display_name,
        organization_id: row.organization_id,
        role: role.into(),
        sign_in_methods,
        create_time: Some(timestamp(row.created_at)),
        last_sign_in_time: row.last_sign_in_at.map(timestamp),
        deactivate_time: row.deactivated_at.map(timestamp),
    }
}

fn api_key_to_proto(row: ApiKeyRow) -> ApiKey {
    ApiKey {
        api_key_id: row.api_key_id,
        display_name: row.display_name,
        prefix: row.prefix,
        scopes: row
            .scopes
            .split(' ')
            .filter(|scope| !scope.is_empty())
            .map(str::to_owned)
            .collect(),
        organization_id: row.organization_id,
        create_time: Some(timestamp(row.created_at)),
        expire_time: row.expires_at.map(timestamp),
        last_use_time: row.last_used_at.map(timestamp),
        revoke_time: row.revoked_at.map(timestamp),
    }
}

fn service_account_to_proto(row: ServiceAccountRow) -> ServiceAccount {
    ServiceAccount {
        client_id: row.client_id,
        display_name: row.display_name,
        scopes: row
            .scopes
            .split(' ')
            .filter(|scope| !scope.is_empty())
            .map(str::to_owned)
            .collect(),
        organization_id: row.organization_id,
        create_time: Some(timestamp(row.created_at)),
        revoke_time: row.revoked_at.map(timestamp),
        secret_rotate_time: row.secret_rotated_at.map(timestamp),
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn sign_up(&self, request: Request<SignUpRequest>) -> Result<Response<SignUpResponse>, Status> {
        answer(AuthApi::sign_up(self, request).await)
    }
    async fn sign_in(&self, request: Request<SignInRequest>) -> Result<Response<SignInResponse>, Status> {
        answer(AuthApi::sign_in(self, request).await)
    }
    async fn get_auth_url(&self, request: Request<GetAuthUrlRequest>) -> Result<Response<GetAuthUrlResponse>, Status> {
        answer(AuthApi::get_auth_url(self, request).await)
    }
    async fn handle_o_auth_callback(
        &self,
        request: Request<HandleOAuthCallbackRequest>,
    ) -> Result<Response<HandleOAuthCallbackResponse>, Status> {
        answer(AuthApi::handle_oauth_callback(self, request).await)
    }
    async fn sign_in_with_id_token(
        &self,
        request: Request<SignInWithIdTokenRequest>,
    ) -> Result<Response<SignInWithIdTokenResponse>, Status> {
        answer(AuthApi::sign_in_with_id_token(self, request).await)
    }
    async fn refresh_token(
        &self,
        request: Request<RefreshTokenRequest>,
    ) -> Result<Response<RefreshTokenResponse>, Status> {
        answer(AuthApi::refresh_token(self, request).await)
    }
    async fn sign_out(&self, request: Request<SignOutRequest>) -> Result<Response<SignOutResponse>, Status> {
        answer(AuthApi::sign_out(self, request).await)
    }
    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        answer(AuthApi::validate_token(self, request).await)
    }
    async fn get_jwks(&self, _request: Request<GetJwksRequest>) -> Result<Response<GetJwksResponse>, Status> {
        answer(self.state.keys.published().await.map(|keys| GetJwksResponse { keys }))
    }
    async fn get_current_user(
        &self,
        request: Request<GetCurrentUserRequest>,
    ) -> Result<Response<GetCurrentUserResponse>, Status> {
        answer(AuthApi::get_current_user(self, request).await)
    }
    async fn list_users(&self, request: Request<ListUsersRequest>) -> Result<Response<ListUsersResponse>, Status> {
        answer(AuthApi::list_users(self, request).await)
    }
    async fn update_user_role(
        &self,
        request: Request<UpdateUserRoleRequest>,
    ) -> Result<Response<UpdateUserRoleResponse>, Status> {
        answer(AuthApi::update_user_role(self, request).await)
    }
    async fn invite_user(&self, request: Request<InviteUserRequest>) -> Result<Response<InviteUserResponse>, Status> {
        answer(AuthApi::invite_user(self, request).await)
    }
    async fn create_api_key(
        &self,
        request: Request<CreateApiKeyRequest>,
    ) -> Result<Response<CreateApiKeyResponse>, Status> {
        answer(AuthApi::create_api_key(self, request).await)
    }
    async fn list_api_keys(
        &self,
        request: Request<ListApiKeysRequest>,
    ) -> Result<Response<ListApiKeysResponse>, Status> {
        answer(AuthApi::list_api_keys(self, request).await)
    }
    async fn revoke_api_key(
        &self,
        request: Request<RevokeApiKeyRequest>,
    ) -> Result<Response<RevokeApiKeyResponse>, Status> {
        answer(AuthApi::revoke_api_key(self, request).await)
    }
    async fn verify_api_key(
        &self,
        request: Request<VerifyApiKeyRequest>,
    ) -> Result<Response<VerifyApiKeyResponse>, Status> {
        answer(AuthApi::verify_api_key(self, request).await)
    }
    async fn create_service_account(
        &self,
        request: Request<CreateServiceAccountRequest>,
    ) -> Result<Response<CreateServiceAccountResponse>, Status> {
        answer(AuthApi::create_service_account(self, request).await)
    }
    async fn issue_service_token(
        &self,
        request: Request<IssueServiceTokenRequest>,
    ) -> Result<Response<IssueServiceTokenResponse>, Status> {
        answer(AuthApi::issue_service_token(self, request).await)
    }
    async fn rotate_signing_keys(
        &self,
        request: Request<RotateSigningKeysRequest>,
    ) -> Result<Response<RotateSigningKeysResponse>, Status> {
        answer(AuthApi::rotate_signing_keys(self, request).await)
    }
    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        answer(AuthApi::list_audit_events(self, request).await)
    }
    async fn deactivate_user(
        &self,
        request: Request<DeactivateUserRequest>,
    ) -> Result<Response<DeactivateUserResponse>, Status> {
        answer(AuthApi::deactivate_user(self, request).await)
    }
    async fn list_service_accounts(
        &self,
        request: Request<ListServiceAccountsRequest>,
    ) -> Result<Response<ListServiceAccountsResponse>, Status> {
        answer(AuthApi::list_service_accounts(self, request).await)
    }
    async fn rotate_service_account_secret(
        &self,
        request: Request<RotateServiceAccountSecretRequest>,
    ) -> Result<Response<RotateServiceAccountSecretResponse>, Status> {
        answer(AuthApi::rotate_service_account_secret(self, request).await)
    }
    async fn revoke_service_account(
        &self,
        request: Request<RevokeServiceAccountRequest>,
    ) -> Result<Response<RevokeServiceAccountResponse>, Status> {
        answer(AuthApi::revoke_service_account(self, request).await)
    }
    type WatchRevocationsStream = RevocationStream;
    async fn watch_revocations(
        &self,
        _request: Request<WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        answer(AuthApi::watch_revocations(self).await)
    }
}
