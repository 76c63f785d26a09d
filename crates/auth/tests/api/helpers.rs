//! `spawn_app`: the auth service on 127.0.0.1:0 with a fresh database.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use metrix_auth::{AuthServer, AuthSettings, AuthState};
use metrix_core::authn::{RemoteJwks, TokenVerifier};
use metrix_core::cache::Backends;
use metrix_core::config::Settings;
use metrix_core::server::Shutdown;
use metrix_proto::auth::v1::auth_service_client::AuthServiceClient;
use metrix_proto::auth::v1::{InviteUserRequest, Role, SignUpRequest, SignUpResponse, TokenPair};
use tonic::transport::Channel;

pub use metrix_core::testing::{assert_code, authorized, eventually, violated_fields};

pub use metrix_core::testing::Backend;
use metrix_core::testing::TestDatabase;

/// A running auth service and a client for it.
pub struct TestApp {
    /// Where the service listens.
    pub address: SocketAddr,
    pub client: AuthServiceClient<Channel>,
    pub state: Arc<AuthState>,
    shutdown: Shutdown,
    /// What another instance of the same deployment is started with.
    environment: HashMap<String, String>,
    backends: Backends,
    database: Arc<TestDatabase>,
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

/// The service with some settings overridden (`METRIX_…` names).
pub async fn spawn_app_with(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    let (database, backends) = backend.storage().await;
    spawn_app_on(database, backends, overrides).await
}

/// The service with `backend`'s storage but another pub/sub.
pub async fn spawn_app_with_pubsub(backend: Backend, pubsub: Arc<dyn metrix_core::cache::PubSub>) -> TestApp {
    let (database, backends) = backend.storage().await;
    spawn_app_on(database, Backends { pubsub, ..backends }, &[]).await
}

async fn spawn_app_on(database: TestDatabase, backends: Backends, overrides: &[(&str, &str)]) -> TestApp {
    metrix_core::telemetry::init_test_logging();
    let master_key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let mut environment: HashMap<String, String> = HashMap::from([
        ("METRIX_AUTH__LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        ("METRIX_AUTH__DATABASE_URL".into(), database.url().to_owned()),
        ("METRIX_AUTH__MASTER_KEY".into(), master_key),
        ("METRIX_SHUTDOWN_GRACE_SECONDS".into(), "1".into()),
    ]);
    for (name, value) in overrides {
        environment.insert((*name).to_owned(), (*value).to_owned());
    }
    start_instance(environment, backends, Arc::new(database)).await
}

/// One instance of the service over `backends` and the database `environment` names.
async fn start_instance(
    environment: HashMap<String, String>,
    backends: Backends,
    database: Arc<TestDatabase>,
) -> TestApp {
    let settings = AuthSettings::load(&Settings::new(&environment)).expect("test settings are valid");
    let shutdown = Shutdown::new();
    let server = AuthServer::build(settings, backends.clone(), shutdown.clone())
        .await
        .expect("the auth service starts");
    let address = server.local_addr();
    let state = server.state().clone();
    tokio::spawn(server.run_until_stopped());
    let client = AuthServiceClient::connect(format!("http://{address}"))
        .await
        .expect("the client connects");
    TestApp {
        address,
        client,
        state,
        shutdown,
        environment,
        backends,
        database,
    }
}

/// A fresh email address.
pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// The password every test account uses.
pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    /// A second instance of the same deployment: the same database, master
    /// key, cache and pub/sub (Redis, or the in-process ones shared as
    /// `metrix dev` shares them), on a port of its own.
    pub async fn another_instance(&self) -> TestApp {
        start_instance(self.environment.clone(), self.backends.clone(), self.database.clone()).await
    }

    /// A verifier as another service builds one: keys and revocations
    /// from this instance over gRPC.
    pub fn remote_verifier(&self) -> TokenVerifier {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.address))
            .expect("a url")
            .connect_lazy();
        TokenVerifier::new(Arc::new(RemoteJwks::new(channel)), "metrix", "metrix")
    }

    /// Signs up a new admin of a new organisation.
    pub async fn sign_up(&self, email: &str) -> SignUpResponse {
        self.client
            .clone()
            .sign_up(SignUpRequest {
                email: email.to_owned(),
                password: PASSWORD.to_owned(),
                display_name: String::new(),
                organization_name: "Acme Analytics".to_owned(),
                invitation_token: String::new(),
            })
            .await
            .expect("sign-up succeeds")
            .into_inner()
    }

    /// A fresh sign-in of `email` with the test password.
    pub async fn sign_in(&self, email: &str) -> TokenPair {
        self.client
            .clone()
            .sign_in(metrix_proto::auth::v1::SignInRequest {
                email: email.to_owned(),
                password: PASSWORD.to_owned(),
            })
            .await
            .expect("sign-in succeeds")
            .into_inner()
            .tokens
            .expect("tokens")
    }

    /// Invites `email` with `role` as the admin holding `admin_token`, and
    /// signs the invitee up with the invitation.
    pub async fn invite_and_join(&self, admin_token: &str, email: &str, role: Role) -> SignUpResponse {
        let mut client = self.client.clone();
        let invitation = client
            .invite_user(authorized(
                InviteUserRequest {
                    email: email.to_owned(),
                    role: role.into(),
                },
                admin_token,
            ))
            .await
            .expect("invite")
            .into_inner();
        client
            .sign_up(SignUpRequest {
                email: email.to_owned(),
                password: PASSWORD.to_owned(),
                invitation_token: invitation.invitation_token,
                ..Default::default()
            })
            .await
            .expect("the invitee signs up")
            .into_inner()
    }

    /// A service token of a platform service account holding `scopes`
    /// (created as `metrix auth create-service-account` does).
    pub async fn platform_token(&self, scopes: &[metrix_core::authn::Scope]) -> String {
        let organization_id = self.sign_up(&unique_email()).await.user.expect("user").organization_id;
        let (account, secret) =
            metrix_auth::app::create_service_account(&self.state.store, &organization_id, "platform", scopes)
                .await
                .expect("service account");
        self.client
            .clone()
            .issue_service_token(metrix_proto::auth::v1::IssueServiceTokenRequest {
                client_id: account.client_id,
                client_secret: secret,
            })
            .await
            .expect("service token")
            .into_inner()
            .access_token
    }

    /// A new admin's tokens.
    pub async fn admin_tokens(&self) -> TokenPair {
        self.sign_up(&unique_email())
            .await
            .tokens
            .expect("sign-up returns tokens")
    }
}
