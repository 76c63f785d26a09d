//! Noise infusion of the peer feed: every value ListPeerValues hands out is
//! the company's value multiplied by a factor that is fixed for the company
//! and metric, and at least 10 % and at most 25 % away from one, up or down (the method of the US Census Bureau's County Business
//! Patterns and Quarterly Workforce Indicators: Evans, Zayatz and Slanta,
//! "Using noise for disclosure limitation of establishment tabular data",
//! 1998).
//!
//! Why: a published statistic that depends on one company alone — the only
//! company of a slice besides an attacker's fakes, a difference of two
//! overlapping slices or of two periods, the value a what-if ranking steps
//! at — then shows that company's value distorted by 10–25 % in a direction
//! and by an amount no peer knows, because the factor is a keyed hash with
//! the server's secret. The factor never changes for the same company and
//! metric — across periods too — so asking again, from another
//! organisation, or after changing one's own values gives the same distorted
//! value and averages nothing away, and the attacker's own companies'
//! factors cancel exactly when a difference is taken over them (two
//! periods, two overlapping slices): what is left is the victim's distorted
//! value, never closer than 10 %. Over many companies the factors average out (their mean is
//! exactly one: the distortion is symmetric), so the figures of real slices
//! move little; `docs/benchmarks.md` states both bounds.

use hmac::Mac;
use secrecy::{ExposeSecret, SecretString};

/// The smallest relative distortion of a value.
pub const MIN_DISTORTION: f64 = 0.10;
/// The largest relative distortion of a value.
pub const MAX_DISTORTION: f64 = 0.25;

/// The factor of `company_id`'s `metric_id`: within
/// `1 ± [MIN_DISTORTION, MAX_DISTORTION]`, the sign and amount drawn from a
/// keyed hash.
pub fn factor(secret: &SecretString, company_id: &str, metric_id: &str) -> f64 {
    let mut mac = metrix_core::mac::hmac_sha256(secret.expose_secret().as_bytes());
    // Separators that cannot occur in the ids keep the fields apart.
    for part in ["peer-noise", company_id, metric_id] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    let digest = mac.finalize().into_bytes();
    let mut head = [0_u8; 8];
    head.copy_from_slice(&digest[..8]);
    // 53 random bits: a uniform draw in [0, 1).
    let uniform = (u64::from_be_bytes(head) >> 11) as f64 / (1_u64 << 53) as f64;
    let distortion = MIN_DISTORTION + (MAX_DISTORTION - MIN_DISTORTION) * uniform;
    if digest[8] & 1 == 0 {
        1.0 + distortion
    } else {
        1.0 - distortion
    }
}

/// `value` as the peer feed publishes it.
pub fn perturb(secret: &SecretString, company_id: &str, metric_id: &str, value: f64) -> f64 {
    value * factor(secret, company_id, metric_id)
}

/// The pseudonymous key of an organisation: a keyed hash of its id, so the
/// benchmark service can count distinct organisations without learning them.
pub fn organization_key(secret: &SecretString, organization_id: &str) -> String {
    use base64::Engine as _;
    let mut mac = metrix_core::mac::hmac_sha256(secret.expose_secret().as_bytes());
    mac.update(b"organization\0");
    mac.update(organization_id.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SecretString {
        SecretString::from("test-peer-key-secret-of-32-characters")
    }

    #[test]
    fn every_factor_distorts_by_ten_to_twenty_five_percent_and_stays_put() {
        let secret = secret();
        let mut up = 0;
        let mut sum = 0.0;
        let companies = 20_000;
        for index in 0..companies {
            let company = format!("company-{index}");
            let factor = factor(&secret, &company, "ndr");
            let distortion = (factor - 1.0).abs();
            assert!(
                (MIN_DISTORTION..=MAX_DISTORTION).contains(&distortion),
                "{company}: {factor}"
            );
            assert_eq!(factor, super::factor(&secret, &company, "ndr"), "fixed");
            if factor > 1.0 {
                up += 1;
            }
            sum += factor;
        }
        // Symmetric: about half up, a mean of one.
        assert!((9_500..=10_500).contains(&up), "{up} up of {companies}");
        assert!(
            (sum / f64::from(companies) - 1.0).abs() < 0.005,
            "mean {}",
            sum / f64::from(companies)
        );
    }

    #[test]
    fn factors_differ_by_company_metric_and_secret() {
        let secret = secret();
        let base = factor(&secret, "c-1", "ndr");
        assert_ne!(base, factor(&secret, "c-2", "ndr"));
        assert_ne!(base, factor(&secret, "c-1", "arr"));
        assert_ne!(
            base,
            factor(&SecretString::from("another-secret-of-thirty-two-chars!"), "c-1", "ndr")
        );
        assert_eq!(perturb(&secret, "c-1", "ndr", 0.0), 0.0);
    }

    #[test]
    fn organization_keys_are_stable_and_opaque() {
        let secret = secret();
        let key = organization_key(&secret, "org-1");
        assert_eq!(key, organization_key(&secret, "org-1"));
        assert_ne!(key, organization_key(&secret, "org-2"));
        assert!(!key.contains("org-1"));
    }
}
