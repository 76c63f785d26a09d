//! The auth service's settings, from `METRIX_AUTH__…` variables over defaults.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ipnet::IpNet;
use metrix_core::config::{CommonSettings, ConfigError, Settings};
use secrecy::{ExposeSecret, SecretBox, SecretString};

/// The default address of the auth service.
pub const DEFAULT_LISTEN_ADDR: std::net::SocketAddr =
    std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 50051));

/// Everything the auth service is configured with.
#[derive(Debug)]
pub struct AuthSettings {
    /// Settings every service shares.
    pub common: CommonSettings,
    /// Where to listen (`METRIX_AUTH__LISTEN_ADDR`).
    pub listen_addr: SocketAddr,
    /// The relational store (`METRIX_AUTH__DATABASE_URL`, else `METRIX_DATABASE_URL`).
    pub database_url: SecretString,
    /// The key that encrypts signing keys at rest: 32 bytes, base64
    /// (`METRIX_AUTH__MASTER_KEY`).
    pub master_key: SecretBox<[u8; 32]>,
    /// Lifetime of access tokens (`METRIX_AUTH__ACCESS_TOKEN_TTL_SECONDS`, 900).
    pub access_token_ttl: Duration,
    /// Lifetime of a session's refresh tokens (`METRIX_AUTH__REFRESH_TOKEN_TTL_SECONDS`, 30 days).
    pub refresh_token_ttl: Duration,
    /// How long a spent refresh token may be presented again, for clients
    /// that retry (`METRIX_AUTH__REFRESH_REUSE_GRACE_SECONDS`, 30).
    pub refresh_reuse_grace: Duration,
    /// Failed sign-ins of one account before it locks (`METRIX_AUTH__LOCKOUT_THRESHOLD`, 5).
    pub lockout_threshold: u32,
    /// First lockout; each further failure doubles it (`METRIX_AUTH__LOCKOUT_SECONDS`, 60).
    pub lockout_base: Duration,
    /// Sign-in attempts per client address per minute (`METRIX_AUTH__SIGN_IN_PER_MINUTE_PER_IP`, 30).
    pub sign_in_per_minute_per_ip: u32,
    /// Peers whose `x-metrix-client-ip` is believed (`METRIX_AUTH__TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpNet>,
    /// Google sign-in, when configured.
    pub google: Option<GoogleSettings>,
}

/// An OpenID Connect provider (Google by default).
#[derive(Debug, Clone)]
pub struct GoogleSettings {
    /// The OAuth client id (`METRIX_AUTH__GOOGLE__CLIENT_ID`).
    pub client_id: String,
    /// The OAuth client secret (`METRIX_AUTH__GOOGLE__CLIENT_SECRET`).
    pub client_secret: SecretString,
    /// Accepted `iss` values (`METRIX_AUTH__GOOGLE__ISSUERS`).
    pub issuers: Vec<String>,
    /// The authorization endpoint (`METRIX_AUTH__GOOGLE__AUTHORIZATION_ENDPOINT`).
    pub authorization_endpoint: url::Url,
    /// The token endpoint (`METRIX_AUTH__GOOGLE__TOKEN_ENDPOINT`).
    pub token_endpoint: url::Url,
    /// The provider's key set (`METRIX_AUTH__GOOGLE__JWKS_URI`).
    pub jwks_uri: url::Url,
    /// Redirect URIs the application may ask for; the first is the default
    /// (`METRIX_AUTH__GOOGLE__REDIRECT_URIS`).
    pub redirect_uris: Vec<url::Url>,
}

impl AuthSettings {
    /// Reads and validates the auth settings.
    pub fn load(settings: &Settings<'_>) -> Result<Self, ConfigError> {
        let common = CommonSettings::load(settings)?;
        let database_url = common.service_database_url(settings, "METRIX_AUTH__DATABASE_URL")?;
        let master_key = parse_master_key(settings)?;
        let trusted_proxies = settings.networks("METRIX_AUTH__TRUSTED_PROXIES", &["127.0.0.0/8", "::1/128"])?;
        let lockout_threshold: u32 = settings.parse("METRIX_AUTH__LOCKOUT_THRESHOLD", 5)?;
        if lockout_threshold == 0 {
            return Err(ConfigError::new("METRIX_AUTH__LOCKOUT_THRESHOLD", "must be at least 1"));
        }
        let sign_in_per_minute_per_ip: u32 = settings.parse("METRIX_AUTH__SIGN_IN_PER_MINUTE_PER_IP", 30)?;
        if sign_in_per_minute_per_ip == 0 {
            return Err(ConfigError::new(
                "METRIX_AUTH__SIGN_IN_PER_MINUTE_PER_IP",
                "must be at least 1",
            ));
        }
        Ok(Self {
            listen_addr: settings.socket_addr("METRIX_AUTH__LISTEN_ADDR", DEFAULT_LISTEN_ADDR)?,
            database_url,
            master_key,
            access_token_ttl: settings.seconds(
                "METRIX_AUTH__ACCESS_TOKEN_TTL_SECONDS",
                Duration::from_secs(900),
                Duration::from_secs(30),
            )?,
            refresh_token_ttl: settings.seconds(
                "METRIX_AUTH__REFRESH_TOKEN_TTL_SECONDS",
                Duration::from_secs(30 * 24 * 3600),
                Duration::from_secs(60),
            )?,
            refresh_reuse_grace: settings.seconds(
                "METRIX_AUTH__REFRESH_REUSE_GRACE_SECONDS",
                Duration::from_secs(30),
                Duration::ZERO,
            )?,
            lockout_threshold,
            lockout_base: settings.seconds(
                "METRIX_AUTH__LOCKOUT_SECONDS",
                Duration::from_secs(60),
                Duration::from_secs(1),
            )?,
            sign_in_per_minute_per_ip,
            trusted_proxies,
            google: GoogleSettings::load(settings)?,
            common,
        })
    }
}

