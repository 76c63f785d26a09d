//! Signing keys: Ed25519 pairs whose private halves are stored encrypted
//! (XChaCha20-Poly1305 under the master key, the key id as associated data).
//!
//! There is always one `current` key that signs and one `next` key that is
//! already published, so that verifiers know it before it signs anything.
//! Rotation retires the current key, promotes the next and creates a new
//! next; a retired key stays published until every token it signed expired.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::EncodingKey;
use metrix_core::storage::{Database, is_unique_violation};
use metrix_core::time::{duration_micros, now_micros};
use metrix_core::with_pool;
use metrix_proto::auth::v1::JsonWebKey;
use secrecy::{ExposeSecret, SecretBox};
use tokio::sync::RwLock;

use crate::error::AuthError;
use crate::secrets::random_bytes;

const NONCE_LENGTH: usize = 24;

/// The key that signs now, ready to use.
#[derive(Clone)]
pub struct ActiveKey {
    /// The key id (`kid`).
    pub key_id: String,
    /// The private key in the form `jsonwebtoken` signs with.
    pub encoding_key: EncodingKey,
}

/// The published keys and the active one, as last loaded.
struct Loaded {
    active: ActiveKey,
    published: Vec<JsonWebKey>,
}

/// Keeps the signing keys: creates them, rotates them, publishes them.
pub struct KeyRing {
    database: Database,
    cipher: XChaCha20Poly1305,
    /// Retired keys stay published this long: the access-token lifetime plus
    /// verifiers' clock leeway.
    retired_key_lifetime: Duration,
    loaded: RwLock<Option<Arc<Loaded>>>,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    key_id: String,
    state: String,
    public_key: Vec<u8>,
    encrypted_private_key: Vec<u8>,
}

/// What a rotation did.
pub struct Rotation {
    /// The key that signs from now on.
    pub current_key_id: String,
    /// The key published for the next rotation.
    pub next_key_id: String,
    /// The key that signed until now.
    pub retired_key_id: String,
}

impl KeyRing {
    /// A key ring over `database`, encrypting with `master_key`.
    pub fn new(database: Database, master_key: &SecretBox<[u8; 32]>, retired_key_lifetime: Duration) -> Self {
        let cipher = XChaCha20Poly1305::new(master_key.expose_secret().into());
        Self {
            database,
            cipher,
            retired_key_lifetime,
            loaded: RwLock::new(None),
        }
    }

    /// Creates the current and next keys when missing (safe to race with
    /// other instances: uniqueness is enforced by the store), then loads.
    pub async fn ensure_keys(&self) -> Result<(), AuthError> {
        for state in ["current", "next"] {
            let exists: Option<(String,)> = with_pool!(&self.database, pool => {
                sqlx::query_as("SELECT key_id FROM signing_keys WHERE state = $1").bind(state).fetch_optional(pool).await
            })?;
            if exists.is_none() {
                match self.insert_key(state).await {
                    Ok(()) => tracing::info!(state, "created signing key"),
                    Err(AuthError::Storage(error)) if is_unique_violation(&error) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        self.reload().await
    }

    async fn insert_key(&self, state: &str) -> Result<(), AuthError> {
        let (key_id, public_key, encrypted) = self.generate()?;
        let now = now_micros();
        let activated_at = (state == "current").then_some(now);
        with_pool!(&self.database, pool => {
            sqlx::query("INSERT INTO signing_keys (key_id, state, public_key, encrypted_private_key, created_at, activated_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&key_id).bind(state).bind(&public_key).bind(&encrypted).bind(now).bind(activated_at)
                .execute(pool).await.map(|_| ())
        })?;
        Ok(())
    }

    /// A new key: its id, public key and encrypted private key.
    fn generate(&self) -> Result<(String, Vec<u8>, Vec<u8>), AuthError> {
        let seed = zeroize::Zeroizing::new(random_bytes::<32>());
        let signing_key = SigningKey::from_bytes(&seed);
        let public_key = signing_key.verifying_key().to_bytes().to_vec();
        let key_id = format!("k{}", uuid::Uuid::now_v7().simple());
        let nonce = random_bytes::<NONCE_LENGTH>();
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: seed.as_slice(),
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| AuthError::Crypto("encrypting a signing key"))?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&ciphertext);
        Ok((key_id, public_key, stored))
    }

    fn decrypt(&self, row: &KeyRow) -> Result<EncodingKey, AuthError> {
        if row.encrypted_private_key.len() <= NONCE_LENGTH {
            return Err(AuthError::Crypto("stored signing key is truncated"));
        }
        let (nonce, ciphertext) = row.encrypted_private_key.split_at(NONCE_LENGTH);
        let seed = zeroize::Zeroizing::new(
            self.cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: row.key_id.as_bytes(),
                    },
                )
                .map_err(|_| {
                    AuthError::Crypto(
                        "decrypting a signing key (is METRIX_AUTH__MASTER_KEY the one it was stored with?)",
                    )
                })?,
        );
        let seed: [u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| AuthError::Crypto("stored signing key has the wrong length"))?;
        let signing_key = SigningKey::from_bytes(&seed);
        let document = signing_key
            .to_pkcs8_der()
            .map_err(|_| AuthError::Crypto("encoding a signing key"))?;
        Ok(EncodingKey::from_ed_der(document.as_bytes()))
    }

