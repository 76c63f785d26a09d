//! Typed settings read from `METRIX_…` environment variables over defaults.
//!
//! The environment is read through [`EnvironmentSource`] so that tests pass a
//! map instead of touching the process environment. Every problem names the
//! variable at fault; binaries exit with status 64 ([`EXIT_CONFIG`]) on one.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

/// The exit status of a process that refused its configuration (`EX_USAGE`).
pub const EXIT_CONFIG: i32 = 64;

/// Where variables come from.
pub trait EnvironmentSource: Send + Sync {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnvironment;

impl EnvironmentSource for ProcessEnvironment {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvironmentSource for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

/// Variables as a source: `pairs` over `defaults` (a name in both takes its
/// value from `pairs`). For settings tests and tools that describe an
/// environment instead of reading the process's.
pub fn variables(pairs: &[(&str, &str)], defaults: &[(&str, &str)]) -> HashMap<String, String> {
    defaults
        .iter()
        .chain(pairs)
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// The process environment over a map of defaults: a variable set in the
/// process wins, the map fills the gaps (how `metrix dev` supplies its
/// embedded defaults without hiding the operator's choices).
pub struct WithDefaults {
    /// The defaults.
    pub defaults: HashMap<String, String>,
}

impl EnvironmentSource for WithDefaults {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().or_else(|| self.defaults.get(name).cloned())
    }
}

/// A variable that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The variable at fault, such as `METRIX_AUTH__LISTEN_ADDR`.
    pub variable: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    /// A problem with `variable`.
    pub fn new(variable: impl Into<String>, problem: impl fmt::Display) -> Self {
        Self {
            variable: variable.into(),
            problem: problem.to_string(),
        }
    }
}

/// Reads typed values from a source, blank values counting as unset.
pub struct Settings<'a> {
    source: &'a dyn EnvironmentSource,
}

impl<'a> Settings<'a> {
    /// Reads from `source`.
    pub fn new(source: &'a dyn EnvironmentSource) -> Self {
        Self { source }
    }

    /// The raw value of `name`, trimmed; `None` when unset or blank.
    pub fn raw(&self, name: &str) -> Option<String> {
        self.source
            .get(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    /// A string, or `default` when unset.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_owned())
    }

    /// A secret, if set.
    pub fn secret(&self, name: &str) -> Option<SecretString> {
        self.raw(name).map(SecretString::from)
    }

    /// Any value with a `FromStr`, or `default` when unset.
    pub fn parse<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(name) {
            None => Ok(default),
            Some(value) => value
                .parse()
                .map_err(|error| ConfigError::new(name, format!("cannot parse {value:?}: {error}"))),
        }
    }

    /// An optional value with a `FromStr`.
    pub fn parse_optional<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.raw(name)
            .map(|value| {
                value
                    .parse()
                    .map_err(|error| ConfigError::new(name, format!("cannot parse {value:?}: {error}")))
            })
            .transpose()
    }

    /// A socket address such as `0.0.0.0:50051`.
    pub fn socket_addr(&self, name: &str, default: SocketAddr) -> Result<SocketAddr, ConfigError> {
        self.parse(name, default)
    }

    /// A duration given in whole seconds, at least `minimum`.
    pub fn seconds(&self, name: &str, default: Duration, minimum: Duration) -> Result<Duration, ConfigError> {
        let seconds: u64 = self.parse(name, default.as_secs())?;
        let duration = Duration::from_secs(seconds);
        if duration < minimum {
            return Err(ConfigError::new(
                name,
                format!("must be at least {} seconds", minimum.as_secs()),
            ));
        }
        Ok(duration)
    }

    /// A comma-separated list, empty items dropped.
    pub fn list(&self, name: &str, default: &[&str]) -> Vec<String> {
        match self.raw(name) {
            None => default.iter().map(|item| (*item).to_owned()).collect(),
            Some(value) => value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// A comma-separated list of addresses or CIDR networks.
    pub fn networks(&self, name: &str, default: &[&str]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.list(name, default)
            .iter()
            .map(|text| {
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| ConfigError::new(name, format!("{text:?} is not an address or a CIDR network")))
            })
            .collect()
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Coloured, human-readable lines (development).
    Human,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "human" | "pretty" | "text" => Ok(Self::Human),
            _ => Err("expected `json` or `human`".to_owned()),
        }
    }
}

