//! Minting access tokens and the session pairs handed out by every sign-in,
//! and sealing the pair a refresh token was exchanged for, so that a retry
//! within the grace window gets the very same pair.

use std::sync::Arc;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use jsonwebtoken::{Algorithm, Header};
use metrix_core::authn::{AccessClaims, Role, Scope, SignedClaims};
use metrix_core::cache::Cache;
use metrix_core::time::{duration_micros, now_micros, timestamp};
use metrix_proto::auth::v1::TokenPair;
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::error::AuthError;
use crate::keys::KeyRing;
use crate::secrets::{digest, random_bytes, random_token};
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
    /// The issuer, audience and lifetimes of the tokens it issues.
    pub policy: TokenPolicy,
    keys: Arc<KeyRing>,
    store: AuthStore,
    cache: Arc<dyn Cache>,
}

/// What an access token is issued to.
pub struct Subject<'a> {
    /// The `sub` claim: a user id, or a service account's client id.
    pub subject: &'a str,
    /// The `org` claim: the organisation the subject belongs to.
    pub organization_id: &'a str,
    /// The `role` claim: the subject's role in the organisation.
    pub role: Role,
    /// The `sid` claim: the session's refresh family id; `None` for service accounts, which have no session.
    pub session_id: Option<&'a str>,
    /// The `scope` claim: what a service account's token may do; empty for users, whose role decides.
    pub scopes: &'a [Scope],
    /// The subject's authorization version, from the store.
    pub authorization_version: i64,
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
        let claims = SignedClaims {
            claims: AccessClaims {
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
            },
            ver: u64::try_from(subject.authorization_version).unwrap_or(0),
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
                authorization_version: user.authz_version,
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

const ANSWER_NONCE_LENGTH: usize = 24;

/// The cipher that seals the answer to `refresh_token`: its key is derived
/// from the token itself, which is stored only as a digest, so the sealed
/// answer is useless to whoever reads the store without the token.
fn answer_cipher(refresh_token: &str) -> XChaCha20Poly1305 {
    let mut hasher = Sha256::new();
    hasher.update(b"metrix refresh answer v1\0");
    hasher.update(refresh_token.as_bytes());
    XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&hasher.finalize()))
}

/// `pair`, the answer to `refresh_token`, sealed for a retry of it:
/// XChaCha20-Poly1305 under a key derived from the token, the token's
/// digest as associated data; the nonce first.
pub fn seal_answer(refresh_token: &str, pair: &TokenPair) -> Result<Vec<u8>, AuthError> {
    let nonce = random_bytes::<ANSWER_NONCE_LENGTH>();
    let plaintext = pair.encode_to_vec();
    let associated = digest(refresh_token);
    let ciphertext = answer_cipher(refresh_token)
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: associated.as_bytes(),
            },
        )
        .map_err(|_| AuthError::Crypto("sealing a refresh answer"))?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&ciphertext);
    Ok(sealed)
}

/// The pair sealed for `refresh_token`, or `None` if `sealed` is not its.
pub fn open_answer(refresh_token: &str, sealed: &[u8]) -> Option<TokenPair> {
    if sealed.len() <= ANSWER_NONCE_LENGTH {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(ANSWER_NONCE_LENGTH);
    let associated = digest(refresh_token);
    let plaintext = answer_cipher(refresh_token)
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: associated.as_bytes(),
            },
        )
        .ok()?;
    TokenPair::decode(plaintext.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_answer_opens_only_with_its_refresh_token() {
        let pair = TokenPair {
            access_token: "header.claims.signature".into(),
            token_type: "Bearer".into(),
            access_token_expire_time: Some(timestamp(1_000_000)),
            refresh_token: "mxr_successor".into(),
            refresh_token_expire_time: Some(timestamp(2_000_000)),
        };
        let sealed = seal_answer("mxr_spent", &pair).expect("seals");
        assert_eq!(open_answer("mxr_spent", &sealed), Some(pair.clone()));
        assert_eq!(open_answer("mxr_other", &sealed), None, "another token cannot open it");
        assert!(
            !sealed.windows(13).any(|window| window == b"mxr_successor"),
            "the successor is not readable in the store"
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(open_answer("mxr_spent", &tampered), None);
        assert_ne!(
            seal_answer("mxr_spent", &pair).expect("seals"),
            sealed,
            "a fresh nonce each time"
        );
    }
}
