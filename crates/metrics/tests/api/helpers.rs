//! `spawn_app`: the metrics service on 127.0.0.1:0 with a fresh database,
//! and a stand-in issuer for the tokens and API keys of callers.

use std::collections::HashMap;
use std::sync::Arc;

use metrix_core::authn::{Role, Scope};
use metrix_core::config::Settings;
use metrix_core::server::Shutdown;
use metrix_core::testing::TestIssuer;
use metrix_metrics::{MetricsServer, MetricsSettings};
use metrix_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use metrix_proto::metrics::v1::tracking_service_client::TrackingServiceClient;
use metrix_proto::metrics::v1::{BusinessModel, Company, CreateCompanyRequest};
use tonic::Request;
use tonic::transport::Channel;

pub use metrix_core::testing::{assert_code, authorized, violated_fields};

pub use metrix_core::testing::Backend;
use metrix_core::testing::TestDatabase;

/// A running metrics service, a client for it, and the issuer of callers'
/// credentials.
pub struct TestApp {
    pub client: MetricsServiceClient<Channel>,
    /// A client of the Segment-compatible `TrackingService`.
    pub tracking: TrackingServiceClient<Channel>,
    pub issuer: Arc<TestIssuer>,
    /// The handlers' state (the queue, for tests that reach below the API).
    pub state: Arc<metrix_metrics::MetricsState>,
    shutdown: Shutdown,
    _database: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The service with default settings.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// The service with some settings overridden.
pub async fn spawn_app_with(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_authenticating(backend, overrides, TestIssuer::authenticator).await
}

/// The service with some settings overridden, checking callers with the
/// authenticator `authenticator` makes of the test's issuer (tests that
/// revoke keys or mint their own tokens wrap the issuer with it).
pub async fn spawn_app_authenticating(
    backend: Backend,
    overrides: &[(&str, &str)],
    authenticator: impl FnOnce(&Arc<TestIssuer>) -> metrix_core::authn::Authenticator,
) -> TestApp {
    metrix_core::telemetry::init_test_logging();
    let (database, backends) = backend.storage().await;
    let mut environment: HashMap<String, String> = HashMap::from([
        ("METRIX_METRICS__LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        ("METRIX_METRICS__DATABASE_URL".into(), database.url().to_owned()),
        (
            "METRIX_METRICS__PEER_KEY_SECRET".into(),
            "test-peer-key-secret-of-32-characters".into(),
        ),
        ("METRIX_SHUTDOWN_GRACE_SECONDS".into(), "1".into()),
    ]);
    for (name, value) in overrides {
        environment.insert((*name).to_owned(), (*value).to_owned());
    }
    let settings = MetricsSettings::load(&Settings::new(&environment)).expect("test settings are valid");
    let issuer = TestIssuer::new();
    let shutdown = Shutdown::new();
    let server = MetricsServer::build_with_authenticator(settings, backends, authenticator(&issuer), shutdown.clone())
        .await
        .expect("the metrics service starts");
    let address = server.local_addr();
    let state = server.state().clone();
    tokio::spawn(server.run_until_stopped());
    let client = MetricsServiceClient::connect(format!("http://{address}"))
        .await
        .expect("the client connects");
    let tracking = TrackingServiceClient::connect(format!("http://{address}"))
        .await
        .expect("the tracking client connects");
    TestApp {
        client,
        tracking,
        issuer,
        state,
        shutdown,
        _database: database,
    }
}

/// A fresh organisation id.
pub fn new_organization() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// `message` with an API key.
pub fn with_api_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().expect("keys are header-safe"));
    request
}

/// A valid company to create.
pub fn company(name: &str) -> Company {
    Company {
        name: name.to_owned(),
        sector_id: "fintech".to_owned(),
        business_model: BusinessModel::B2bSaas as i32,
        country_code: "DE".to_owned(),
        founding_year: 2020,
        ..Default::default()
    }
}

impl TestApp {
    /// A client to call with.
    pub fn client(&self) -> MetricsServiceClient<Channel> {
        self.client.clone()
    }

    /// An admin's token in `organization_id`.
    pub fn admin(&self, organization_id: &str) -> String {
        self.issuer.user_token(organization_id, Role::Admin)
    }

    /// A token of a user with `role` in `organization_id`.
    pub fn user(&self, organization_id: &str, role: Role) -> String {
        self.issuer.user_token(organization_id, role)
    }

    /// A platform service token holding `scopes`.
    pub fn platform(&self, scopes: &[Scope]) -> String {
        self.issuer.service_token("platform", scopes)
    }

    /// Creates a company named `name` in `organization_id` and returns its id.
    pub async fn create_company(&self, organization_id: &str, name: &str) -> String {
        self.client()
            .create_company(authorized(
                CreateCompanyRequest {
                    company: Some(company(name)),
                },
                &self.admin(organization_id),
            ))
            .await
            .expect("the company is created")
            .into_inner()
            .company
            .expect("a company")
            .company_id
    }
}
