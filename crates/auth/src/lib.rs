//! The Metrix auth service: email/password and Google sign-in, short-lived
//! EdDSA access tokens published as JWKS, rotating refresh tokens with reuse
//! detection, roles scoped to an organisation, API keys, service accounts
//! and an audit trail; and the revocations every service applies to tokens
//! it verifies locally (closed sessions, changed roles, deactivated users).
//!
//! [`AuthServer::build`] connects to the store, runs the migrations, makes
//! sure signing keys exist and starts serving; `main` only picks it.

pub mod app;
pub mod audit;
pub mod domain;
pub mod error;
pub mod keys;
pub mod oauth;
pub mod passwords;
pub mod revocations;
pub mod secrets;
pub mod service;
pub mod settings;
pub mod store;
pub mod throttle;
pub mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use metrix_core::authn::{
    ApiKeyVerifier, Authenticator, Credential, JwksSource, Principal, RevocationFeed, Role, Scope, TokenVerifier,
};
use metrix_core::cache::Backends;
use metrix_core::server::{RunningServer, ServerError, ServiceDefinition, Shutdown};
use metrix_core::storage::{Database, Migrations, StorageError};
use metrix_proto::auth::v1::JsonWebKey;
use metrix_proto::auth::v1::auth_service_server::AuthServiceServer;
use secrecy::ExposeSecret;
use tonic::Status;

pub use crate::app::AuthState;
pub use crate::error::AuthError;
use crate::keys::KeyRing;
use crate::oauth::OidcProvider;
use crate::revocations::Revocations;
pub use crate::service::AuthApi;
pub use crate::settings::AuthSettings;
use crate::store::AuthStore;
use crate::throttle::Throttle;
use crate::tokens::{TokenIssuer, TokenPolicy};

/// The fully-qualified name of the gRPC service.
pub const SERVICE_NAME: &str = "metrix.auth.v1.AuthService";

/// How often every instance reloads the signing keys from the store, so a
/// rotation done elsewhere (or a missed announcement) is picked up.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// A failure to start the auth service.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The store could not be reached or migrated.
    #[error("auth storage")]
    Storage(#[from] StorageError),
    /// Keys or providers could not be set up.
    #[error("auth setup")]
    Auth(#[from] AuthError),
    /// The server could not start.
    #[error("auth server")]
    Server(#[from] ServerError),
}

/// The auth service's migrations for both backends.
pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/postgres"),
        sqlite: sqlx::migrate!("./migrations/sqlite"),
        table: "_auth_migrations",
    }
}

/// Connects to the configured store and runs the migrations.
pub async fn connect_and_migrate(settings: &AuthSettings) -> Result<Database, StorageError> {
    let database = Database::connect(settings.database_url.expose_secret()).await?;
    database.migrate(migrations()).await?;
    Ok(database)
}

/// The auth service's own key set, read from its key ring, and its own
/// revocations, read from the store and the announcements.
struct LocalJwks {
    keys: Arc<KeyRing>,
    revocations: Revocations,
}

#[async_trait]
impl JwksSource for LocalJwks {
    async fn fetch(&self) -> Result<Vec<JsonWebKey>, Status> {
        self.keys.published().await.map_err(Status::from)
    }

    async fn revocations(&self) -> Result<Option<RevocationFeed>, Status> {
        Ok(Some(self.revocations.feed().await?))
    }
}

/// API keys checked against the local store (the auth service is where
/// other services send theirs).
struct LocalApiKeys(AuthApi);

#[async_trait]
impl ApiKeyVerifier for LocalApiKeys {
    async fn verify(&self, key: &str) -> Result<Principal, Status> {
        let row = self.0.verified_api_key(key).await?;
        let scopes = Scope::parse_list(&row.scopes).map_err(|_| Status::internal("internal error"))?;
        Ok(Principal {
            subject: row.api_key_id.clone(),
            organization_id: row.organization_id,
            role: Role::CompanyUser,
            scopes,
            credential: Credential::ApiKey {
                api_key_id: row.api_key_id,
            },
        })
    }
}

