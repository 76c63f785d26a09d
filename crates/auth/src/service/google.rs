//! Google sign-in: the authorization-code flow with PKCE (GetAuthUrl,
//! HandleOAuthCallback) and Google Identity Services credentials
//! (SignInWithIdToken), and the account a verified identity signs in to.

use std::time::Duration;

use metrix_core::client::ClientInfo;
use metrix_core::error::{FieldViolation, Violations};
use metrix_core::time::{duration_micros, now_micros, timestamp};
use metrix_proto::auth::v1::*;
use serde::{Deserialize, Serialize};
use tonic::Request;

use crate::domain::Email;
use crate::error::AuthError;
use crate::oauth::Identity;
use crate::secrets::{constant_time_eq, digest, pkce_challenge, random_token};
use crate::store::{NewUser, UserRow};

use super::AuthApi;
use super::sessions::default_display_name;
use super::users::user_to_proto;

/// What is remembered between GetAuthUrl and the callback, under the state.
#[derive(Serialize, Deserialize)]
struct PendingAuthorization {
    /// The caller's PKCE challenge; the verifier never reaches the server
    /// before the callback.
    code_challenge: String,
    nonce: String,
    redirect_uri: String,
}

/// How long an OAuth `state` is remembered.
const OAUTH_STATE_TTL: Duration = Duration::from_secs(600);

/// The provider name of Google identities.
pub(super) const GOOGLE: &str = "google";

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

impl AuthApi {
    /// Signs in (or up) the owner of a verified external identity.
    pub(super) async fn sign_in_with_identity(
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

    pub(super) async fn get_auth_url(
        &self,
        request: Request<GetAuthUrlRequest>,
    ) -> Result<GetAuthUrlResponse, AuthError> {
        let provider = self.require_provider()?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let redirect_uri = violations.check(provider.redirect_uri(request.redirect_uri.trim()));
        let code_challenge = request.code_challenge.trim();
        if !is_pkce_challenge(code_challenge) {
            violations.push(FieldViolation::new(
                "code_challenge",
                "must be the base64url S256 challenge (43 characters) of a PKCE verifier",
            ));
        }
        let Some(redirect_uri) = redirect_uri.filter(|_| violations.is_empty()) else {
            return Err(violations.into_vec().into());
        };
        let state = random_token("");
        let pending = PendingAuthorization {
            code_challenge: code_challenge.to_owned(),
            nonce: random_token(""),
            redirect_uri: redirect_uri.to_string(),
        };
        let url = provider.authorization_url(&redirect_uri, &state, &pending.nonce, &pending.code_challenge);
        #[allow(clippy::expect_used, reason = "a struct of strings always serialises")]
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

    pub(super) async fn handle_oauth_callback(
        &self,
        request: Request<HandleOAuthCallbackRequest>,
    ) -> Result<HandleOAuthCallbackResponse, AuthError> {
        let client = self.client(&request);
        let request = request.into_inner();
        let provider = self.require_provider()?;
        let mut violations = Violations::new();
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
        violations.finish()?;
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

    pub(super) async fn sign_in_with_id_token(
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
}
