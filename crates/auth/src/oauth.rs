//! Sign-in with an OpenID Connect provider (Google): the authorization URL
//! with PKCE, the code exchange, and ID-token verification against the
//! provider's published keys. Every endpoint is configuration, so tests run
//! against a local fake provider.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use metrix_core::error::FieldViolation;
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use crate::error::AuthError;
use crate::secrets::constant_time_eq;
use crate::settings::GoogleSettings;

/// Provider keys are fetched again after this long.
const KEY_TTL: Duration = Duration::from_secs(3600);
/// An unknown `kid` triggers a fetch at most this often.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// The identity an ID token asserts.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The provider's stable user id.
    pub subject: String,
    /// The verified email address.
    pub email: String,
    /// The user's name, if given.
    pub name: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Text(String),
}

impl Flag {
    fn is_true(&self) -> bool {
        match self {
            Flag::Bool(value) => *value,
            Flag::Text(text) => text == "true",
        }
    }
}

#[derive(Deserialize)]
struct IdTokenClaims {
    sub: String,
    email: Option<String>,
    email_verified: Option<Flag>,
    name: Option<String>,
    nonce: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

struct ProviderKeys {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    fetched_at: Option<Instant>,
}

/// One configured provider.
pub struct OidcProvider {
    settings: GoogleSettings,
    http: reqwest::Client,
    keys: RwLock<ProviderKeys>,
    last_refresh: Mutex<Option<Instant>>,
}

impl OidcProvider {
    /// A provider with `settings`.
    pub fn new(settings: GoogleSettings) -> Result<Self, AuthError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent("metrix-auth")
            .build()
            .map_err(|error| AuthError::Provider(Box::new(error)))?;
        Ok(Self {
            settings,
            http,
            keys: RwLock::new(ProviderKeys {
                keys: HashMap::new(),
                fetched_at: None,
            }),
            last_refresh: Mutex::new(None),
        })
    }

    /// The redirect URI to use: the requested one if configured, else the default.
    pub fn redirect_uri(&self, requested: &str) -> Result<url::Url, FieldViolation> {
        if requested.is_empty() {
            return self
                .settings
                .redirect_uris
                .first()
                .cloned()
                .ok_or_else(|| FieldViolation::new("redirect_uri", "is required: no default is configured"));
        }
        self.settings
            .redirect_uris
            .iter()
            .find(|uri| uri.as_str() == requested)
            .cloned()
            .ok_or_else(|| FieldViolation::new("redirect_uri", "is not one of the configured redirect uris"))
    }

    /// The authorization URL for the browser.
    pub fn authorization_url(&self, redirect_uri: &url::Url, state: &str, nonce: &str, challenge: &str) -> url::Url {
        let mut url = self.settings.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", redirect_uri.as_str())
            .append_pair("scope", "openid email profile")
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        url
    }

    /// Exchanges an authorization code for the ID token.
    pub async fn exchange_code(&self, code: &str, redirect_uri: &str, verifier: &str) -> Result<String, AuthError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", self.settings.client_id.as_str()),
            ("client_secret", self.settings.client_secret.expose_secret()),
            ("code_verifier", verifier),
        ];
        let response = self
            .http
            .post(self.settings.token_endpoint.clone())
            .form(&form)
            .send()
            .await
            .map_err(|error| AuthError::Provider(Box::new(error)))?;
        if response.status().is_client_error() {
            tracing::info!(
                status = response.status().as_u16(),
                "provider refused the authorization code"
            );
            return Err(AuthError::Unauthenticated(
                "the identity provider refused the authorization code",
            ));
        }
        let response = response
            .error_for_status()
            .map_err(|error| AuthError::Provider(Box::new(error)))?;
        let body: TokenResponse = response
            .json()
            .await
            .map_err(|error| AuthError::Provider(Box::new(error)))?;
        body.id_token
            .ok_or(AuthError::Unauthenticated("the identity provider returned no id token"))
    }

    /// Verifies an ID token: signature by a provider key, issuer, audience
    /// (this client), expiry, the nonce when one is expected, and a verified
    /// email.
    pub async fn verify_id_token(&self, token: &str, expected_nonce: Option<&str>) -> Result<Identity, AuthError> {
        const INVALID: AuthError = AuthError::Unauthenticated("invalid id token");
        let header = jsonwebtoken::decode_header(token).map_err(|_| INVALID)?;
        let kid = header.kid.ok_or(INVALID)?;
        let (key, algorithm) = match self.key(&kid).await {
            Some(found) => found,
            None => {
                self.refresh_keys().await?;
                self.key(&kid).await.ok_or(INVALID)?
            }
        };
        if header.alg != algorithm {
            return Err(INVALID);
        }
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&[&self.settings.client_id]);
        validation.set_issuer(&self.settings.issuers);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 60;
        let claims = jsonwebtoken::decode::<IdTokenClaims>(token, &key, &validation)
            .map_err(|error| {
                tracing::info!(error = %error, "id token refused");
                INVALID
            })?
            .claims;
        if let Some(expected) = expected_nonce {
            let matches = claims
                .nonce
                .as_deref()
                .is_some_and(|nonce| constant_time_eq(nonce, expected));
            if !matches {
                return Err(AuthError::Unauthenticated("id token nonce does not match"));
            }
        }
        let verified = claims.email_verified.as_ref().is_some_and(Flag::is_true);
        let email = claims.email.filter(|_| verified).ok_or(AuthError::Unauthenticated(
            "the identity provider has not verified this email",
        ))?;
        Ok(Identity {
            subject: claims.sub,
            email,
            name: claims.name,
        })
    }

    async fn key(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        let keys = self.keys.read().await;
        let fresh = keys.fetched_at.is_some_and(|fetched| fetched.elapsed() < KEY_TTL);
        if fresh { keys.keys.get(kid).cloned() } else { None }
    }

    async fn refresh_keys(&self) -> Result<(), AuthError> {
        let mut last_refresh = self.last_refresh.lock().await;
        let stale = self
            .keys
            .read()
            .await
            .fetched_at
            .is_none_or(|fetched| fetched.elapsed() >= KEY_TTL);
        if !stale && last_refresh.is_some_and(|last| last.elapsed() < MIN_REFRESH_INTERVAL) {
            return Ok(());
        }
        let set: JwkSet = self
            .http
            .get(self.settings.jwks_uri.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| AuthError::Provider(Box::new(error)))?
            .json()
            .await
            .map_err(|error| AuthError::Provider(Box::new(error)))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else { continue };
            let algorithm = match jwk.common.key_algorithm {
                Some(KeyAlgorithm::RS256) | None => Algorithm::RS256,
                Some(KeyAlgorithm::RS384) => Algorithm::RS384,
                Some(KeyAlgorithm::RS512) => Algorithm::RS512,
                Some(KeyAlgorithm::ES256) => Algorithm::ES256,
                Some(KeyAlgorithm::ES384) => Algorithm::ES384,
                Some(_) => continue,
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, (key, algorithm));
                }
                Err(error) => tracing::warn!(kid, error = %error, "ignoring unusable provider key"),
            }
        }
        *self.keys.write().await = ProviderKeys {
            keys,
            fetched_at: Some(Instant::now()),
        };
        *last_refresh = Some(Instant::now());
        Ok(())
    }
}
