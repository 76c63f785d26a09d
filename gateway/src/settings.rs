//! The gateway's settings, from `METRIX_GATEWAY__…` variables over defaults.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use metrix_core::config::{CommonSettings, ConfigError, Settings};

/// The default address of the gateway.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8080";

/// One upstream service: the gRPC package prefix it serves and its address.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Short name: `auth`, `metrics`, `benchmark`.
    pub name: &'static str,
    /// The package its services live in, such as `metrix.auth.`.
    pub package_prefix: &'static str,
    /// Its address, such as `http://127.0.0.1:50051`.
    pub url: String,
}

/// Requests per minute for a class of routes.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Per client address, every route (`METRIX_GATEWAY__RATE_LIMIT_PER_IP`).
    pub per_ip_per_minute: u32,
    /// Per API key or signed-in user (`METRIX_GATEWAY__RATE_LIMIT_PER_CREDENTIAL`).
    pub per_credential_per_minute: u32,
    /// Per client address on the sign-in class of routes (sign-up, sign-in,
    /// refresh, OAuth): `METRIX_GATEWAY__RATE_LIMIT_AUTH_PER_IP`.
    pub auth_per_ip_per_minute: u32,
}

/// Everything the gateway is configured with.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Settings every service shares.
    pub common: CommonSettings,
    /// Where to listen (`METRIX_GATEWAY__LISTEN_ADDR`).
    pub listen_addr: SocketAddr,
    /// The services behind the gateway (`METRIX_GATEWAY__AUTH_URL`,
    /// `…__METRICS_URL`, `…__BENCHMARK_URL`; `off` leaves one out).
    pub upstreams: Vec<Upstream>,
    /// Browser origins allowed by CORS (`METRIX_GATEWAY__CORS_ORIGINS`,
    /// comma-separated; `*` for any).
    pub cors_origins: Vec<String>,
    /// The largest request body (`METRIX_GATEWAY__BODY_LIMIT_BYTES`, 1 MiB).
    pub body_limit: usize,
    /// The longest a call may take (`METRIX_GATEWAY__TIMEOUT_SECONDS`, 30);
    /// a shorter `grpc-timeout` from the client wins.
    pub timeout: Duration,
    /// Peers whose `x-forwarded-for` is believed (`METRIX_GATEWAY__TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpNet>,
    /// Rate limits.
    pub rate_limits: RateLimits,
}

impl GatewaySettings {
    /// Reads and validates the gateway settings.
    pub fn load(settings: &Settings<'_>) -> Result<Self, ConfigError> {
        let common = CommonSettings::load(settings)?;
        let upstream = |name: &'static str,
                        package_prefix: &'static str,
                        variable: &str,
                        default: &str|
         -> Result<Option<Upstream>, ConfigError> {
            let url = settings.string(variable, default);
            if url == "off" {
                return Ok(None);
            }
            let parsed = url::Url::parse(&url).map_err(|error| ConfigError::new(variable, error))?;
            if parsed.scheme() != "http" && parsed.scheme() != "https" {
                return Err(ConfigError::new(variable, "must be an http:// or https:// URL"));
            }
            Ok(Some(Upstream {
                name,
                package_prefix,
                url,
            }))
        };
        let upstreams = [
            upstream("auth", "metrix.auth.", "METRIX_GATEWAY__AUTH_URL", &common.auth_url)?,
            upstream(
                "metrics",
                "metrix.metrics.",
                "METRIX_GATEWAY__METRICS_URL",
                "http://127.0.0.1:50052",
            )?,
            upstream(
                "benchmark",
                "metrix.benchmark.",
                "METRIX_GATEWAY__BENCHMARK_URL",
                "http://127.0.0.1:50053",
            )?,
        ]
        .into_iter()
        .flatten()
        .collect();
        let trusted_proxies = settings.networks("METRIX_GATEWAY__TRUSTED_PROXIES", &[])?;
        let body_limit: usize = settings.parse("METRIX_GATEWAY__BODY_LIMIT_BYTES", 1024 * 1024)?;
        if body_limit == 0 {
            return Err(ConfigError::new("METRIX_GATEWAY__BODY_LIMIT_BYTES", "must be positive"));
        }
        let positive = |variable: &str, default: u32| -> Result<u32, ConfigError> {
            let value: u32 = settings.parse(variable, default)?;
            if value == 0 {
                Err(ConfigError::new(variable, "must be at least 1"))
            } else {
                Ok(value)
            }
        };
        Ok(Self {
            listen_addr: settings.socket_addr(
                "METRIX_GATEWAY__LISTEN_ADDR",
                DEFAULT_LISTEN_ADDR
                    .parse()
                    .expect("the default listen address is valid"),
            )?,
            upstreams,
            cors_origins: settings.list(
                "METRIX_GATEWAY__CORS_ORIGINS",
                &["http://localhost:8080", "http://127.0.0.1:8080"],
            ),
            body_limit,
            timeout: settings.seconds(
                "METRIX_GATEWAY__TIMEOUT_SECONDS",
                Duration::from_secs(30),
                Duration::from_secs(1),
            )?,
            trusted_proxies,
            rate_limits: RateLimits {
                per_ip_per_minute: positive("METRIX_GATEWAY__RATE_LIMIT_PER_IP", 1200)?,
                per_credential_per_minute: positive("METRIX_GATEWAY__RATE_LIMIT_PER_CREDENTIAL", 6000)?,
                auth_per_ip_per_minute: positive("METRIX_GATEWAY__RATE_LIMIT_AUTH_PER_IP", 60)?,
            },
            common,
        })
    }
}