    /// Reads the keys from the store again.
    pub async fn reload(&self) -> Result<(), AuthError> {
        let published_since = now_micros() - duration_micros(self.retired_key_lifetime);
        let rows: Vec<KeyRow> = with_pool!(&self.database, pool => {
            sqlx::query_as("SELECT key_id, state, public_key, encrypted_private_key FROM signing_keys WHERE state IN ('current', 'next') OR retired_at > $1 ORDER BY created_at DESC")
                .bind(published_since)
                .fetch_all(pool).await
        })?;
        let current = rows
            .iter()
            .find(|row| row.state == "current")
            .ok_or(AuthError::Crypto("no current signing key"))?;
        let active = ActiveKey {
            key_id: current.key_id.clone(),
            encoding_key: self.decrypt(current)?,
        };
        let published = rows
            .iter()
            .map(|row| public_jwk(&row.key_id, &row.public_key))
            .collect();
        *self.loaded.write().await = Some(Arc::new(Loaded { active, published }));
        Ok(())
    }

    async fn loaded(&self) -> Result<Arc<Loaded>, AuthError> {
        if let Some(loaded) = self.loaded.read().await.clone() {
            return Ok(loaded);
        }
        self.reload().await?;
        self.loaded
            .read()
            .await
            .clone()
            .ok_or(AuthError::Crypto("signing keys not loaded"))
    }

    /// The key that signs now.
    pub async fn active(&self) -> Result<ActiveKey, AuthError> {
        Ok(self.loaded().await?.active.clone())
    }

    /// The published keys.
    pub async fn published(&self) -> Result<Vec<JsonWebKey>, AuthError> {
        Ok(self.loaded().await?.published.clone())
    }

    /// When the keys were last rotated, if ever.
    pub async fn last_rotation_at(&self) -> Result<Option<i64>, AuthError> {
        let (last,): (Option<i64>,) = with_pool!(&self.database, pool => {
            sqlx::query_as("SELECT MAX(retired_at) FROM signing_keys").fetch_one(pool).await
        })?;
        Ok(last)
    }

    /// Rotates: current → retired, next → current, a new next.
    pub async fn rotate(&self) -> Result<Rotation, AuthError> {
        let (new_next_id, public_key, encrypted) = self.generate()?;
        let now = now_micros();
        let rotation = with_pool!(&self.database, pool => {
            let mut transaction = pool.begin().await?;
            let current: (String,) = sqlx::query_as("SELECT key_id FROM signing_keys WHERE state = 'current'").fetch_one(&mut *transaction).await?;
            let next: (String,) = sqlx::query_as("SELECT key_id FROM signing_keys WHERE state = 'next'").fetch_one(&mut *transaction).await?;
            sqlx::query("UPDATE signing_keys SET state = 'retired', retired_at = $1 WHERE key_id = $2").bind(now).bind(&current.0).execute(&mut *transaction).await?;
            sqlx::query("UPDATE signing_keys SET state = 'current', activated_at = $1 WHERE key_id = $2").bind(now).bind(&next.0).execute(&mut *transaction).await?;
            sqlx::query("INSERT INTO signing_keys (key_id, state, public_key, encrypted_private_key, created_at) VALUES ($1, 'next', $2, $3, $4)")
                .bind(&new_next_id).bind(&public_key).bind(&encrypted).bind(now).execute(&mut *transaction).await?;
            transaction.commit().await?;
            Ok::<_, sqlx::Error>(Rotation { current_key_id: next.0, next_key_id: new_next_id.clone(), retired_key_id: current.0 })
        })?;
        self.reload().await?;
        Ok(rotation)
    }
}

/// The JWK of an Ed25519 public key.
fn public_jwk(key_id: &str, public_key: &[u8]) -> JsonWebKey {
    JsonWebKey {
        kty: "OKP".to_owned(),
        kid: key_id.to_owned(),
        alg: "EdDSA".to_owned(),
        r#use: "sig".to_owned(),
        crv: "Ed25519".to_owned(),
        x: URL_SAFE_NO_PAD.encode(public_key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_keys_are_verifiable_jwks() {
        let seed = [7u8; 32];
        let public_key = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        let jwk = public_jwk("k1", &public_key);
        assert!(metrix_core::authn::jwks::decoding_key(&jwk).is_ok());
    }
}
