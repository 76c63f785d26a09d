//! Local verification of access tokens against the auth service's JSON Web
//! Key Set, fetched once, cached, and fetched again when a token names a key
//! it does not know (at most once per [`MIN_REFRESH_INTERVAL`]).
//!
//! A token that verified is remembered (by its SHA-256) until it expires, so
//! the many calls of one session pay for the signature check once; the
//! remembered answer holds only while the token's key is still in the
//! current key set, so a key withdrawn from the set stops its tokens at the
//! next key refresh, exactly as without the memory.
//!
//! Every token, remembered or not, is then checked against the revocations
//! the key set's issuer publishes ([`super::revocations`]): a closed session
//! or a superseded authorization version is refused long before `exp`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use metrix_proto::auth::v1::auth_service_client::AuthServiceClient;
use metrix_proto::auth::v1::{GetJwksRequest, JsonWebKey, WatchRevocationsRequest};
use sha2::{Digest as _, Sha256};
use tokio::sync::{Mutex, RwLock};
use tonic::Status;
use tonic::transport::Channel;

use super::revocations::{
    Revocation, RevocationBatch, RevocationFeed, RevocationList, TokenIdentity, id_digest, unix_now,
};
use super::{AccessClaims, SignedClaims};

/// A token naming an unknown key triggers a refresh at most this often, so
/// forged `kid`s cannot turn every request into a key fetch.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Keys are re-fetched this long after the last fetch even when every token
/// names a known key, so retired keys stop being trusted.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(300);

/// While the key set cannot be fetched, keys fetched within this long are
/// still trusted, so an auth outage does not stop every other service.
pub const MAX_STALE_KEY_AGE: Duration = Duration::from_secs(3600);

/// The most verified tokens remembered at once; beyond it, expired ones are
/// dropped, and if none has expired, all are (they are verified again).
pub const MAX_REMEMBERED_TOKENS: usize = 10_000;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or claims of the wrong shape.
    #[error("malformed token")]
    Malformed,
    /// A header algorithm other than EdDSA (including `none` and HMAC).
    #[error("token algorithm not accepted")]
    Algorithm,
    /// No `kid`, or a `kid` not in the key set.
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// The signature does not match.
    #[error("invalid token signature")]
    Signature,
    /// Past its `exp`.
    #[error("token expired")]
    Expired,
    /// Before its `nbf`.
    #[error("token not yet valid")]
    NotYetValid,
    /// Wrong `iss`.
    #[error("token issuer not accepted")]
    Issuer,
    /// Wrong `aud`.
    #[error("token audience not accepted")]
    Audience,
    /// The key set could not be fetched.
    #[error("signing keys unavailable")]
    KeysUnavailable,
    /// The token's session was closed (signed out, revoked, or its refresh
    /// token reused).
    #[error("the session was signed out or revoked: sign in again")]
    SessionRevoked,
    /// The subject's authorization changed since the token was issued (a new
    /// role, a deactivated account, a rotated or revoked service account).
    #[error("the token was superseded by a change of role or account: refresh it or sign in again")]
    Superseded,
    /// The revocations are not known (the feed has not answered yet, or has
    /// been silent for too long).
    #[error("token revocations unavailable")]
    RevocationsUnavailable,
}

impl From<TokenError> for Status {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::KeysUnavailable => Status::unavailable("signing keys unavailable, retry later"),
            TokenError::RevocationsUnavailable => Status::unavailable("token revocations unavailable, retry later"),
            other => Status::unauthenticated(other.to_string()),
        }
    }
}

/// Where the key set comes from, and the revocations of its issuer.
#[async_trait]
pub trait JwksSource: Send + Sync + 'static {
    /// The published keys.
    async fn fetch(&self) -> Result<Vec<JsonWebKey>, Status>;

    /// The issuer's revocation feed (see [`super::revocations`]): `Ok(None)`
    /// when the issuer never revokes (a fixed key set in a test or a
    /// benchmark), an error when the feed cannot be opened now (it is
    /// opened again shortly; UNIMPLEMENTED means the issuer publishes none
    /// yet). A source of real tokens must answer with a feed.
    async fn revocations(&self) -> Result<Option<RevocationFeed>, Status> {
        Ok(None)
    }
}

/// The key set of a remote auth service, over gRPC.
pub struct RemoteJwks {
    client: AuthServiceClient<Channel>,
}

