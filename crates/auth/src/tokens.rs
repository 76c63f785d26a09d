//! Minting access tokens and the session pairs handed out by every sign-in.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use metrix_core::authn::{AccessClaims, Role, Scope};
use metrix_core::cache::Cache;
use metrix_core::time::{duration_micros, now_micros, timestamp};
use metrix_proto::auth::v1::TokenPair;

use crate::error::AuthError;
use crate::keys::KeyRing;
use crate::secrets::{digest, random_token};
use crate::store::{AuthStore, UserRow};

/// The prefix of refresh tokens.
pub const REFRESH_TOKEN_PREFIX: &str = "mxr_";

/// Lifetimes and identity of issued tokens.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    /// `iss` of access tokens.
    pub issuer: String,
    /// `aud` of access tokens.
    pub audience: String,
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// Lifetime of a session.
    pub refresh_token_ttl: Duration,
    /// How long a spent refresh token may be retried.
    pub refresh_reuse_grace: Duration,
}

/// Issues tokens and keeps the session markers in the cache.
pub struct TokenIssuer {
    pub policy: TokenPolicy,
    keys: Arc<KeyRing>,
    store: AuthStore,
    cache: Arc<dyn Cache>,
}

/// What an access token is issued to.
pub struct Subject<'a> {
    pub subject: &'a str,
    pub organization_id: &'a str,
    pub role: Role,
    pub session_id: Option<&'a str>,
    pub scopes: &'a [Scope],
}

impl TokenIssuer {
    /// An issuer signing with `keys`.
    pub fn new(policy: TokenPolicy, keys: Arc<KeyRing>, store: AuthStore, cache: Arc<dyn Cache>) -> Self {
        Self {
            policy,
            keys,
            store,
            cache,
        }
    }

    /// A signed access token and its expiry (Unix microseconds).
    pub async fn access_token(&self, subject: Subject<'_>) -> Result<(String, i64), AuthError> {
        let key = self.keys.active().await?;
        let now_seconds = u64::try_from(now_micros() / 1_000_000).unwrap_or(0);
        let expires = now_seconds + self.policy.access_token_ttl.as_secs();
        let claims = AccessClaims {
            iss: self.policy.issuer.clone(),
            aud: self.policy.audience.clone(),
            sub: subject.subject.to_owned(),
            org: subject.organization_id.to_owned(),
            role: subject.role,
            sid: subject.session_id.map(str::to_owned),
            scope: Scope::join(subject.scopes),
            iat: now_seconds,
            nbf: now_seconds,
            exp: expires,
            jti: uuid::Uuid::now_v7().simple().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.key_id);
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding_key).map_err(|error| {
            tracing::error!(error = %error, "signing an access token failed");
            AuthError::Crypto("signing an access token")
        })?;
        Ok((token, i64::try_from(expires).unwrap_or(i64::MAX) * 1_000_000))
    }

    /// Starts a session for `user`: a refresh family and the first pair.
    pub async fn start_session(&self, user: &UserRow) -> Result<TokenPair, AuthError> {
        let refresh_token = random_token(REFRESH_TOKEN_PREFIX);
        let refresh_expires = now_micros() + duration_micros(self.policy.refresh_token_ttl);
        let family_id = self
            .store
            .create_family(
                &user.user_id,
                &user.organization_id,
                &digest(&refresh_token),
                refresh_expires,
            )
            .await?;
        self.open_session(&family_id).await?;
        self.pair(user, &family_id, refresh_token, refresh_expires).await
    }

    /// A pair for an existing session with a new refresh token.
    pub async fn pair(
        &self,
        user: &UserRow,
        family_id: &str,
        refresh_token: String,
        refresh_expires: i64,
    ) -> Result<TokenPair, AuthError> {
        let role = user
            .role
            .parse()
            .map_err(|_| AuthError::Crypto("stored role is unknown"))?;
        let (access_token, access_expires) = self
            .access_token(Subject {
                subject: &user.user_id,
                organization_id: &user.organization_id,
                role,
                session_id: Some(family_id),
                scopes: &[],
            })
            .await?;
        Ok(TokenPair {
            access_token,
            token_type: "Bearer".to_owned(),
            access_token_expire_time: Some(timestamp(access_expires)),
            refresh_token,
            refresh_token_expire_time: Some(timestamp(refresh_expires)),
        })
    }

    /// Marks a session open in the cache.
    pub async fn open_session(&self, family_id: &str) -> Result<(), AuthError> {
        self.cache
            .set(&session_key(family_id), b"open", self.policy.refresh_token_ttl)
            .await?;
        Ok(())
    }

    /// Removes a session's marker.
    pub async fn close_session(&self, family_id: &str) -> Result<(), AuthError> {
        self.cache.delete(&session_key(family_id)).await?;
        Ok(())
    }

    /// Whether a session is open: the cache first, the store when the cache
    /// has forgotten (a restart of the in-process cache, an eviction).
    pub async fn session_is_open(&self, family_id: &str) -> Result<bool, AuthError> {
        if self.cache.get(&session_key(family_id)).await?.is_some() {
            return Ok(true);
        }
        let open = self.store.family_is_open(family_id).await?;
        if open {
            self.open_session(family_id).await?;
        }
        Ok(open)
    }
}

fn session_key(family_id: &str) -> String {
    format!("auth:session:{family_id}")
}
