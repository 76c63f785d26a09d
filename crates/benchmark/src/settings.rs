//! The benchmark service's settings, from `METRIX_BENCHMARK__…` variables
//! over defaults.

use std::net::SocketAddr;
use std::time::Duration;

use metrix_core::config::{CommonSettings, ConfigError, Settings};
use secrecy::SecretString;

/// The default address of the benchmark service.
pub const DEFAULT_LISTEN_ADDR: std::net::SocketAddr =
    std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 50053));

/// The default address of the metrics service, where peer data comes from.
pub const DEFAULT_METRICS_URL: &str = "http://127.0.0.1:50052";

/// The default minimum number of companies before a slice reports figures.
pub const DEFAULT_MIN_PEER_COUNT: u32 = 5;

/// The default seed of the median bootstrap.
pub const DEFAULT_BOOTSTRAP_SEED: u64 = 20_261_201;

/// The most median bootstrap resamples, configured or asked for: bounds the
/// CPU one uncached slice costs.
pub const MAX_BOOTSTRAP_RESAMPLES: u32 = 10_000;

/// The default number of median bootstrap resamples.
pub const DEFAULT_BOOTSTRAP_RESAMPLES: u32 = 10_000;

/// Everything the benchmark service is configured with.
#[derive(Debug)]
pub struct BenchmarkSettings {
    /// Settings every service shares.
    pub common: CommonSettings,
    /// Where to listen (`METRIX_BENCHMARK__LISTEN_ADDR`).
    pub listen_addr: SocketAddr,
    /// The relational store (`METRIX_BENCHMARK__DATABASE_URL`, else `METRIX_DATABASE_URL`).
    pub database_url: SecretString,
    /// Where the metrics service listens (`METRIX_BENCHMARK__METRICS_URL`).
    pub metrics_url: String,
    /// The anonymity threshold k: a slice with fewer values reports no
    /// figure (`METRIX_BENCHMARK__MIN_PEER_COUNT`, 5, at least 3).
    pub min_peer_count: u32,
    /// The seed of the median bootstrap when a request names none
    /// (`METRIX_BENCHMARK__BOOTSTRAP_SEED`).
    pub bootstrap_seed: u64,
    /// The number of median bootstrap resamples when a request names none
    /// (`METRIX_BENCHMARK__BOOTSTRAP_RESAMPLES`, 10,000).
    pub bootstrap_resamples: u32,
    /// How long computed slices stay cached; new KPIs invalidate them sooner
    /// (`METRIX_BENCHMARK__CACHE_TTL_SECONDS`, 600).
    pub cache_ttl: Duration,
    /// Benchmark queries (GetBenchmark, time series, rankings, what-ifs,
    /// reports) one organisation may make per minute, across every instance
    /// (`METRIX_BENCHMARK__QUERIES_PER_MINUTE`, 120).
    pub queries_per_minute: u32,
    /// Bootstraps with a seed or resample count of the caller's choosing
    /// that the cache cannot answer, per organisation and minute
    /// (`METRIX_BENCHMARK__FRESH_BOOTSTRAPS_PER_MINUTE`, 10): a new seed
    /// forces a new interval, so new seeds are what this bounds.
    pub fresh_bootstraps_per_minute: u32,
}