impl RemoteJwks {
    /// Fetches from the auth service at `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: AuthServiceClient::new(channel),
        }
    }
}

#[async_trait]
impl JwksSource for RemoteJwks {
    async fn fetch(&self) -> Result<Vec<JsonWebKey>, Status> {
        let mut client = self.client.clone();
        Ok(client.get_jwks(GetJwksRequest {}).await?.into_inner().keys)
    }

    async fn revocations(&self) -> Result<Option<RevocationFeed>, Status> {
        use futures::StreamExt as _;
        let mut client = self.client.clone();
        let stream = client.watch_revocations(WatchRevocationsRequest {}).await?.into_inner();
        Ok(Some(
            stream
                .map(|message| message.map(|message| RevocationBatch::from_proto(&message)))
                .boxed(),
        ))
    }
}

struct KeySet {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// The last attempt to fetch the key set: when, and whether it worked.
#[derive(Clone, Copy)]
struct Attempt {
    at: Instant,
    succeeded: bool,
}

/// A genuine token of an open session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Its authorization version is current: its claims hold.
    Current(AccessClaims),
    /// Its subject's authorization changed since it was issued (a new role,
    /// a deactivated account, a rotated or revoked service account): its
    /// subject and session are genuine, its role and scopes stale.
    Superseded(AccessClaims),
}

/// A token that verified: its claims, what the revocation check needs and
/// the key that signed it.
#[derive(Clone)]
struct Remembered {
    claims: AccessClaims,
    identity: TokenIdentity,
    kid: String,
}

/// Verifies access tokens locally.
pub struct TokenVerifier {
    source: Arc<dyn JwksSource>,
    validation: Validation,
    keys: RwLock<KeySet>,
    last_attempt: Mutex<Option<Attempt>>,
    remembered: std::sync::Mutex<HashMap<[u8; 32], Remembered>>,
    revocations: Arc<RevocationList>,
}

impl TokenVerifier {
    /// Accepts EdDSA tokens from `issuer` for `audience`, signed by a key of `source`.
    pub fn new(source: Arc<dyn JwksSource>, issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Self {
            source,
            validation,
            keys: RwLock::new(KeySet {
                keys: HashMap::new(),
                fetched_at: None,
            }),
            last_attempt: Mutex::new(None),
            remembered: std::sync::Mutex::new(HashMap::new()),
            revocations: Arc::new(RevocationList::new()),
        }
    }

