//! The harness of the end-to-end tests: the mesh as `metrix dev` runs it
//! (every service on its own port on 127.0.0.1, real gRPC between them), on
//! fresh embedded storage.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test support: a failed expectation is the test failing"
)]

use std::collections::HashMap;
use std::net::SocketAddr;

use base64::Engine as _;
use metrix_core::cache::Backends;
use metrix_core::config::Settings;
use metrix_core::server::Shutdown;

/// The metrics service's peer-key secret in the mesh: tests recompute the
/// peer feed's noise with it, as only the platform could.
pub const PEER_KEY_SECRET: &str = "an end-to-end peer key secret, long enough";

/// A value as the mesh's peer feed publishes it (noise-infused).
pub fn published_peer_value(company_id: &str, metric_id: &str, value: f64) -> f64 {
    metrix_metrics::peer_noise::perturb(
        &secrecy::SecretString::from(PEER_KEY_SECRET),
        company_id,
        metric_id,
        value,
    )
}

/// numpy's linear percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let position = (sorted.len() - 1) as f64 * q / 100.0;
    let lower = position.floor() as usize;
    let upper = (lower + 1).min(sorted.len() - 1);
    sorted[lower] + (position - lower as f64) * (sorted[upper] - sorted[lower])
}

/// The values a slice's figures are computed from: those within the 1.5 ×
/// IQR fences, sorted.
pub fn retained(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (p25, p75) = (percentile(&sorted, 25.0), percentile(&sorted, 75.0));
    let (lower, upper) = (p25 - 1.5 * (p75 - p25), p75 + 1.5 * (p75 - p25));
    sorted.retain(|value| (lower..=upper).contains(value));
    sorted
}

