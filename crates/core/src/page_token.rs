//! AIP-158 page tokens: opaque to the caller, bound to the query they page.
//!
//! A token is the base64url of a small JSON cursor plus a fingerprint of the
//! request's filters, so a token replayed with other filters is refused
//! instead of silently paging the wrong list.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::FieldViolation;

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

#[derive(Serialize, Deserialize)]
struct Envelope<C> {
    /// The cursor: where the next page starts.
    c: C,
    /// Fingerprint of the filters.
    f: String,
}

/// A fingerprint of the filters of a list request: any stable text that
/// changes when the filters change.
pub fn fingerprint(filters: &str) -> String {
    let digest = Sha256::digest(filters.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

/// Encodes `cursor` for a request with `filters`.
pub fn encode<C: Serialize>(cursor: &C, filters: &str) -> String {
    let envelope = Envelope {
        c: cursor,
        f: fingerprint(filters),
    };
    let json = serde_json::to_vec(&envelope).expect("page cursors are plain serialisable data");
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes `token` for a request with `filters`; an empty token is the first page.
pub fn decode<C: DeserializeOwned>(token: &str, filters: &str) -> Result<Option<C>, FieldViolation> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || FieldViolation::new("page_token", "is not a token from this list with these filters");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let envelope: Envelope<C> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if envelope.f != fingerprint(filters) {
        return Err(invalid());
    }
    Ok(Some(envelope.c))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
    fn page_sizes_default_and_clamp() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(10_000).unwrap(), MAX_PAGE_SIZE);
        assert_eq!(page_size(-1).unwrap_err().field, "page_size");
    }
}