/// What every service needs, whichever it is.
#[derive(Debug, Clone)]
pub struct CommonSettings {
    /// Relational store: `postgres://…` or `sqlite://…` (`METRIX_DATABASE_URL`).
    pub database_url: Option<SecretString>,
    /// Redis for cache, sessions, rate limits and pub/sub (`METRIX_REDIS_URL`);
    /// in-process backends when unset.
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key (`METRIX_REDIS_KEY_PREFIX`).
    pub redis_key_prefix: String,
    /// Log format (`METRIX_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax (`METRIX_LOG`).
    pub log_filter: String,
    /// How long a stopping service lets requests in flight finish
    /// (`METRIX_SHUTDOWN_GRACE_SECONDS`).
    pub shutdown_grace: Duration,
    /// How long a stopping service reports NOT_SERVING before it stops
    /// accepting connections, so health-checking balancers move traffic away
    /// first (`METRIX_DRAIN_DELAY_SECONDS`).
    pub drain_delay: Duration,
    /// Where the auth service is, for keys and API-key checks (`METRIX_AUTH_URL`).
    pub auth_url: String,
    /// The `iss` of access tokens (`METRIX_TOKEN_ISSUER`).
    pub token_issuer: String,
    /// The `aud` of access tokens (`METRIX_TOKEN_AUDIENCE`).
    pub token_audience: String,
    /// This service's own service account, to call others
    /// (`METRIX_SERVICE_CLIENT_ID`, `METRIX_SERVICE_CLIENT_SECRET`).
    pub service_credentials: Option<ServiceCredentials>,
    /// The key that authenticates page tokens, the same for every instance
    /// (`METRIX_PAGE_TOKEN_KEY`, at least 32 characters); without it each
    /// process makes its own, and a page token holds only on the instance
    /// that made it.
    pub page_token_key: Option<SecretString>,
}

/// The shortest page token key accepted.
pub const MIN_PAGE_TOKEN_KEY_LENGTH: usize = 32;

/// A service account's client credentials.
#[derive(Debug, Clone)]
pub struct ServiceCredentials {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
}

/// The default address of the auth service in the local mesh.
pub const DEFAULT_AUTH_URL: &str = "http://127.0.0.1:50051";

impl CommonSettings {
    /// A service's store: its own `variable` (such as
    /// `METRIX_METRICS__DATABASE_URL`) when set, else `METRIX_DATABASE_URL`;
    /// either must name a supported backend.
    pub fn service_database_url(&self, settings: &Settings<'_>, variable: &str) -> Result<SecretString, ConfigError> {
        match settings.secret(variable) {
            Some(url) => {
                crate::storage::DatabaseKind::from_url(secrecy::ExposeSecret::expose_secret(&url))
                    .map_err(|problem| ConfigError::new(variable, problem))?;
                Ok(url)
            }
            None => self
                .database_url
                .clone()
                .ok_or_else(|| ConfigError::new("METRIX_DATABASE_URL", format!("must be set (or {variable})"))),
        }
    }

