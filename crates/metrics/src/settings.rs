//! The metrics service's settings, from `METRIX_METRICS__…` variables over
//! defaults.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use metrix_core::config::{CommonSettings, ConfigError, Settings};
use secrecy::{ExposeSecret, SecretString};

/// The default address of the metrics service.
pub const DEFAULT_LISTEN_ADDR: std::net::SocketAddr =
    std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 50052));

/// The shortest accepted peer-key secret, in bytes.
const MIN_PEER_KEY_SECRET_LENGTH: usize = 32;

/// Everything the metrics service is configured with.
#[derive(Debug)]
pub struct MetricsSettings {
    /// Settings every service shares.
    pub common: CommonSettings,
    /// Where to listen (`METRIX_METRICS__LISTEN_ADDR`).
    pub listen_addr: SocketAddr,
    /// The relational store (`METRIX_METRICS__DATABASE_URL`, else `METRIX_DATABASE_URL`).
    pub database_url: SecretString,
    /// The key of the keyed hash that turns company ids into the
    /// pseudonymous peer keys of ListPeerValues, at least 32 characters
    /// (`METRIX_METRICS__PEER_KEY_SECRET`). Changing it changes every peer key.
    pub peer_key_secret: SecretString,
    /// Peers whose `x-metrix-client-ip` is believed (`METRIX_METRICS__TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpNet>,
    /// How long raw events are kept; older ones are deleted in the
    /// background and refused at ingestion, their rollups stay
    /// (`METRIX_METRICS__EVENT_RETENTION_DAYS`, 90).
    pub event_retention: Duration,
    /// The queued ingestion path.
    pub queue: QueueSettings,
    /// How long server streams may last and how many a caller may hold.
    pub streams: StreamSettings,
}

/// Bounds on the server streams (WatchDashboard, WatchEvents, ExportEvents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    /// The longest a stream lasts; then it ends with ABORTED and the client
    /// reconnects (`METRIX_METRICS__MAX_STREAM_SECONDS`, 3,600).
    pub max_lifetime: Duration,
    /// How often a stream's credential is verified again, so that a revoked
    /// API key (or withdrawn token) ends it with UNAUTHENTICATED
    /// (`METRIX_METRICS__STREAM_REVERIFY_SECONDS`, 30; API key answers are
    /// cached for 30 s more, so a revocation ends streams within a minute).
    pub reverify_every: Duration,
    /// Streams one caller (a user, service account or API key) may hold at
    /// once on one instance; beyond it a new one is RESOURCE_EXHAUSTED
    /// (`METRIX_METRICS__MAX_STREAMS_PER_CALLER`, 10).
    pub max_per_caller: usize,
}

impl StreamSettings {
    fn load(settings: &Settings<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            max_lifetime: Duration::from_secs(bounded(
                settings,
                "METRIX_METRICS__MAX_STREAM_SECONDS",
                3_600,
                1..=86_400,
            )?),
            reverify_every: Duration::from_secs(bounded(
                settings,
                "METRIX_METRICS__STREAM_REVERIFY_SECONDS",
                30,
                1..=600,
            )?),
            max_per_caller: usize::try_from(bounded(
                settings,
                "METRIX_METRICS__MAX_STREAMS_PER_CALLER",
                10,
                1..=1_000,
            )?)
            // At most 1,000: it fits any usize.
            .unwrap_or(usize::MAX),
        })
    }
}

/// How the queued ingestion path is bounded and worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Entries waiting or in flight beyond which a queued request is refused
    /// with RESOURCE_EXHAUSTED (`METRIX_METRICS__QUEUE_MAX_DEPTH`, 10,000;
    /// an entry is one request's batch of up to 1,000 events).
    pub max_depth: u64,
    /// How long an entry may stay unacknowledged before another writer
    /// takes it over (`METRIX_METRICS__QUEUE_CLAIM_AFTER_SECONDS`, 30).
    pub claim_after: Duration,
    /// Writers this instance runs; 0 makes it only append
    /// (`METRIX_METRICS__QUEUE_WRITERS`, 1).
    pub writers: usize,
    /// Deliveries after which an entry that keeps failing for a reason other
    /// than an outage goes to the dead letters
    /// (`METRIX_METRICS__QUEUE_MAX_ATTEMPTS`, 5).
    pub max_attempts: u64,
}

impl QueueSettings {
    fn load(settings: &Settings<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            max_depth: bounded(settings, "METRIX_METRICS__QUEUE_MAX_DEPTH", 10_000, 1..=10_000_000)?,
            claim_after: Duration::from_secs(bounded(
                settings,
                "METRIX_METRICS__QUEUE_CLAIM_AFTER_SECONDS",
                30,
                1..=3_600,
            )?),
            writers: usize::try_from(bounded(settings, "METRIX_METRICS__QUEUE_WRITERS", 1, 0..=64)?)
                // At most 64: it fits any usize.
                .unwrap_or(usize::MAX),
            max_attempts: bounded(settings, "METRIX_METRICS__QUEUE_MAX_ATTEMPTS", 5, 1..=100)?,
        })
    }
}

