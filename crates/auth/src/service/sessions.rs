//! Sign-up, password sign-in, refresh, sign-out and token validation, and
//! what every sign-in ends with (`complete_sign_in`). Google sign-in is in
//! `google`.

use std::collections::BTreeMap;

use metrix_core::authn::{Scope, TokenError};
use metrix_core::client::ClientInfo;
use metrix_core::error::{FieldViolation, Violations};
use metrix_core::time::{duration_micros, now_micros, timestamp};
use metrix_proto::auth::v1::*;
use secrecy::SecretString;
use tonic::Request;

use crate::audit::AuditEntry;
use crate::domain::{DisplayName, Email, NewPassword};
use crate::error::AuthError;
use crate::passwords;
use crate::secrets::{digest, random_token};
use crate::store::{NewUser, RefreshRow, UserRow};
use crate::tokens::{REFRESH_TOKEN_PREFIX, open_answer, seal_answer};

use super::users::user_to_proto;
use super::{AuthApi, seconds_to_micros};

/// The name of an account that was given none: its email's local part.
pub(super) fn default_display_name(email: &Email) -> String {
    email.as_str().split('@').next().unwrap_or_default().to_owned()
}

impl AuthApi {
    /// What every successful sign-in (or sign-up) does: audit it, note it,
    /// and start a session.
    pub(super) async fn complete_sign_in(
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

    pub(super) async fn sign_up(&self, request: Request<SignUpRequest>) -> Result<SignUpResponse, AuthError> {
        let client = self.client(&request);
        let request = request.into_inner();
        let mut violations = Violations::new();
        let email = violations.check(Email::parse("email", &request.email));
        let password = violations.check(NewPassword::parse("password", &request.password));
        let display_name = if request.display_name.trim().is_empty() {
            None
        } else {
            violations.check(DisplayName::parse("display_name", &request.display_name))
        };
        let invited = !request.invitation_token.trim().is_empty();
        let organization_name = if invited {
            None
        } else {
            violations.check(DisplayName::parse("organization_name", &request.organization_name))
        };
        let (Some(email), Some(password)) = (email, password) else {
            return Err(violations.into_vec().into());
        };
        violations.finish()?;
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

    pub(super) async fn sign_in(&self, request: Request<SignInRequest>) -> Result<SignInResponse, AuthError> {
        let client = self.client(&request);
        let request = request.into_inner();
        let mut violations = Violations::new();
        let email = violations.check(Email::parse("email", &request.email));
        if request.password.is_empty() {
            violations.add("password", "is required");
        }
        let Some(email) = email else {
            return Err(violations.into_vec().into());
        };
        violations.finish()?;
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

    pub(super) async fn refresh_token(
        &self,
        request: Request<RefreshTokenRequest>,
    ) -> Result<RefreshTokenResponse, AuthError> {
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
    pub(super) fn retry_answer(&self, row: &RefreshRow, presented: &str) -> Option<TokenPair> {
        let used_at = row.used_at?;
        let grace = duration_micros(self.state.tokens.policy.refresh_reuse_grace);
        if now_micros() - used_at > grace || row.successor_used_at.is_some() {
            return None;
        }
        open_answer(presented, row.successor_answer.as_deref()?)
    }

    /// Ends the session of a reused refresh token, announces it and audits it.
    pub(super) async fn revoke_reused_family(&self, row: &RefreshRow, client: &ClientInfo) -> Result<(), AuthError> {
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

    pub(super) async fn sign_out(&self, request: Request<SignOutRequest>) -> Result<SignOutResponse, AuthError> {
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

    pub(super) async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<ValidateTokenResponse, AuthError> {
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
}