    /// The claims of `token` if it is valid now, its session open and its
    /// authorization version current.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        match self.verify_token(token).await? {
            Verified::Current(claims) => Ok(claims),
            Verified::Superseded(_) => Err(TokenError::Superseded),
        }
    }

    /// The claims of `token` if it is valid now and its session open, and
    /// whether its authorization version is still current.
    pub async fn verify_token(&self, token: &str) -> Result<Verified, TokenError> {
        self.revocations.start(&self.source);
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let remembered = match self.remembered(&digest) {
            Some(remembered) if self.cached_key(&remembered.kid, MAX_KEY_AGE).await.is_some() => remembered,
            _ => {
                let (signed, kid) = self.verify_signed(token).await?;
                let remembered = Remembered {
                    identity: TokenIdentity {
                        session: signed.claims.sid.as_deref().map(id_digest),
                        subject: id_digest(&signed.claims.sub),
                        version: signed.ver,
                    },
                    claims: signed.claims,
                    kid,
                };
                self.remember(digest, remembered.clone());
                remembered
            }
        };
        self.revocations.ready().await?;
        match self.revocations.check(&remembered.identity) {
            Ok(()) => Ok(Verified::Current(remembered.claims)),
            Err(TokenError::Superseded) => Ok(Verified::Superseded(remembered.claims)),
            Err(error) => Err(error),
        }
    }

    /// Applies revocations at once, before any feed brings them (the auth
    /// service does, for those it has just made).
    pub fn apply_revocations(&self, revocations: &[Revocation]) {
        self.revocations.apply_local(revocations);
    }

    /// Whether the API key `api_key_id` is known to be revoked (a cached
    /// verification of it must then not be trusted).
    pub fn api_key_revoked(&self, api_key_id: &str) -> bool {
        self.revocations.start(&self.source);
        self.revocations.api_key_revoked(api_key_id)
    }

    /// The remembered verification of a token, if it has not expired.
    fn remembered(&self, digest: &[u8; 32]) -> Option<Remembered> {
        let remembered = self
            .remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = remembered.get(digest)?;
        (entry.claims.exp > unix_now()).then(|| entry.clone())
    }

    fn remember(&self, digest: [u8; 32], entry: Remembered) {
        let mut remembered = self
            .remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if remembered.len() >= MAX_REMEMBERED_TOKENS {
            let now = unix_now();
            remembered.retain(|_, entry| entry.claims.exp > now);
            if remembered.len() >= MAX_REMEMBERED_TOKENS {
                remembered.clear();
            }
        }
        remembered.insert(digest, entry);
    }

    /// Checks the signature and claims of `token`; its claims and key id.
    async fn verify_signed(&self, token: &str) -> Result<(SignedClaims, String), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Algorithm);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = match self.cached_key(&kid, MAX_KEY_AGE).await {
            Some(key) => key,
            None => {
                let fetched = self.refresh_keys().await;
                // After a failed fetch, keys from a recent successful one
                // still serve; an unknown key is then "unavailable", not
                // "invalid", since it may be a new key we could not learn.
                match (self.cached_key(&kid, MAX_STALE_KEY_AGE).await, fetched) {
                    (Some(key), _) => key,
                    (None, Ok(())) => return Err(TokenError::UnknownKey),
                    (None, Err(error)) => return Err(error),
                }
            }
        };
        let data = jsonwebtoken::decode::<SignedClaims>(token, &key, &self.validation).map_err(classify)?;
        Ok((data.claims, kid))
    }

    /// Drops the cached keys and remembered tokens, so the next verification
    /// fetches the keys and checks the signature again.
    pub async fn forget_keys(&self) {
        let mut keys = self.keys.write().await;
        keys.keys.clear();
        keys.fetched_at = None;
        *self.last_attempt.lock().await = None;
        self.remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// The key `kid` if it was fetched within `max_age`.
    async fn cached_key(&self, kid: &str, max_age: Duration) -> Option<DecodingKey> {
        let keys = self.keys.read().await;
        let recent = keys.fetched_at.is_some_and(|fetched| fetched.elapsed() < max_age);
        if recent { keys.keys.get(kid).cloned() } else { None }
    }

    /// Fetches the key set, unless an attempt was made within
    /// [`MIN_REFRESH_INTERVAL`] (successful or not) while the keys are
    /// younger than [`MAX_KEY_AGE`]; then answers as that attempt did.
    async fn refresh_keys(&self) -> Result<(), TokenError> {
        let mut last_attempt = self.last_attempt.lock().await;
        let stale = self
            .keys
            .read()
            .await
            .fetched_at
            .is_none_or(|fetched| fetched.elapsed() >= MAX_KEY_AGE);
        if let Some(attempt) = *last_attempt
            && attempt.at.elapsed() < MIN_REFRESH_INTERVAL
            && (!stale || !attempt.succeeded)
        {
            return if attempt.succeeded {
                Ok(())
            } else {
                Err(TokenError::KeysUnavailable)
            };
        }
        let fetched = match self.source.fetch().await {
            Ok(fetched) => fetched,
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "cannot fetch signing keys");
                *last_attempt = Some(Attempt {
                    at: Instant::now(),
                    succeeded: false,
                });
                return Err(TokenError::KeysUnavailable);
            }
        };
        let keys = fetched
            .iter()
            .filter_map(|jwk| match decoding_key(jwk) {
                Ok(key) => Some((jwk.kid.clone(), key)),
                Err(problem) => {
                    tracing::warn!(kid = %jwk.kid, problem, "ignoring unusable signing key");
                    None
                }
            })
            .collect();
        *self.keys.write().await = KeySet {
            keys,
            fetched_at: Some(Instant::now()),
        };
        *last_attempt = Some(Attempt {
            at: Instant::now(),
            succeeded: true,
        });
        Ok(())
    }
}

