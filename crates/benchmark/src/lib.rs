//! The Metrix benchmark service: exact peer statistics per metric, revenue
//! band, sector and period, a company's direction-aware rank among its
//! peers, benchmark time series with a trend, imported external sources,
//! and reports — all behind a minimum-peer-count anonymity rule.
//!
//! Peer data comes from the metrics service over gRPC ([`peers`]); the
//! numerics ([`stats`]) are checked against numpy and scipy in CI.
//! [`BenchmarkServer::build`] connects to the store, runs the migrations and
//! starts serving; `main` only picks it.

pub mod convert;
pub mod engine;
pub mod error;
pub mod figures;
pub mod import;
pub mod peers;
pub mod ranking;
pub mod reports;
pub mod series;
pub mod service;
pub mod settings;
pub mod stats;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use metrix_core::authn::{Authenticator, RemoteApiKeyVerifier, RemoteJwks, ServiceTokenSource, TokenVerifier};
use metrix_core::cache::Backends;
use metrix_core::server::{RunningServer, ServerError, ServiceDefinition, Shutdown};
use metrix_core::storage::{Database, Migrations, StorageError};
use metrix_proto::benchmark::v1::benchmark_service_server::BenchmarkServiceServer;
use secrecy::{ExposeSecret, SecretString};

pub use crate::engine::Engine;
pub use crate::error::BenchmarkError;
use crate::figures::Bootstrap;
pub use crate::peers::{MetricsPeerSource, PeerSource};
pub use crate::service::BenchmarkApi;
pub use crate::settings::BenchmarkSettings;
use crate::store::BenchmarkStore;

/// The fully-qualified name of the gRPC service.
pub const SERVICE_NAME: &str = "metrix.benchmark.v1.BenchmarkService";

/// A failure to start the benchmark service.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The store could not be reached or migrated.
    #[error("benchmark storage")]
    Storage(#[from] StorageError),
    /// The address of the auth or metrics service is unusable.
    #[error("upstream service address")]
    Address(#[from] tonic::transport::Error),
    /// The server could not start.
    #[error("benchmark server")]
    Server(#[from] ServerError),
}

/// The benchmark service's migrations for both backends.
pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/postgres"),
        sqlite: sqlx::migrate!("./migrations/sqlite"),
        table: "_benchmark_migrations",
    }
}

/// Connects to the store at `database_url` and runs the migrations.
pub async fn connect_and_migrate(database_url: &SecretString) -> Result<Database, StorageError> {
    let database = Database::connect(database_url.expose_secret()).await?;
    database.migrate(migrations()).await?;
    Ok(database)
}

/// A channel to `url`, connected on first use.
fn lazy_channel(url: &str) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    Ok(tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30))
        .connect_lazy())
}

/// How the service checks callers and reads peer data: tokens against the
/// auth service's key set, API keys through auth, peer data from the
/// metrics service with this service's own account.
fn upstreams(settings: &BenchmarkSettings) -> Result<(Authenticator, Arc<dyn PeerSource>), tonic::transport::Error> {
    let auth = lazy_channel(&settings.common.auth_url)?;
    let tokens = Arc::new(TokenVerifier::new(
        Arc::new(RemoteJwks::new(auth.clone())),
        &settings.common.token_issuer,
        &settings.common.token_audience,
    ));
    let service_token = settings
        .common
        .service_credentials
        .clone()
        .map(|credentials| Arc::new(ServiceTokenSource::new(auth.clone(), credentials)));
    if service_token.is_none() {
        tracing::warn!(
            "METRIX_SERVICE_CLIENT_ID is not set: peer data cannot be read and API keys are refused; \
             create an account with `metrix auth create-service-account --scopes \"peers:read api-keys:verify\"`"
        );
    }
    let api_keys = service_token.clone().map(|source| {
        Arc::new(RemoteApiKeyVerifier::new(auth.clone(), source)) as Arc<dyn metrix_core::authn::ApiKeyVerifier>
    });
    let peers = Arc::new(MetricsPeerSource::new(
        lazy_channel(&settings.metrics_url)?,
        service_token,
    ));
    Ok((Authenticator::new(tokens, api_keys), peers))
}

/// A running benchmark service.
pub struct BenchmarkServer {
    server: RunningServer,
    engine: Arc<Engine>,
}

impl BenchmarkServer {
    /// Connects, migrates and starts serving on `settings.listen_addr` until
    /// `shutdown`, with callers checked by the auth service and peer data
    /// from the metrics service.
    pub async fn build(
        settings: BenchmarkSettings,
        backends: Backends,
        shutdown: Shutdown,
    ) -> Result<Self, BuildError> {
        let (authenticator, peers) = upstreams(&settings)?;
        Self::build_with(settings, backends, authenticator, peers, shutdown).await
    }

    /// As [`BenchmarkServer::build`], with the given way of checking callers
    /// and source of peer data (tests stand in for auth and metrics with them).
    pub async fn build_with(
        settings: BenchmarkSettings,
        backends: Backends,
        authenticator: Authenticator,
        peers: Arc<dyn PeerSource>,
        shutdown: Shutdown,
    ) -> Result<Self, BuildError> {
        metrix_core::page_token::use_key(settings.common.page_token_key.as_ref());
        let database = connect_and_migrate(&settings.database_url).await?;
        tracing::info!(backend = ?database.kind(), "benchmark storage ready");
        let engine = Arc::new(Engine {
            peers,
            cache: backends.cache.clone(),
            store: BenchmarkStore::new(database),
            min_peer_count: settings.min_peer_count,
            default_bootstrap: Bootstrap {
                seed: settings.bootstrap_seed,
                resamples: settings.bootstrap_resamples,
            },
            cache_ttl: settings.cache_ttl,
            local: std::sync::Mutex::default(),
            rate_limiter: backends.rate_limiter.clone(),
            query_quota: metrix_core::cache::Quota::per_minute(settings.queries_per_minute),
            fresh_bootstrap_quota: metrix_core::cache::Quota::per_minute(settings.fresh_bootstraps_per_minute),
            cpu: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            )),
        });
        engine::spawn_invalidation(engine.clone(), backends.pubsub.clone(), shutdown.clone());
        let definition = ServiceDefinition {
            name: "benchmark",
            grpc_services: vec![SERVICE_NAME],
            routes: tonic::service::Routes::new(
                BenchmarkServiceServer::new(BenchmarkApi::new(engine.clone()))
                    .max_decoding_message_size(metrix_core::server::MAX_MESSAGE_BYTES),
            ),
            authenticator,
            shutdown_grace: settings.common.shutdown_grace,
            drain_delay: settings.common.drain_delay,
        };
        let server = RunningServer::start(definition, settings.listen_addr, shutdown).await?;
        Ok(Self { server, engine })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The engine (for operations run beside the server).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Serves until the shutdown completes.
    pub async fn run_until_stopped(self) -> Result<(), ServerError> {
        self.server.run_until_stopped().await
    }
}
