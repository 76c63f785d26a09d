//! AIP-158 page tokens: opaque to the caller, bound to the query they page.
//!
//! A token is the base64url of a small JSON cursor followed by a MAC over
//! the cursor and the request's filters (HMAC-SHA-256, 128 bits), so a
//! token replayed with other filters, edited, or written by hand is refused
//! instead of silently paging the wrong list.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

use crate::error::FieldViolation;
use crate::mac::{HmacSha256, hmac_sha256};

/// The page size when the request says 0.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// The largest page size; larger requests are clamped to it (AIP-158).
pub const MAX_PAGE_SIZE: u32 = 200;

/// The page size to use for a requested `page_size`.
pub fn page_size(requested: i32) -> Result<u32, FieldViolation> {
    page_size_within(requested, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
}

/// The page size for a list whose contract sets its own default and maximum.
pub fn page_size_within(requested: i32, default: u32, maximum: u32) -> Result<u32, FieldViolation> {
    match u32::try_from(requested) {
        Err(_) => Err(FieldViolation::new("page_size", "must not be negative")),
        Ok(0) => Ok(default),
        Ok(size) => Ok(size.min(maximum)),
    }
}

/// The default and largest page size of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    /// The page size when the request says 0.
    pub default: u32,
    /// The largest page size; larger requests are clamped to it.
    pub maximum: u32,
}

impl PageLimits {
    /// [`DEFAULT_PAGE_SIZE`] and [`MAX_PAGE_SIZE`], for lists whose
    /// contract sets no limits of its own.
    pub const STANDARD: PageLimits = PageLimits {
        default: DEFAULT_PAGE_SIZE,
        maximum: MAX_PAGE_SIZE,
    };
}

/// The page size and cursor of a list request, with a violation for each
/// of `page_size` and `page_token` that is wrong.
pub fn page_request<C: DeserializeOwned>(
    page_size: i32,
    page_token: &str,
    filters: &str,
    limits: PageLimits,
) -> Result<(u32, Option<C>), Vec<FieldViolation>> {
    let mut violations = crate::error::Violations::new();
    let size = violations.check(page_size_within(page_size, limits.default, limits.maximum));
    let cursor = violations.check(decode::<C>(page_token, filters));
    match (size, cursor) {
        (Some(size), Some(cursor)) => Ok((size, cursor)),
        _ => Err(violations.into_vec()),
    }
}

/// Splits `size + 1` fetched rows into the page and the next page's token
/// (empty on the last page).
pub fn paginate<T, C: Serialize>(
    mut rows: Vec<T>,
    size: u32,
    filters: &str,
    cursor_of: impl Fn(&T) -> C,
) -> (Vec<T>, String) {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if rows.len() <= size {
        return (rows, String::new());
    }
    rows.truncate(size);
    let token = rows
        .last()
        .map(|last| encode(&cursor_of(last), filters))
        .unwrap_or_default();
    (rows, token)
}

/// The key page tokens are authenticated with: HMAC-SHA-256 over the
/// cursor and the request's filters, truncated to 128 bits. Every instance
/// of a service must hold the same key (`METRIX_PAGE_TOKEN_KEY`), or a page
/// token from one is refused by the next.
#[derive(Clone)]
pub struct PageTokenKey([u8; 32]);

/// Length of a token's tag: 128 bits of HMAC-SHA-256.
const TAG_LENGTH: usize = 16;

impl PageTokenKey {
    /// The key derived from `secret` (any length; the setting asks for at
    /// least 32 characters).
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"metrix page tokens v1\0");
        hasher.update(secret);
        Self(hasher.finalize().into())
    }

    /// A random key: tokens hold only in this process.
    pub fn random() -> Self {
        Self(rand::random())
    }

    fn tag(&self, cursor: &[u8], filters: &str) -> HmacSha256 {
        let mut mac = hmac_sha256(&self.0);
        // The filters' length first, so no split of filters and cursor
        // reads as another.
        mac.update(&(filters.len() as u64).to_be_bytes());
        mac.update(filters.as_bytes());
        mac.update(cursor);
        mac
    }

    /// Encodes `cursor` for a request with `filters`.
    #[allow(clippy::expect_used, reason = "cursors are plain data: numbers and strings")]
    pub fn encode<C: Serialize>(&self, cursor: &C, filters: &str) -> String {
        let mut bytes = serde_json::to_vec(cursor).expect("page cursors are plain serialisable data");
        let tag = self.tag(&bytes, filters).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG_LENGTH]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes `token` for a request with `filters`; an empty token is the
    /// first page. A token this key did not make for these filters is
    /// refused before its cursor is read.
    pub fn decode<C: DeserializeOwned>(&self, token: &str, filters: &str) -> Result<Option<C>, FieldViolation> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || FieldViolation::new("page_token", "is not a token from this list with these filters");
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let Some(split) = bytes.len().checked_sub(TAG_LENGTH).filter(|split| *split > 0) else {
            return Err(invalid());
        };
        let (cursor, tag) = bytes.split_at(split);
        self.tag(cursor, filters)
            .verify_truncated_left(tag)
            .map_err(|_| invalid())?;
        serde_json::from_slice(cursor).map(Some).map_err(|_| invalid())
    }
}