/// The integer variable `name` (default `default`), refused by name outside `range`.
fn bounded(
    settings: &Settings<'_>,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let value: u64 = settings.parse(name, default)?;
    if !range.contains(&value) {
        return Err(ConfigError::new(
            name,
            format!("must be between {} and {}", range.start(), range.end()),
        ));
    }
    Ok(value)
}

impl MetricsSettings {
    /// Reads and validates the metrics settings.
    pub fn load(settings: &Settings<'_>) -> Result<Self, ConfigError> {
        let common = CommonSettings::load(settings)?;
        let database_url = database_url(settings, &common)?;
        const PEER_KEY_SECRET: &str = "METRIX_METRICS__PEER_KEY_SECRET";
        let peer_key_secret = settings
            .secret(PEER_KEY_SECRET)
            .ok_or_else(|| ConfigError::new(PEER_KEY_SECRET, "must be set (openssl rand -base64 32)"))?;
        if peer_key_secret.expose_secret().len() < MIN_PEER_KEY_SECRET_LENGTH {
            return Err(ConfigError::new(
                PEER_KEY_SECRET,
                format!("must be at least {MIN_PEER_KEY_SECRET_LENGTH} characters"),
            ));
        }
        Ok(Self {
            listen_addr: settings.socket_addr("METRIX_METRICS__LISTEN_ADDR", DEFAULT_LISTEN_ADDR)?,
            database_url,
            peer_key_secret,
            trusted_proxies: settings.networks("METRIX_METRICS__TRUSTED_PROXIES", &["127.0.0.0/8", "::1/128"])?,
            event_retention: retention_days(settings)?,
            queue: QueueSettings::load(settings)?,
            streams: StreamSettings::load(settings)?,
            common,
        })
    }
}

fn retention_days(settings: &Settings<'_>) -> Result<Duration, ConfigError> {
    const NAME: &str = "METRIX_METRICS__EVENT_RETENTION_DAYS";
    let days: u64 = settings.parse(NAME, 90)?;
    if !(1..=3_650).contains(&days) {
        return Err(ConfigError::new(NAME, "must be between 1 and 3650"));
    }
    Ok(Duration::from_secs(days * 86_400))
}

/// The metrics store's URL (`METRIX_METRICS__DATABASE_URL`, else
/// `METRIX_DATABASE_URL`); all that `metrix migrate` needs.
pub fn database_url(settings: &Settings<'_>, common: &CommonSettings) -> Result<SecretString, ConfigError> {
    common.service_database_url(settings, "METRIX_METRICS__DATABASE_URL")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<MetricsSettings, ConfigError> {
        let source = metrix_core::config::variables(
            pairs,
            &[
                ("METRIX_DATABASE_URL", "sqlite://metrics.db"),
                ("METRIX_METRICS__PEER_KEY_SECRET", "0123456789abcdef0123456789abcdef"),
            ],
        );
        MetricsSettings::load(&Settings::new(&source))
    }

    #[test]
    fn defaults_are_valid() {
        let settings = load(&[]).expect("valid");
        assert_eq!(settings.listen_addr.port(), 50052);
    }

    #[test]
    fn queue_bounds_are_read_and_checked_by_name() {
        let settings = load(&[
            ("METRIX_METRICS__QUEUE_MAX_DEPTH", "5"),
            ("METRIX_METRICS__QUEUE_WRITERS", "0"),
            ("METRIX_METRICS__QUEUE_CLAIM_AFTER_SECONDS", "2"),
        ])
        .expect("valid");
        assert_eq!(settings.queue.max_depth, 5);
        assert_eq!(settings.queue.writers, 0);
        assert_eq!(settings.queue.claim_after, Duration::from_secs(2));
        assert_eq!(settings.queue.max_attempts, 5);
        let error = load(&[("METRIX_METRICS__QUEUE_MAX_DEPTH", "0")]).expect_err("a queue holds something");
        assert_eq!(error.variable, "METRIX_METRICS__QUEUE_MAX_DEPTH");
    }

    #[test]
    fn stream_bounds_default_and_are_checked_by_name() {
        let settings = load(&[]).expect("valid");
        assert_eq!(settings.streams.max_lifetime, Duration::from_secs(3_600));
        assert_eq!(settings.streams.reverify_every, Duration::from_secs(30));
        assert_eq!(settings.streams.max_per_caller, 10);
        let error = load(&[("METRIX_METRICS__MAX_STREAM_SECONDS", "0")]).expect_err("streams last a while");
        assert_eq!(error.variable, "METRIX_METRICS__MAX_STREAM_SECONDS");
        let error = load(&[("METRIX_METRICS__MAX_STREAMS_PER_CALLER", "0")]).expect_err("one stream at least");
        assert_eq!(error.variable, "METRIX_METRICS__MAX_STREAMS_PER_CALLER");
    }

    #[test]
    fn a_short_peer_key_secret_is_refused_by_name() {
        let error = load(&[("METRIX_METRICS__PEER_KEY_SECRET", "short")]).expect_err("too short");
        assert_eq!(error.variable, "METRIX_METRICS__PEER_KEY_SECRET");
    }

    #[test]
    fn a_foreign_database_url_is_refused_by_name() {
        let error = load(&[("METRIX_METRICS__DATABASE_URL", "mysql://db/metrics")]).expect_err("not supported");
        assert_eq!(error.variable, "METRIX_METRICS__DATABASE_URL");
    }
}