impl BenchmarkSettings {
    /// Reads and validates the benchmark settings.
    pub fn load(settings: &Settings<'_>) -> Result<Self, ConfigError> {
        let common = CommonSettings::load(settings)?;
        let database_url = database_url(settings, &common)?;
        const MIN_PEER_COUNT: &str = "METRIX_BENCHMARK__MIN_PEER_COUNT";
        let min_peer_count: u32 = settings.parse(MIN_PEER_COUNT, DEFAULT_MIN_PEER_COUNT)?;
        if !(3..=1_000).contains(&min_peer_count) {
            return Err(ConfigError::new(MIN_PEER_COUNT, "must be between 3 and 1000"));
        }
        const RESAMPLES: &str = "METRIX_BENCHMARK__BOOTSTRAP_RESAMPLES";
        let bootstrap_resamples: u32 = settings.parse(RESAMPLES, DEFAULT_BOOTSTRAP_RESAMPLES)?;
        if !(100..=MAX_BOOTSTRAP_RESAMPLES).contains(&bootstrap_resamples) {
            return Err(ConfigError::new(
                RESAMPLES,
                format!("must be between 100 and {MAX_BOOTSTRAP_RESAMPLES}"),
            ));
        }
        const QUERIES: &str = "METRIX_BENCHMARK__QUERIES_PER_MINUTE";
        let queries_per_minute: u32 = settings.parse(QUERIES, 120)?;
        if !(1..=100_000).contains(&queries_per_minute) {
            return Err(ConfigError::new(QUERIES, "must be between 1 and 100000"));
        }
        const FRESH: &str = "METRIX_BENCHMARK__FRESH_BOOTSTRAPS_PER_MINUTE";
        let fresh_bootstraps_per_minute: u32 = settings.parse(FRESH, 10)?;
        if !(1..=10_000).contains(&fresh_bootstraps_per_minute) {
            return Err(ConfigError::new(FRESH, "must be between 1 and 10000"));
        }
        const METRICS_URL: &str = "METRIX_BENCHMARK__METRICS_URL";
        let metrics_url = settings.string(METRICS_URL, DEFAULT_METRICS_URL);
        if !(metrics_url.starts_with("http://") || metrics_url.starts_with("https://")) {
            return Err(ConfigError::new(METRICS_URL, "must be an http:// or https:// address"));
        }
        Ok(Self {
            listen_addr: settings.socket_addr("METRIX_BENCHMARK__LISTEN_ADDR", DEFAULT_LISTEN_ADDR)?,
            database_url,
            metrics_url,
            min_peer_count,
            bootstrap_seed: settings.parse("METRIX_BENCHMARK__BOOTSTRAP_SEED", DEFAULT_BOOTSTRAP_SEED)?,
            bootstrap_resamples,
            cache_ttl: settings.seconds(
                "METRIX_BENCHMARK__CACHE_TTL_SECONDS",
                Duration::from_secs(600),
                Duration::from_secs(1),
            )?,
            queries_per_minute,
            fresh_bootstraps_per_minute,
            common,
        })
    }
}

/// The benchmark store's URL (`METRIX_BENCHMARK__DATABASE_URL`, else
/// `METRIX_DATABASE_URL`); all that `metrix migrate` needs.
pub fn database_url(settings: &Settings<'_>, common: &CommonSettings) -> Result<SecretString, ConfigError> {
    common.service_database_url(settings, "METRIX_BENCHMARK__DATABASE_URL")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<BenchmarkSettings, ConfigError> {
        let source = metrix_core::config::variables(pairs, &[("METRIX_DATABASE_URL", "sqlite://benchmark.db")]);
        BenchmarkSettings::load(&Settings::new(&source))
    }

    #[test]
    fn defaults_are_valid() {
        let settings = load(&[]).expect("valid");
        assert_eq!(settings.listen_addr.port(), 50053);
        assert_eq!(settings.min_peer_count, 5);
        assert_eq!(settings.bootstrap_resamples, 10_000);
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        for (variable, value) in [
            ("METRIX_BENCHMARK__MIN_PEER_COUNT", "1"),
            ("METRIX_BENCHMARK__BOOTSTRAP_RESAMPLES", "5"),
            ("METRIX_BENCHMARK__METRICS_URL", "metrics:50052"),
            ("METRIX_BENCHMARK__DATABASE_URL", "mysql://db/benchmark"),
            ("METRIX_BENCHMARK__BOOTSTRAP_SEED", "-1"),
        ] {
            let error = load(&[(variable, value)]).expect_err(variable);
            assert_eq!(error.variable, variable);
        }
    }
}
