//! Sign-in throttling: a rate limit per client address, and a per-account
//! lockout that doubles with each failure past the threshold. Both key on
//! what the caller sent, never on whether the account exists, so the answers
//! for a known and an unknown email are the same.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use metrix_core::cache::{Cache, Quota, RateDecision, RateLimiter};
use metrix_core::time::{duration_micros, now_micros};

use crate::domain::Email;
use crate::error::AuthError;
use crate::secrets::digest;

/// Failures are counted over this window.
const FAILURE_WINDOW: Duration = Duration::from_secs(3600);
/// The longest lockout.
const MAX_LOCKOUT: Duration = Duration::from_secs(3600);

/// The message of every throttled sign-in.
const THROTTLED: &str = "too many sign-in attempts, try again later";

/// Sign-in throttling.
pub struct Throttle {
    cache: Arc<dyn Cache>,
    limiter: Arc<dyn RateLimiter>,
    threshold: u32,
    base: Duration,
    per_ip: Quota,
}

impl Throttle {
    /// Locks an account after `threshold` failures for `base`, doubling; allows
    /// `per_minute_per_ip` attempts per client address per minute.
    pub fn new(
        cache: Arc<dyn Cache>,
        limiter: Arc<dyn RateLimiter>,
        threshold: u32,
        base: Duration,
        per_minute_per_ip: u32,
    ) -> Self {
        Self {
            cache,
            limiter,
            threshold,
            base,
            per_ip: Quota::per_minute(per_minute_per_ip),
        }
    }

    /// Counts an attempt from `ip` (the purpose names the limit) and refuses
    /// it past the rate.
    pub async fn check_ip(&self, purpose: &str, ip: Option<IpAddr>) -> Result<(), AuthError> {
        let Some(ip) = ip else { return Ok(()) };
        match self
            .limiter
            .check(
                &format!("auth:{purpose}:ip:{}", metrix_core::client::rate_limit_unit(ip)),
                self.per_ip,
            )
            .await?
        {
            RateDecision::Allowed => Ok(()),
            RateDecision::Limited { retry_after } => Err(AuthError::Throttled {
                message: THROTTLED,
                retry_after,
            }),
        }
    }

    /// Starts a sign-in attempt on an account: refuses it while the account
    /// is locked, and counts it before the password is checked, so parallel
    /// guesses cannot outrun the count. The attempt's number in the window.
    pub async fn begin_attempt(&self, email: &Email) -> Result<i64, AuthError> {
        if let Some(until) = self.cache.get(&lock_key(email)).await? {
            let until: i64 = std::str::from_utf8(&until)
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or(0);
            let remaining = until - now_micros();
            if remaining > 0 {
                return Err(AuthError::Throttled {
                    message: THROTTLED,
                    retry_after: Duration::from_micros(remaining.unsigned_abs()),
                });
            }
        }
        let attempt = self.cache.increment(&failure_key(email), FAILURE_WINDOW).await?;
        if attempt > i64::from(self.threshold) {
            let lockout = self.lock(email, attempt - 1).await?;
            return Err(AuthError::Throttled {
                message: THROTTLED,
                retry_after: lockout,
            });
        }
        Ok(attempt)
    }

    /// Notes that attempt number `attempt` failed; the lockout it starts, if
    /// it reaches the threshold.
    pub async fn record_failure(&self, email: &Email, attempt: i64) -> Result<Option<Duration>, AuthError> {
        if attempt < i64::from(self.threshold) {
            return Ok(None);
        }
        self.lock(email, attempt).await.map(Some)
    }

    /// Locks the account after `failures` failures: the base lockout,
    /// doubled for each failure past the threshold.
    async fn lock(&self, email: &Email, failures: i64) -> Result<Duration, AuthError> {
        let doublings = u32::try_from((failures - i64::from(self.threshold)).clamp(0, 16)).unwrap_or(16);
        let lockout = self.base.saturating_mul(1 << doublings).min(MAX_LOCKOUT);
        let until = now_micros() + duration_micros(lockout);
        self.cache
            .set(&lock_key(email), until.to_string().as_bytes(), lockout)
            .await?;
        Ok(lockout)
    }

    /// Forgets the failures of an account after a successful sign-in.
    pub async fn record_success(&self, email: &Email) -> Result<(), AuthError> {
        self.cache.delete(&failure_key(email)).await?;
        Ok(())
    }
}

fn failure_key(email: &Email) -> String {
    format!("auth:sign-in:failures:{}", digest(email.as_str()))
}

fn lock_key(email: &Email) -> String {
    format!("auth:sign-in:lock:{}", digest(email.as_str()))
}

#[cfg(test)]
mod tests {
    use metrix_core::cache::Backends;

    use super::*;

    #[tokio::test]
    async fn an_account_locks_after_the_threshold_and_the_lock_grows() {
        let backends = Backends::in_process();
        let throttle = Throttle::new(backends.cache, backends.rate_limiter, 3, Duration::from_secs(60), 100);
        let email = Email::parse("email", "ada@example.com").unwrap();
        for expected in 1..=2 {
            let attempt = throttle.begin_attempt(&email).await.unwrap();
            assert_eq!(attempt, expected);
            assert_eq!(throttle.record_failure(&email, attempt).await.unwrap(), None);
        }
        let third = throttle.begin_attempt(&email).await.unwrap();
        assert_eq!(
            throttle.record_failure(&email, third).await.unwrap(),
            Some(Duration::from_secs(60))
        );
        assert!(matches!(
            throttle.begin_attempt(&email).await,
            Err(AuthError::Throttled { .. })
        ));
        let other = Email::parse("email", "grace@example.com").unwrap();
        assert_eq!(throttle.begin_attempt(&other).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn parallel_attempts_cannot_exceed_the_threshold() {
        let backends = Backends::in_process();
        let throttle = Throttle::new(backends.cache, backends.rate_limiter, 5, Duration::from_secs(60), 100);
        let email = Email::parse("email", "ada@example.com").unwrap();
        let attempts = futures::future::join_all((0..30).map(|_| throttle.begin_attempt(&email))).await;
        assert_eq!(
            attempts.iter().filter(|attempt| attempt.is_ok()).count(),
            5,
            "only five guesses get through"
        );
    }

    #[test]
    fn ipv6_clients_are_limited_per_slash_64() {
        let first: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let second: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(
            metrix_core::client::rate_limit_unit(first),
            metrix_core::client::rate_limit_unit(second)
        );
        assert_eq!(
            metrix_core::client::rate_limit_unit("203.0.113.7".parse().unwrap()),
            "203.0.113.7"
        );
    }

    #[tokio::test]
    async fn addresses_are_rate_limited() {
        let backends = Backends::in_process();
        let throttle = Throttle::new(backends.cache, backends.rate_limiter, 5, Duration::from_secs(60), 2);
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        assert!(throttle.check_ip("sign-in", Some(ip)).await.is_ok());
        assert!(throttle.check_ip("sign-in", Some(ip)).await.is_ok());
        assert!(matches!(
            throttle.check_ip("sign-in", Some(ip)).await,
            Err(AuthError::Throttled { .. })
        ));
    }
}