/// A running mesh; stopped when dropped.
pub struct Mesh {
    /// The auth service's address.
    pub auth: SocketAddr,
    /// The metrics service's address.
    pub metrics: SocketAddr,
    /// The benchmark service's address.
    pub benchmark: SocketAddr,
    /// The gateway's address.
    pub gateway: SocketAddr,
    /// The auth service's state, for setting up what only operators can
    /// (platform service accounts).
    pub auth_state: std::sync::Arc<metrix_auth::AuthState>,
    shutdown: Shutdown,
    _folder: tempfile::TempDir,
    _databases: [metrix_core::testing::TestDatabase; 3],
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl Mesh {
    /// Starts every service with embedded backends.
    ///
    /// # Panics
    /// When a service cannot start: the test cannot proceed.
    pub async fn start() -> Mesh {
        Self::start_with(&[]).await
    }

    /// Starts every service, with some gateway settings overridden.
    ///
    /// # Panics
    /// When a service cannot start: the test cannot proceed.
    pub async fn start_with(gateway_overrides: &[(&str, &str)]) -> Mesh {
        Self::start_inner(metrix_core::testing::Backend::Embedded, gateway_overrides).await
    }

    /// Starts every service on `backend`: SQLite files and in-process
    /// backends, or a PostgreSQL database per service and Redis under a key
    /// prefix of the mesh's own.
    ///
    /// # Panics
    /// When a service cannot start, or PostgreSQL or Redis is unreachable.
    pub async fn start_on(backend: metrix_core::testing::Backend) -> Mesh {
        Self::start_inner(backend, &[]).await
    }

    async fn start_inner(backend: metrix_core::testing::Backend, gateway_overrides: &[(&str, &str)]) -> Mesh {
        metrix_core::telemetry::init_test_logging();
        let folder = tempfile::tempdir().expect("a temporary folder");
        let (auth_database, metrics_database, benchmark_database) = (
            backend.database().await,
            backend.database().await,
            backend.database().await,
        );
        let master_key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let environment = HashMap::from([
            ("METRIX_AUTH__LISTEN_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("METRIX_AUTH__DATABASE_URL".to_owned(), auth_database.url().to_owned()),
            ("METRIX_AUTH__MASTER_KEY".to_owned(), master_key),
            ("METRIX_SHUTDOWN_GRACE_SECONDS".to_owned(), "1".to_owned()),
        ]);
        let settings = metrix_auth::AuthSettings::load(&Settings::new(&environment)).expect("valid settings");
        let shutdown = Shutdown::new();
        // One set of backends for the whole mesh, as `metrix dev` shares
        // them (and as every service shares Redis in production).
        let backends = match backend {
            metrix_core::testing::Backend::Embedded => Backends::in_process(),
            metrix_core::testing::Backend::Postgres => metrix_core::testing::fresh_redis_backends().await,
        };
        let auth = metrix_auth::AuthServer::build(settings, backends.clone(), shutdown.clone())
            .await
            .expect("auth starts");
        let address = auth.local_addr();
        let auth_state = auth.state().clone();
        tokio::spawn(auth.run_until_stopped());

        // The metrics and benchmark services check API keys and read peer
        // data with a platform service account, as `metrix auth
        // create-service-account --scopes "api-keys:verify peers:read"` makes.
        auth_state
            .store
            .ensure_platform_organization()
            .await
            .expect("the platform organisation");
        let (account, secret) = metrix_auth::app::create_service_account(
            &auth_state.store,
            metrix_auth::store::PLATFORM_ORGANIZATION_ID,
            "mesh services",
            &[
                metrix_core::authn::Scope::ApiKeysVerify,
                metrix_core::authn::Scope::PeersRead,
            ],
        )
        .await
        .expect("a service account");
        let metrics_environment = HashMap::from([
            ("METRIX_METRICS__LISTEN_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            (
                "METRIX_METRICS__DATABASE_URL".to_owned(),
                metrics_database.url().to_owned(),
            ),
            ("METRIX_METRICS__PEER_KEY_SECRET".to_owned(), PEER_KEY_SECRET.to_owned()),
            ("METRIX_AUTH_URL".to_owned(), format!("http://{address}")),
            ("METRIX_SERVICE_CLIENT_ID".to_owned(), account.client_id.clone()),
            ("METRIX_SERVICE_CLIENT_SECRET".to_owned(), secret.clone()),
            ("METRIX_SHUTDOWN_GRACE_SECONDS".to_owned(), "1".to_owned()),
        ]);
        let metrics_settings =
            metrix_metrics::MetricsSettings::load(&Settings::new(&metrics_environment)).expect("valid settings");
        let metrics = metrix_metrics::MetricsServer::build(metrics_settings, backends.clone(), shutdown.clone())
            .await
            .expect("metrics starts");
        let metrics_address = metrics.local_addr();
        tokio::spawn(metrics.run_until_stopped());

        let benchmark_environment = HashMap::from([
            ("METRIX_BENCHMARK__LISTEN_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            (
                "METRIX_BENCHMARK__DATABASE_URL".to_owned(),
                benchmark_database.url().to_owned(),
            ),
            (
                "METRIX_BENCHMARK__METRICS_URL".to_owned(),
                format!("http://{metrics_address}"),
            ),
            ("METRIX_BENCHMARK__BOOTSTRAP_RESAMPLES".to_owned(), "1000".to_owned()),
            ("METRIX_AUTH_URL".to_owned(), format!("http://{address}")),
            ("METRIX_SERVICE_CLIENT_ID".to_owned(), account.client_id),
            ("METRIX_SERVICE_CLIENT_SECRET".to_owned(), secret),
            ("METRIX_SHUTDOWN_GRACE_SECONDS".to_owned(), "1".to_owned()),
        ]);
        let benchmark_settings =
            metrix_benchmark::BenchmarkSettings::load(&Settings::new(&benchmark_environment)).expect("valid settings");
        let benchmark =
            metrix_benchmark::BenchmarkServer::build(benchmark_settings, backends.clone(), shutdown.clone())
                .await
                .expect("benchmark starts");
        let benchmark_address = benchmark.local_addr();
        tokio::spawn(benchmark.run_until_stopped());

        let mut gateway_environment = HashMap::from([
            ("METRIX_GATEWAY__LISTEN_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("METRIX_GATEWAY__AUTH_URL".to_owned(), format!("http://{address}")),
            (
                "METRIX_GATEWAY__METRICS_URL".to_owned(),
                format!("http://{metrics_address}"),
            ),
            (
                "METRIX_GATEWAY__BENCHMARK_URL".to_owned(),
                format!("http://{benchmark_address}"),
            ),
            ("METRIX_SHUTDOWN_GRACE_SECONDS".to_owned(), "1".to_owned()),
        ]);
        for (name, value) in gateway_overrides {
            gateway_environment.insert((*name).to_owned(), (*value).to_owned());
        }
        let gateway_settings = metrix_gateway::GatewaySettings::load(&Settings::new(&gateway_environment))
            .expect("valid gateway settings");
        let gateway = metrix_gateway::GatewayServer::build(gateway_settings, backends, shutdown.clone())
            .await
            .expect("the gateway starts");
        let gateway_address = gateway.local_addr();
        tokio::spawn(gateway.run_until_stopped());
        Mesh {
            auth: address,
            metrics: metrics_address,
            benchmark: benchmark_address,
            gateway: gateway_address,
            auth_state,
            shutdown,
            _folder: folder,
            _databases: [auth_database, metrics_database, benchmark_database],
        }
    }

    /// The URL of the gateway.
    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.gateway)
    }

    /// The URL of the metrics service.
    pub fn metrics_url(&self) -> String {
        format!("http://{}", self.metrics)
    }

    /// The URL of the benchmark service.
    pub fn benchmark_url(&self) -> String {
        format!("http://{}", self.benchmark)
    }

    /// The URL of the auth service.
    pub fn auth_url(&self) -> String {
        format!("http://{}", self.auth)
    }
}