/// Builds the shared state of the handlers.
pub async fn build_state(
    settings: &AuthSettings,
    database: Database,
    backends: &Backends,
) -> Result<Arc<AuthState>, AuthError> {
    let store = AuthStore::new(database.clone());
    // Retired keys stay published, and revocations stay in force, for the
    // token lifetime plus verifiers' leeway: until no token they concern
    // can still verify.
    let outlives_tokens = settings.access_token_ttl + Duration::from_secs(120);
    let keys = Arc::new(KeyRing::new(database, &settings.master_key, outlives_tokens));
    keys.ensure_keys().await?;
    let revocations = Revocations::new(store.clone(), backends.pubsub.clone(), outlives_tokens);
    let verifier = Arc::new(TokenVerifier::new(
        Arc::new(LocalJwks {
            keys: keys.clone(),
            revocations: revocations.clone(),
        }),
        &settings.common.token_issuer,
        &settings.common.token_audience,
    ));
    let policy = TokenPolicy {
        issuer: settings.common.token_issuer.clone(),
        audience: settings.common.token_audience.clone(),
        access_token_ttl: settings.access_token_ttl,
        refresh_token_ttl: settings.refresh_token_ttl,
        refresh_reuse_grace: settings.refresh_reuse_grace,
    };
    let google = match &settings.google {
        Some(google) => {
            // reqwest's rustls needs a process-wide crypto provider; ring
            // keeps the build free of C toolchains beyond a compiler.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(OidcProvider::new(google.clone())?)
        }
        None => None,
    };
    Ok(Arc::new(AuthState {
        tokens: TokenIssuer::new(policy, keys.clone(), store.clone(), backends.cache.clone()),
        store,
        keys,
        verifier,
        revocations,
        cache: backends.cache.clone(),
        pubsub: backends.pubsub.clone(),
        throttle: Throttle::new(
            backends.cache.clone(),
            backends.rate_limiter.clone(),
            settings.lockout_threshold,
            settings.lockout_base,
            settings.sign_in_per_minute_per_ip,
        ),
        google,
        trusted_proxies: settings.trusted_proxies.clone(),
    }))
}

/// A running auth service.
pub struct AuthServer {
    server: RunningServer,
    state: Arc<AuthState>,
}

impl AuthServer {
    /// Connects, migrates, ensures signing keys and starts serving on
    /// `settings.listen_addr` until `shutdown`.
    pub async fn build(settings: AuthSettings, backends: Backends, shutdown: Shutdown) -> Result<Self, BuildError> {
        metrix_core::page_token::use_key(settings.common.page_token_key.as_ref());
        let database = connect_and_migrate(&settings).await?;
        tracing::info!(backend = ?database.kind(), cache = backends.description, "auth storage ready");
        let state = build_state(&settings, database, &backends).await?;
        spawn_key_reloads(state.clone(), &backends, shutdown.clone()).await;
        revocations::spawn_cleanup(state.store.clone(), shutdown.clone());
        let api = AuthApi::new(state.clone());
        let authenticator = Authenticator::new(state.verifier.clone(), Some(Arc::new(LocalApiKeys(api.clone()))));
        let definition = ServiceDefinition {
            name: "auth",
            grpc_services: vec![SERVICE_NAME],
            routes: tonic::service::Routes::new(
                AuthServiceServer::new(api).max_decoding_message_size(metrix_core::server::MAX_MESSAGE_BYTES),
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
    pub fn state(&self) -> &Arc<AuthState> {
        &self.state
    }

    /// Serves until the shutdown completes.
    pub async fn run_until_stopped(self) -> Result<(), ServerError> {
        self.server.run_until_stopped().await
    }
}

/// Reloads the keys when another instance announces a rotation, and on a
/// timer in case an announcement is missed.
async fn spawn_key_reloads(state: Arc<AuthState>, backends: &Backends, shutdown: Shutdown) {
    let announcements = match backends.pubsub.subscribe(app::KEYS_ROTATED_CHANNEL).await {
        Ok(stream) => Some(stream),
        Err(error) => {
            tracing::warn!(error = %metrix_core::error::error_chain(&error), "cannot subscribe to key rotations, relying on the timer");
            None
        }
    };
    tokio::spawn(async move {
        let mut announcements = announcements.unwrap_or_else(|| futures::stream::pending().boxed());
        let mut timer = tokio::time::interval(KEY_RELOAD_INTERVAL);
        let stopped = shutdown.triggered();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                () = &mut stopped => break,
                _ = timer.tick() => {}
                Some(_) = announcements.next() => {}
            }
            match state.keys.reload().await {
                Ok(()) => state.verifier.forget_keys().await,
                Err(error) => {
                    tracing::warn!(error = %metrix_core::error::error_chain(&error), "cannot reload signing keys")
                }
            }
        }
    });
}