fn parse_master_key(settings: &Settings<'_>) -> Result<SecretBox<[u8; 32]>, ConfigError> {
    const NAME: &str = "METRIX_AUTH__MASTER_KEY";
    let encoded = settings
        .secret(NAME)
        .ok_or_else(|| ConfigError::new(NAME, "must be set: 32 random bytes in base64 (openssl rand -base64 32)"))?;
    let bytes = STANDARD
        .decode(encoded.expose_secret())
        .map_err(|_| ConfigError::new(NAME, "must be base64 (openssl rand -base64 32)"))?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| ConfigError::new(NAME, "must decode to exactly 32 bytes"))?;
    Ok(SecretBox::new(Box::new(key)))
}

impl GoogleSettings {
    fn load(settings: &Settings<'_>) -> Result<Option<Self>, ConfigError> {
        let Some(client_id) = settings.raw("METRIX_AUTH__GOOGLE__CLIENT_ID") else {
            return Ok(None);
        };
        let client_secret = settings.secret("METRIX_AUTH__GOOGLE__CLIENT_SECRET").ok_or_else(|| {
            ConfigError::new(
                "METRIX_AUTH__GOOGLE__CLIENT_SECRET",
                "must be set with METRIX_AUTH__GOOGLE__CLIENT_ID",
            )
        })?;
        let url = |name: &str, default: &str| -> Result<url::Url, ConfigError> {
            url::Url::parse(&settings.string(name, default)).map_err(|error| ConfigError::new(name, error))
        };
        let redirect_uris = settings
            .list(
                "METRIX_AUTH__GOOGLE__REDIRECT_URIS",
                &["http://localhost:8080/oauth/callback"],
            )
            .iter()
            .map(|uri| url::Url::parse(uri))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| ConfigError::new("METRIX_AUTH__GOOGLE__REDIRECT_URIS", error))?;
        Ok(Some(Self {
            client_id,
            client_secret,
            issuers: settings.list(
                "METRIX_AUTH__GOOGLE__ISSUERS",
                &["https://accounts.google.com", "accounts.google.com"],
            ),
            authorization_endpoint: url(
                "METRIX_AUTH__GOOGLE__AUTHORIZATION_ENDPOINT",
                "https://accounts.google.com/o/oauth2/v2/auth",
            )?,
            token_endpoint: url(
                "METRIX_AUTH__GOOGLE__TOKEN_ENDPOINT",
                "https://oauth2.googleapis.com/token",
            )?,
            jwks_uri: url(
                "METRIX_AUTH__GOOGLE__JWKS_URI",
                "https://www.googleapis.com/oauth2/v3/certs",
            )?,
            redirect_uris,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<AuthSettings, ConfigError> {
        let source = metrix_core::config::variables(
            pairs,
            &[
                ("METRIX_DATABASE_URL", "sqlite://auth.db"),
                (
                    "METRIX_AUTH__MASTER_KEY",
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                ),
            ],
        );
        AuthSettings::load(&Settings::new(&source))
    }

    #[test]
    fn defaults_are_valid() {
        let settings = load(&[]).expect("valid");
        assert_eq!(settings.access_token_ttl, Duration::from_secs(900));
        assert_eq!(settings.refresh_reuse_grace, Duration::from_secs(30));
        assert!(settings.google.is_none());
    }

    #[test]
    fn a_short_master_key_is_refused_by_name() {
        let error = load(&[("METRIX_AUTH__MASTER_KEY", "c2hvcnQ=")]).expect_err("too short");
        assert_eq!(error.variable, "METRIX_AUTH__MASTER_KEY");
    }

    #[test]
    fn bad_proxies_are_refused_by_name() {
        let error = load(&[("METRIX_AUTH__TRUSTED_PROXIES", "10.0.0.0/8,nonsense")]).expect_err("not a network");
        assert_eq!(error.variable, "METRIX_AUTH__TRUSTED_PROXIES");
    }

    #[test]
    fn google_needs_its_secret() {
        let error = load(&[("METRIX_AUTH__GOOGLE__CLIENT_ID", "client")]).expect_err("secret missing");
        assert_eq!(error.variable, "METRIX_AUTH__GOOGLE__CLIENT_SECRET");
    }
}
