//! The Metrix metrics service: companies and their KPIs, product events,
//! time-series data points, live dashboards, CSV import and export, and the
//! anonymised peer feed the benchmark service reads.
//!
//! [`MetricsServer::build`] connects to the store, runs the migrations and
//! starts serving; `main` only picks it. Callers are authenticated with the
//! auth service's published keys (tokens) and its VerifyApiKey (API keys).

pub mod app;
pub mod catalog;
pub mod company;
pub mod dashboard;
pub mod data_points;
pub mod demo;
pub mod error;
pub mod events;
pub mod export;
pub mod formulas;
pub mod import;
pub mod ingest;
pub mod peer_noise;
pub mod profiles;
pub use metrix_core::period;
pub mod service;
pub mod settings;
pub mod sketch;
pub mod store;
pub mod streams;
pub mod tracking;
pub mod validation;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrix_core::authn::{
    ApiKeyVerifier, Authenticator, RemoteApiKeyVerifier, RemoteJwks, ServiceTokenSource, TokenVerifier,
};
use metrix_core::cache::Backends;
use metrix_core::server::{RunningServer, ServerError, ServiceDefinition, Shutdown};
use metrix_core::storage::{Database, Migrations, StorageError};
use metrix_proto::metrics::v1::metrics_service_server::MetricsServiceServer;
use metrix_proto::metrics::v1::tracking_service_server::TrackingServiceServer;
use secrecy::{ExposeSecret, SecretString};

pub use crate::app::MetricsState;
pub use crate::error::MetricsError;
pub use crate::service::MetricsApi;
pub use crate::settings::MetricsSettings;
use crate::store::MetricsStore;

/// The fully-qualified name of the gRPC service.
pub const SERVICE_NAME: &str = "metrix.metrics.v1.MetricsService";
/// The fully-qualified name of the Segment-compatible tracking service.
pub const TRACKING_SERVICE_NAME: &str = "metrix.metrics.v1.TrackingService";

/// A failure to start the metrics service.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The store could not be reached or migrated.
    #[error("metrics storage")]
    Storage(#[from] StorageError),
    /// The auth service's address is unusable.
    #[error("auth service address")]
    AuthAddress(#[from] tonic::transport::Error),
    /// The server could not start.
    #[error("metrics server")]
    Server(#[from] ServerError),
}

/// The metrics service's migrations for both backends.
pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/postgres"),
        sqlite: sqlx::migrate!("./migrations/sqlite"),
        table: "_metrics_migrations",
    }
}

/// Connects to the store at `database_url` and runs the migrations, SQL
/// then data (`store::data_migrations`).
pub async fn connect_and_migrate(database_url: &SecretString) -> Result<Database, StorageError> {
    let database = Database::connect(database_url.expose_secret()).await?;
    database.migrate(migrations()).await?;
    // The queued path's durable stream when no Redis is configured.
    database
        .migrate(metrix_core::storage::work_stream::migrations())
        .await?;
    // Rewrites of stored data that SQL cannot express, each once per database.
    MetricsStore::new(database.clone()).run_data_migrations().await?;
    Ok(database)
}

/// The durable queue of the asynchronous ingestion path: Redis Streams when
/// Redis is configured, else the work-stream table of `database`.
pub fn ingestion_queue(backends: &Backends, database: &Database) -> Arc<dyn metrix_core::cache::WorkStream> {
    backends
        .work_streams
        .clone()
        .unwrap_or_else(|| Arc::new(metrix_core::storage::work_stream::SqlWorkStream::new(database.clone())))
}

/// Builds the shared state of the handlers.
pub fn build_state(settings: &MetricsSettings, database: Database, backends: &Backends) -> Arc<MetricsState> {
    let work_streams = ingestion_queue(backends, &database);
    Arc::new(MetricsState {
        store: MetricsStore::new(database),
        peer_key_secret: settings.peer_key_secret.clone(),
        pubsub: backends.pubsub.clone(),
        work_streams,
        queue: settings.queue,
        trusted_proxies: settings.trusted_proxies.clone(),
        event_retention: settings.event_retention,
    })
}

/// How often expired raw events are deleted.
const RETENTION_INTERVAL: Duration = Duration::from_secs(600);
/// Events deleted per statement, so the sweep never holds long locks.
const RETENTION_BATCH: i64 = 10_000;

