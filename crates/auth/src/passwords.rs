//! Password hashing with Argon2id at OWASP's parameters (19 MiB, 2 passes,
//! 1 lane), always on the blocking pool so that a sign-in never stalls the
//! async workers.

use std::sync::OnceLock;
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::AuthError;

/// OWASP Password Storage Cheat Sheet: m = 19 MiB, t = 2, p = 1.
#[allow(clippy::expect_used, reason = "constant parameters within Argon2's bounds")]
fn argon2() -> Argon2<'static> {
    let params =
        Params::new(19 * 1024, 2, 1, None).expect("the OWASP argon2 parameters are within the algorithm's bounds");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// How long a request waits for a hashing slot before it is refused.
const SLOT_WAIT: Duration = Duration::from_secs(2);

/// Each hash takes 19 MiB and a core for tens of milliseconds: at most two
/// per core run at once, so a flood of sign-ins queues briefly and is then
/// refused instead of exhausting memory.
async fn hashing_slot() -> Result<SemaphorePermit<'static>, AuthError> {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    let slots = SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Semaphore::new(cores * 2)
    });
    match tokio::time::timeout(SLOT_WAIT, slots.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(AuthError::Throttled {
            message: "the service is busy, retry shortly",
            retry_after: Duration::from_secs(1),
        }),
    }
}

/// Hashes a password into a PHC string.
pub async fn hash(password: SecretString) -> Result<String, AuthError> {
    let _slot = hashing_slot().await?;
    tokio::task::spawn_blocking(move || {
        argon2()
            .hash_password(password.expose_secret().as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|_| AuthError::Hashing)
    })
    .await?
}

/// Whether `password` matches `stored`. Without a stored hash (an unknown
/// email, or an account without a password) a dummy hash is checked, so the
/// time taken does not tell whether the account exists.
pub async fn verify(password: SecretString, stored: Option<String>) -> Result<bool, AuthError> {
    let _slot = hashing_slot().await?;
    tokio::task::spawn_blocking(move || {
        let (stored, real) = match stored {
            Some(stored) => (stored, true),
            None => (dummy_hash().to_owned(), false),
        };
        let Ok(parsed) = PasswordHash::new(&stored) else {
            tracing::error!("stored password hash is not a PHC string");
            return Err(AuthError::Hashing);
        };
        let matches = argon2()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        Ok(matches && real)
    })
    .await?
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = crate::secrets::random_token("");
        argon2()
            .hash_password(random.as_bytes())
            .map(|hash| hash.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let stored = hash(SecretString::from("correct horse battery staple")).await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            verify(SecretString::from("correct horse battery staple"), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(
            !verify(SecretString::from("wrong horse battery staple"), Some(stored))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn no_stored_hash_never_verifies() {
        assert!(!verify(SecretString::from("anything at all"), None).await.unwrap());
    }
}
