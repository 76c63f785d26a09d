//! Keyed hashes: HMAC-SHA-256 for page tokens, peer keys, noise factors and
//! rate-limit buckets, made in one place.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// HMAC with SHA-256.
pub type HmacSha256 = Hmac<Sha256>;

/// An HMAC-SHA-256 keyed with `key`. HMAC takes a key of any length (a
/// long one is hashed first), so this cannot fail.
#[allow(
    clippy::expect_used,
    reason = "new_from_slice fails only for fixed-length keys, which HMAC has not"
)]
pub fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length")
}

#[cfg(test)]
mod tests {
    use hmac::Mac as _;

    #[test]
    fn keys_of_any_length_are_taken_and_change_the_tag() {
        let tag = |key: &[u8]| {
            let mut mac = super::hmac_sha256(key);
            mac.update(b"message");
            mac.finalize().into_bytes()
        };
        assert_ne!(tag(b""), tag(&[7; 200]));
        assert_eq!(tag(b"key"), tag(b"key"));
    }
}