    /// Reads the common settings.
    pub fn load(settings: &Settings<'_>) -> Result<Self, ConfigError> {
        let database_url = settings.secret("METRIX_DATABASE_URL");
        if let Some(url) = &database_url {
            crate::storage::DatabaseKind::from_url(secrecy::ExposeSecret::expose_secret(url))
                .map_err(|problem| ConfigError::new("METRIX_DATABASE_URL", problem))?;
        }
        let redis_url = settings.secret("METRIX_REDIS_URL");
        if let Some(url) = &redis_url {
            let exposed = secrecy::ExposeSecret::expose_secret(url);
            // rediss schemes use TLS (ElastiCache in-transit encryption);
            // the cluster schemes speak Redis Cluster.
            const SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis-cluster://", "rediss-cluster://"];
            if !SCHEMES.iter().any(|scheme| exposed.starts_with(scheme)) {
                return Err(ConfigError::new(
                    "METRIX_REDIS_URL",
                    "must start with redis://, rediss://, redis-cluster:// or rediss-cluster://",
                ));
            }
        }
        let auth_url = settings.string("METRIX_AUTH_URL", DEFAULT_AUTH_URL);
        url::Url::parse(&auth_url).map_err(|error| ConfigError::new("METRIX_AUTH_URL", error))?;
        let service_credentials = match (
            settings.raw("METRIX_SERVICE_CLIENT_ID"),
            settings.secret("METRIX_SERVICE_CLIENT_SECRET"),
        ) {
            (Some(client_id), Some(client_secret)) => Some(ServiceCredentials {
                client_id,
                client_secret,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "METRIX_SERVICE_CLIENT_SECRET",
                    "must be set with METRIX_SERVICE_CLIENT_ID",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "METRIX_SERVICE_CLIENT_ID",
                    "must be set with METRIX_SERVICE_CLIENT_SECRET",
                ));
            }
        };
        Ok(Self {
            database_url,
            redis_url,
            redis_key_prefix: settings.string("METRIX_REDIS_KEY_PREFIX", "metrix:"),
            log_format: settings.parse("METRIX_LOG_FORMAT", LogFormat::Json)?,
            log_filter: settings.string("METRIX_LOG", "info"),
            shutdown_grace: settings.seconds(
                "METRIX_SHUTDOWN_GRACE_SECONDS",
                Duration::from_secs(25),
                Duration::ZERO,
            )?,
            drain_delay: settings.seconds("METRIX_DRAIN_DELAY_SECONDS", Duration::ZERO, Duration::ZERO)?,
            auth_url,
            token_issuer: settings.string("METRIX_TOKEN_ISSUER", "metrix"),
            token_audience: settings.string("METRIX_TOKEN_AUDIENCE", "metrix"),
            service_credentials,
            page_token_key: page_token_key(settings)?,
        })
    }
}

fn page_token_key(settings: &Settings<'_>) -> Result<Option<SecretString>, ConfigError> {
    const NAME: &str = "METRIX_PAGE_TOKEN_KEY";
    match settings.secret(NAME) {
        Some(key) if secrecy::ExposeSecret::expose_secret(&key).len() < MIN_PAGE_TOKEN_KEY_LENGTH => Err(
            ConfigError::new(NAME, format!("must be at least {MIN_PAGE_TOKEN_KEY_LENGTH} characters")),
        ),
        key => Ok(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        variables(pairs, &[])
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let source = environment(&[]);
        let common = CommonSettings::load(&Settings::new(&source)).expect("defaults are valid");
        assert_eq!(common.auth_url, DEFAULT_AUTH_URL);
        assert_eq!(common.log_format, LogFormat::Json);
        assert!(common.redis_url.is_none());
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let source = environment(&[("METRIX_SHUTDOWN_GRACE_SECONDS", "soon")]);
        let error = CommonSettings::load(&Settings::new(&source)).expect_err("not a number");
        assert_eq!(error.variable, "METRIX_SHUTDOWN_GRACE_SECONDS");
    }

    #[test]
    fn an_unknown_database_scheme_is_refused() {
        let source = environment(&[("METRIX_DATABASE_URL", "mysql://localhost/metrix")]);
        let error = CommonSettings::load(&Settings::new(&source)).expect_err("mysql is not a backend");
        assert_eq!(error.variable, "METRIX_DATABASE_URL");
    }

    #[test]
    fn half_a_service_credential_is_refused() {
        let source = environment(&[("METRIX_SERVICE_CLIENT_ID", "svc_1")]);
        let error = CommonSettings::load(&Settings::new(&source)).expect_err("secret missing");
        assert_eq!(error.variable, "METRIX_SERVICE_CLIENT_SECRET");
    }

    #[test]
    fn lists_drop_blank_items() {
        let source = environment(&[("METRIX_LIST", " a, ,b ,")]);
        assert_eq!(Settings::new(&source).list("METRIX_LIST", &[]), vec!["a", "b"]);
    }
}