/// The verification key of an Ed25519 JWK, checked before use.
pub fn decoding_key(jwk: &JsonWebKey) -> Result<DecodingKey, &'static str> {
    if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
        return Err("not an Ed25519 key");
    }
    if !jwk.alg.is_empty() && jwk.alg != "EdDSA" {
        return Err("not an EdDSA key");
    }
    if jwk.kid.is_empty() {
        return Err("no key id");
    }
    let bytes = URL_SAFE_NO_PAD.decode(&jwk.x).map_err(|_| "x is not base64url")?;
    if bytes.len() != 32 {
        return Err("x is not 32 bytes");
    }
    Ok(DecodingKey::from_ed_der(&bytes))
}

fn classify(error: jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::Algorithm,
        _ => TokenError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ed25519_dalek::SigningKey;
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;
    use crate::authn::Role;
    use crate::authn::revocations::Revoked;

    /// A key set that counts its fetches and can be changed.
    struct CountingSource {
        keys: std::sync::Mutex<Vec<JsonWebKey>>,
        fetches: AtomicUsize,
    }

    #[async_trait]
    impl JwksSource for CountingSource {
        async fn fetch(&self) -> Result<Vec<JsonWebKey>, Status> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            Ok(self.keys.lock().expect("lock").clone())
        }
    }

    fn jwk(kid: &str, key: &SigningKey) -> JsonWebKey {
        JsonWebKey {
            kty: "OKP".into(),
            kid: kid.into(),
            alg: "EdDSA".into(),
            r#use: "sig".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
        }
    }

    fn token(kid: &str, key: &SigningKey) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = AccessClaims {
            iss: "metrix".into(),
            aud: "metrix".into(),
            sub: "user-1".into(),
            org: "org-1".into(),
            role: Role::Analyst,
            sid: Some("session-1".into()),
            scope: String::new(),
            iat: now,
            nbf: now,
            exp: now + 600,
            jti: "j".into(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        let der = key.to_pkcs8_der().expect("encodes");
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).expect("signs")
    }

    #[tokio::test]
    async fn keys_are_fetched_once_and_again_only_for_a_new_kid() {
        let first = SigningKey::from_bytes(&[1; 32]);
        let second = SigningKey::from_bytes(&[2; 32]);
        let source = Arc::new(CountingSource {
            keys: std::sync::Mutex::new(vec![jwk("k1", &first)]),
            fetches: AtomicUsize::new(0),
        });
        let verifier = TokenVerifier::new(source.clone(), "metrix", "metrix");

        for _ in 0..3 {
            assert_eq!(
                verifier.verify(&token("k1", &first)).await.expect("valid").role,
                Role::Analyst
            );
        }
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1, "cached after the first fetch");

        // A rotation elsewhere: the new kid triggers a fetch… once the
        // minimum interval allows it.
        source.keys.lock().expect("lock").push(jwk("k2", &second));
        verifier.forget_keys().await;
        assert!(verifier.verify(&token("k2", &second)).await.is_ok());
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);

        // Forged kids cannot make every request fetch.
        for attempt in 0..5 {
            let forged = token(&format!("forged-{attempt}"), &second);
            assert_eq!(
                verifier.verify(&forged).await.expect_err("unknown"),
                TokenError::UnknownKey
            );
        }
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2, "refreshes are rate limited");
    }

    #[tokio::test]
    async fn a_remembered_token_stops_verifying_when_its_key_is_withdrawn() {
        let first = SigningKey::from_bytes(&[5; 32]);
        let second = SigningKey::from_bytes(&[6; 32]);
        let source = Arc::new(CountingSource {
            keys: std::sync::Mutex::new(vec![jwk("k1", &first)]),
            fetches: AtomicUsize::new(0),
        });
        let verifier = TokenVerifier::new(source.clone(), "metrix", "metrix");
        let remembered = token("k1", &first);
        assert!(verifier.verify(&remembered).await.is_ok());
        assert!(verifier.verify(&remembered).await.is_ok(), "served from memory");
        let mut tampered = remembered.clone();
        tampered.pop();
        assert!(
            verifier.verify(&tampered).await.is_err(),
            "another text is checked anew"
        );

        // The key leaves the published set; the next refresh learns it.
        *source.keys.lock().expect("lock") = vec![jwk("k2", &second)];
        {
            let mut keys = verifier.keys.write().await;
            keys.fetched_at = Some(Instant::now() - MAX_KEY_AGE - Duration::from_secs(1));
        }
        assert_eq!(
            verifier.verify(&remembered).await.expect_err("withdrawn"),
            TokenError::UnknownKey
        );
    }

    /// A source that fails on demand.
    struct FlakySource {
        key: JsonWebKey,
        down: std::sync::atomic::AtomicBool,
        fetches: AtomicUsize,
    }

    #[async_trait]
    impl JwksSource for FlakySource {
        async fn fetch(&self) -> Result<Vec<JsonWebKey>, Status> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                Err(Status::unavailable("auth is down"))
            } else {
                Ok(vec![self.key.clone()])
            }
        }
    }

    #[tokio::test]
    async fn an_outage_neither_floods_auth_nor_refuses_known_keys() {
        let key = SigningKey::from_bytes(&[4; 32]);
        let source = Arc::new(FlakySource {
            key: jwk("k1", &key),
            down: std::sync::atomic::AtomicBool::new(true),
            fetches: AtomicUsize::new(0),
        });
        let verifier = TokenVerifier::new(source.clone(), "metrix", "metrix");
        for _ in 0..5 {
            assert_eq!(
                verifier.verify(&token("k1", &key)).await.expect_err("no keys yet"),
                TokenError::KeysUnavailable
            );
        }
        assert_eq!(
            source.fetches.load(Ordering::SeqCst),
            1,
            "failed fetches are rate limited too"
        );

        source.down.store(false, Ordering::SeqCst);
        verifier.forget_keys().await;
        assert!(verifier.verify(&token("k1", &key)).await.is_ok());
        // Keys fetched before an outage keep serving while it lasts.
        source.down.store(true, Ordering::SeqCst);
        {
            let mut keys = verifier.keys.write().await;
            keys.fetched_at = Some(Instant::now() - MAX_KEY_AGE - Duration::from_secs(1));
        }
        assert!(
            verifier.verify(&token("k1", &key)).await.is_ok(),
            "a stale key still verifies during an outage"
        );
    }

    /// A key set whose issuer revokes: the feed opens with the revocations
    /// in force, then forwards each new one; it can also refuse to open.
    struct RevokingSource {
        key: JsonWebKey,
        in_force: std::sync::Mutex<Vec<Revocation>>,
        live: tokio::sync::broadcast::Sender<Revocation>,
        down: std::sync::atomic::AtomicBool,
    }

    impl RevokingSource {
        fn new(key: &SigningKey) -> Arc<Self> {
            Arc::new(Self {
                key: jwk("k1", key),
                in_force: std::sync::Mutex::new(Vec::new()),
                live: tokio::sync::broadcast::channel(16).0,
                down: std::sync::atomic::AtomicBool::new(false),
            })
        }

        fn revoke(&self, revocation: Revocation) {
            self.in_force.lock().expect("lock").push(revocation);
            let _ = self.live.send(revocation);
        }
    }

    #[async_trait]
    impl JwksSource for RevokingSource {
        async fn fetch(&self) -> Result<Vec<JsonWebKey>, Status> {
            Ok(vec![self.key.clone()])
        }

        async fn revocations(&self) -> Result<Option<RevocationFeed>, Status> {
            use futures::StreamExt as _;
            if self.down.load(Ordering::SeqCst) {
                return Err(Status::unavailable("auth is down"));
            }
            let live = tokio_stream::wrappers::BroadcastStream::new(self.live.subscribe()).filter_map(
                |revocation| async move {
                    revocation.ok().map(|revocation| {
                        Ok(RevocationBatch {
                            revocations: vec![revocation],
                            complete: false,
                        })
                    })
                },
            );
            let snapshot = RevocationBatch {
                revocations: self.in_force.lock().expect("lock").clone(),
                complete: true,
            };
            Ok(Some(futures::stream::iter([Ok(snapshot)]).chain(live).boxed()))
        }
    }

    fn versioned_token(key: &SigningKey, subject: &str, session: &str, ver: u64) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = SignedClaims {
            claims: AccessClaims {
                iss: "metrix".into(),
                aud: "metrix".into(),
                sub: subject.into(),
                org: "org-1".into(),
                role: Role::Admin,
                sid: Some(session.into()),
                scope: String::new(),
                iat: now,
                nbf: now,
                exp: now + 600,
                jti: uuid::Uuid::new_v4().to_string(),
            },
            ver,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        let der = key.to_pkcs8_der().expect("encodes");
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).expect("signs")
    }

    fn in_ten_minutes() -> u64 {
        unix_now() + 600
    }

    /// Polls `verify` until it fails, for at most two seconds.
    async fn refused_within_two_seconds(verifier: &TokenVerifier, token: &str) -> TokenError {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match verifier.verify(token).await {
                Err(error) => return error,
                Ok(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(10)).await,
                Ok(_) => panic!("still accepted two seconds after its revocation"),
            }
        }
    }

    #[tokio::test]
    async fn a_remembered_token_is_refused_once_its_session_is_revoked() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let source = RevokingSource::new(&key);
        let verifier = TokenVerifier::new(source.clone(), "metrix", "metrix");
        let token = versioned_token(&key, "user-1", "session-1", 0);
        let other = versioned_token(&key, "user-1", "session-2", 0);
        assert!(verifier.verify(&token).await.is_ok());
        assert!(verifier.verify(&token).await.is_ok(), "remembered");

        source.revoke(Revocation {
            revoked: Revoked::Session(id_digest("session-1")),
            expires_at: in_ten_minutes(),
        });
        assert_eq!(
            refused_within_two_seconds(&verifier, &token).await,
            TokenError::SessionRevoked
        );
        assert!(verifier.verify(&other).await.is_ok(), "other sessions go on");
    }

    #[tokio::test]
    async fn a_superseded_version_is_refused_and_the_new_one_accepted() {
        let key = SigningKey::from_bytes(&[8; 32]);
        let source = RevokingSource::new(&key);
        let verifier = TokenVerifier::new(source.clone(), "metrix", "metrix");
        let before = versioned_token(&key, "admin-1", "session-1", 2);
        assert!(verifier.verify(&before).await.is_ok());
        source.revoke(Revocation {
            revoked: Revoked::Subject {
                subject: id_digest("admin-1"),
                min_version: 3,
            },
            expires_at: in_ten_minutes(),
        });
        assert_eq!(
            refused_within_two_seconds(&verifier, &before).await,
            TokenError::Superseded
        );
        let after = versioned_token(&key, "admin-1", "session-1", 3);
        assert!(verifier.verify(&after).await.is_ok());
        assert_eq!(
            Status::from(verifier.verify(&before).await.expect_err("superseded")).code(),
            tonic::Code::Unauthenticated
        );
    }

    #[tokio::test]
    async fn a_verifier_started_after_a_revocation_knows_it_before_its_first_answer() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let source = RevokingSource::new(&key);
        source.revoke(Revocation {
            revoked: Revoked::Session(id_digest("session-1")),
            expires_at: in_ten_minutes(),
        });
        source.revoke(Revocation {
            revoked: Revoked::ApiKey(id_digest("key-1")),
            expires_at: in_ten_minutes(),
        });
        let fresh = TokenVerifier::new(source.clone(), "metrix", "metrix");
        assert_eq!(
            fresh
                .verify(&versioned_token(&key, "user-1", "session-1", 0))
                .await
                .expect_err("revoked before this verifier started"),
            TokenError::SessionRevoked
        );
        assert!(fresh.api_key_revoked("key-1"));
        assert!(!fresh.api_key_revoked("key-2"));
    }

    #[tokio::test]
    async fn without_its_first_snapshot_a_verifier_answers_unavailable_not_yes() {
        let key = SigningKey::from_bytes(&[10; 32]);
        let source = RevokingSource::new(&key);
        source.down.store(true, Ordering::SeqCst);
        let verifier = TokenVerifier::new(source.clone(), "metrix", "metrix");
        let token = versioned_token(&key, "user-1", "session-1", 0);
        let error = verifier.verify(&token).await.expect_err("no revocations known");
        assert_eq!(error, TokenError::RevocationsUnavailable);
        assert_eq!(Status::from(error).code(), tonic::Code::Unavailable);
        source.down.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while verifier.verify(&token).await.is_err() {
            assert!(Instant::now() < deadline, "the feed was not opened again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn unusable_keys_are_refused_before_use() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut short = jwk("k", &key);
        short.x = URL_SAFE_NO_PAD.encode([0u8; 16]);
        assert!(
            decoding_key(&short).is_err(),
            "a short key would panic inside the verifier"
        );
        let mut rsa = jwk("k", &key);
        rsa.kty = "RSA".into();
        assert!(decoding_key(&rsa).is_err());
    }
}