/// Deletes raw events older than the retention period, now and every ten
/// minutes, until `shutdown`; the rollups stay.
fn spawn_retention(state: Arc<MetricsState>, shutdown: Shutdown) {
    shutdown.every(RETENTION_INTERVAL, move || {
        let state = state.clone();
        async move {
            let cutoff = metrix_core::time::now_micros() - metrix_core::time::duration_micros(state.event_retention);
            let mut deleted_total = 0;
            loop {
                match state.store.delete_events_before(cutoff, RETENTION_BATCH).await {
                    Ok(0) => break,
                    Ok(deleted) => deleted_total += deleted,
                    Err(error) => {
                        tracing::warn!(error = %metrix_core::error::error_chain(&error), "event retention sweep failed");
                        break;
                    }
                }
            }
            if deleted_total > 0 {
                tracing::info!(deleted = deleted_total, "expired raw events deleted");
            }
        }
    });
}

/// How the service checks callers: tokens against the auth service's key
/// set, API keys through its VerifyApiKey with this service's own account.
fn authenticator(settings: &MetricsSettings) -> Result<Authenticator, tonic::transport::Error> {
    let channel = tonic::transport::Endpoint::from_shared(settings.common.auth_url.clone())?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect_lazy();
    let tokens = Arc::new(TokenVerifier::new(
        Arc::new(RemoteJwks::new(channel.clone())),
        &settings.common.token_issuer,
        &settings.common.token_audience,
    ));
    let api_keys = match &settings.common.service_credentials {
        Some(credentials) => {
            let source = Arc::new(ServiceTokenSource::new(channel.clone(), credentials.clone()));
            Some(Arc::new(RemoteApiKeyVerifier::new(channel, source)) as Arc<dyn ApiKeyVerifier>)
        }
        None => {
            tracing::warn!(
                "METRIX_SERVICE_CLIENT_ID is not set: API keys cannot be verified and are refused; \
                 create an account with `metrix auth create-service-account --scopes api-keys:verify`"
            );
            None
        }
    };
    Ok(Authenticator::new(tokens, api_keys))
}

/// A running metrics service.
pub struct MetricsServer {
    server: RunningServer,
    state: Arc<MetricsState>,
}

impl MetricsServer {
    /// Connects, migrates and starts serving on `settings.listen_addr` until
    /// `shutdown`, checking callers with the auth service.
    pub async fn build(settings: MetricsSettings, backends: Backends, shutdown: Shutdown) -> Result<Self, BuildError> {
        let authenticator = authenticator(&settings)?;
        Self::build_with_authenticator(settings, backends, authenticator, shutdown).await
    }

    /// As [`MetricsServer::build`], with the given way of checking callers
    /// (tests stand in for the auth service with it).
    pub async fn build_with_authenticator(
        settings: MetricsSettings,
        backends: Backends,
        authenticator: Authenticator,
        shutdown: Shutdown,
    ) -> Result<Self, BuildError> {
        metrix_core::page_token::use_key(settings.common.page_token_key.as_ref());
        let database = connect_and_migrate(&settings.database_url).await?;
        tracing::info!(backend = ?database.kind(), "metrics storage ready");
        let state = build_state(&settings, database, &backends);
        spawn_retention(state.clone(), shutdown.clone());
        ingest::spawn_workers(state.clone(), state.work_streams.clone(), settings.queue, &shutdown);
        let definition = ServiceDefinition {
            name: "metrics",
            grpc_services: vec![SERVICE_NAME, TRACKING_SERVICE_NAME],
            // The streaming handlers find their bounds (and the authenticator
            // that re-checks a stream's credential) in the request.
            routes: tonic::service::Routes::new(tonic::service::interceptor::InterceptedService::new(
                MetricsServiceServer::new(MetricsApi::new(state.clone()))
                    .max_decoding_message_size(metrix_core::server::MAX_MESSAGE_BYTES),
                streams::StreamPolicy::new(settings.streams, authenticator.clone()).interceptor(),
            ))
            .add_service(
                TrackingServiceServer::new(service::TrackingApi::new(state.clone(), authenticator.clone()))
                    .max_decoding_message_size(metrix_core::server::MAX_MESSAGE_BYTES),
            ),
            authenticator,
            shutdown_grace: settings.common.shutdown_grace,
            drain_delay: settings.common.drain_delay,
        };
        let server = RunningServer::start(definition, settings.listen_addr, shutdown).await?;
        Ok(Self { server, state })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The handlers' shared state (for operations run beside the server).
    pub fn state(&self) -> &Arc<MetricsState> {
        &self.state
    }

    /// Serves until the shutdown completes.
    pub async fn run_until_stopped(self) -> Result<(), ServerError> {
        self.server.run_until_stopped().await
    }
}
