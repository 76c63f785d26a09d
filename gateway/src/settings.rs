//! The gateway's settings, from `METRIX_GATEWAY__…` variables over defaults.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use metrix_core::config::{CommonSettings, ConfigError, Settings};
use secrecy::{ExposeSecret, SecretString};

/// The default address of the gateway.
pub const DEFAULT_LISTEN_ADDR: std::net::SocketAddr =
    std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 8080));

/// The variable of the rate-limit key.
pub const RATE_LIMIT_KEY: &str = "METRIX_GATEWAY__RATE_LIMIT_KEY";

/// The shortest accepted rate-limit key, in characters.
const MIN_RATE_LIMIT_KEY_LENGTH: usize = 32;

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
    /// The key of the keyed hash (HMAC-SHA256) that names a credential's
    /// rate-limit bucket, at least 32 characters (`METRIX_GATEWAY__RATE_LIMIT_KEY`).
    /// Gateways sharing Redis must share it, so that they count a credential
    /// together, across restarts too; it is required when `METRIX_REDIS_URL`
    /// is set. Without Redis each instance counts alone, and an unset key is
    /// a random one of the process's own.
    pub rate_limit_key: SecretString,
    /// Serve the console from this folder, read at each request, instead of
    /// the build embedded in the binary (`METRIX_GATEWAY__CONSOLE_DIR`; for
    /// working on the console: `npm run build` and reload, no Rust build).
    pub console_dir: Option<std::path::PathBuf>,
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
            listen_addr: settings.socket_addr("METRIX_GATEWAY__LISTEN_ADDR", DEFAULT_LISTEN_ADDR)?,
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
            rate_limit_key: rate_limit_key(settings, &common)?,
            console_dir: settings
                .raw("METRIX_GATEWAY__CONSOLE_DIR")
                .filter(|dir| !dir.is_empty())
                .map(Into::into),
            rate_limits: RateLimits {
                per_ip_per_minute: positive("METRIX_GATEWAY__RATE_LIMIT_PER_IP", 1200)?,
                per_credential_per_minute: positive("METRIX_GATEWAY__RATE_LIMIT_PER_CREDENTIAL", 6000)?,
                auth_per_ip_per_minute: positive("METRIX_GATEWAY__RATE_LIMIT_AUTH_PER_IP", 60)?,
            },
            common,
        })
    }
}

/// The rate-limit key: the configured one, checked; else, when no Redis is
/// shared, a random one (each instance counts alone then anyway).
fn rate_limit_key(settings: &Settings<'_>, common: &CommonSettings) -> Result<SecretString, ConfigError> {
    match settings.secret(RATE_LIMIT_KEY) {
        Some(key) if key.expose_secret().len() < MIN_RATE_LIMIT_KEY_LENGTH => Err(ConfigError::new(
            RATE_LIMIT_KEY,
            format!("must be at least {MIN_RATE_LIMIT_KEY_LENGTH} characters"),
        )),
        Some(key) => Ok(key),
        None if common.redis_url.is_some() => Err(ConfigError::new(
            RATE_LIMIT_KEY,
            "must be set when METRIX_REDIS_URL is, the same on every gateway (openssl rand -base64 32)",
        )),
        None => {
            let random: [u8; 32] = rand::random();
            Ok(SecretString::from(
                random.iter().map(|byte| format!("{byte:02x}")).collect::<String>(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<GatewaySettings, ConfigError> {
        let source = metrix_core::config::variables(pairs, &[]);
        GatewaySettings::load(&Settings::new(&source))
    }

    #[test]
    fn the_rate_limit_key_is_required_with_redis_and_checked() {
        let error = load(&[("METRIX_REDIS_URL", "redis://127.0.0.1:6379")]).expect_err("shared limits need the key");
        assert_eq!(error.variable, RATE_LIMIT_KEY);
        let error = load(&[(RATE_LIMIT_KEY, "short")]).expect_err("too short");
        assert_eq!(error.variable, RATE_LIMIT_KEY);
        let key = "0123456789abcdef0123456789abcdef";
        let settings = load(&[("METRIX_REDIS_URL", "redis://127.0.0.1:6379"), (RATE_LIMIT_KEY, key)]).expect("valid");
        assert_eq!(settings.rate_limit_key.expose_secret(), key);
    }

    #[test]
    fn without_redis_an_unset_key_is_random_per_instance() {
        let first = load(&[]).expect("valid");
        let second = load(&[]).expect("valid");
        assert!(first.rate_limit_key.expose_secret().len() >= MIN_RATE_LIMIT_KEY_LENGTH);
        assert_ne!(
            first.rate_limit_key.expose_secret(),
            second.rate_limit_key.expose_secret()
        );
    }
}