impl std::fmt::Debug for PageTokenKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("PageTokenKey(…)")
    }
}

static PROCESS_KEY: OnceLock<PageTokenKey> = OnceLock::new();

/// Sets the key of this process's page tokens from `METRIX_PAGE_TOKEN_KEY`
/// (`secret`), at a service's start; without one, a random key, so tokens
/// hold only on the instance that made them. Services in one process read
/// the same settings: the first key set stays.
pub fn use_key(secret: Option<&SecretString>) {
    let key = secret.map_or_else(PageTokenKey::random, |secret| {
        PageTokenKey::from_secret(secret.expose_secret().as_bytes())
    });
    if PROCESS_KEY.set(key).is_err() && secret.is_some() {
        tracing::debug!("the page token key was set already; keeping it");
    }
}

fn process_key() -> &'static PageTokenKey {
    PROCESS_KEY.get_or_init(PageTokenKey::random)
}

/// Encodes `cursor` for a request with `filters`, with this process's key.
pub fn encode<C: Serialize>(cursor: &C, filters: &str) -> String {
    process_key().encode(cursor, filters)
}

/// Decodes `token` for a request with `filters`, with this process's key;
/// an empty token is the first page.
pub fn decode<C: DeserializeOwned>(token: &str, filters: &str) -> Result<Option<C>, FieldViolation> {
    process_key().decode(token, filters)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Cursor {
        created: i64,
        id: String,
    }

    proptest! {
        #[test]
        fn tokens_round_trip(created in any::<i64>(), id in ".{0,40}", filters in ".{0,40}") {
            let cursor = Cursor { created, id };
            let token = encode(&cursor, &filters);
            prop_assert_eq!(decode::<Cursor>(&token, &filters).unwrap(), Some(cursor));
        }

        #[test]
        fn garbage_is_refused(token in "[A-Za-z0-9_-]{1,80}") {
            prop_assert!(decode::<Cursor>(&token, "kind=1").is_err());
        }
    }

    #[test]
    fn a_token_is_bound_to_its_filters() {
        let token = encode(
            &Cursor {
                created: 1,
                id: "a".into(),
            },
            "kind=1",
        );
        assert_eq!(decode::<Cursor>(&token, "kind=2").unwrap_err().field, "page_token");
    }

    #[test]
    fn a_token_from_another_key_or_edited_is_refused() {
        let filters = "sources|0|false";
        let key = PageTokenKey::from_secret(b"one secret of the deployment....");
        let token = key.encode(&serde_json::json!({"after": 50}), filters);
        assert_eq!(
            key.decode::<serde_json::Value>(&token, filters),
            Ok(Some(serde_json::json!({"after": 50})))
        );
        let other = PageTokenKey::from_secret(b"another deployment's secret.....");
        assert!(other.decode::<serde_json::Value>(&token, filters).is_err());
        // The cursor edited in place, tag kept.
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let at = bytes.iter().position(|byte| *byte == b'5').unwrap();
        bytes[at] = b'0';
        let forged = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(
            key.decode::<serde_json::Value>(&forged, filters).unwrap_err().field,
            "page_token"
        );
        // A cursor alone, with no tag, or a tag alone.
        assert!(
            key.decode::<serde_json::Value>(&URL_SAFE_NO_PAD.encode(b"{\"after\":7}"), filters)
                .is_err()
        );
        assert!(
            key.decode::<serde_json::Value>(&URL_SAFE_NO_PAD.encode([0u8; 16]), filters)
                .is_err()
        );
    }

    #[test]
    fn page_sizes_default_and_clamp() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(10_000).unwrap(), MAX_PAGE_SIZE);
        assert_eq!(page_size(-1).unwrap_err().field, "page_size");
    }
}
