//! Helpers for test suites: a fresh database per test (a UUID-named
//! PostgreSQL database or a temporary SQLite file) and a fresh Redis key
//! prefix per test, so tests run in parallel without sharing state.
//!
//! A test that needs PostgreSQL or Redis fails with a message saying how to
//! start it; it never skips.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test support: a failed expectation is the test failing"
)]

use std::path::PathBuf;

use secrecy::SecretString;

use crate::cache::Backends;

/// The PostgreSQL server tests use, as a URL of its maintenance database
/// (`METRIX_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).
pub fn postgres_admin_url() -> String {
    std::env::var("METRIX_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The Redis server tests use (`METRIX_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`).
pub fn redis_url() -> String {
    std::env::var("METRIX_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Creates an empty PostgreSQL database named after a fresh UUID and returns its URL.
///
/// # Panics
/// When PostgreSQL is unreachable, with a message that says how to start it.
async fn fresh_postgres_database() -> String {
    use sqlx::Connection as _;
    let admin_url = postgres_admin_url();
    let mut connection = match sqlx::PgConnection::connect(&admin_url).await {
        Ok(connection) => connection,
        Err(error) => panic!(
            "this test needs PostgreSQL at {admin_url} (set METRIX_TEST_POSTGRES_URL to change it) and could not connect: {error}. \
             Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        ),
    };
    let name = format!("metrix_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut connection)
        .await
        .unwrap_or_else(|error| panic!("cannot create test database {name}: {error}"));
    let mut url = url::Url::parse(&admin_url).expect("METRIX_TEST_POSTGRES_URL is a url");
    url.set_path(&name);
    url.to_string()
}

/// Drops a database made by `fresh_postgres_database`, closing whatever
/// connections are still open to it.
///
/// # Panics
/// When PostgreSQL is unreachable or refuses.
async fn drop_postgres_database(url: &str) {
    use sqlx::Connection as _;
    let name = url::Url::parse(url)
        .expect("a database url")
        .path()
        .trim_start_matches('/')
        .to_owned();
    let mut connection = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .expect("PostgreSQL is reachable");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut connection)
    .await
    .unwrap_or_else(|error| panic!("cannot drop database {name}: {error}"));
}

/// A temporary folder and the URL of an SQLite file inside it; the folder
/// (and the database) disappear when the guard is dropped.
fn fresh_sqlite_database() -> (tempfile::TempDir, String) {
    let folder = tempfile::tempdir().expect("a temporary folder for the test database");
    let path: PathBuf = folder.path().join("metrix.db");
    let url = format!("sqlite://{}", path.display());
    (folder, url)
}

/// Which storage a test runs against.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// A temporary SQLite file, with in-process cache and pub/sub.
    Embedded,
    /// PostgreSQL and Redis (under a key prefix of the test's own).
    Postgres,
}

impl Backend {
    /// A fresh database of this backend and the cache and pub/sub that go
    /// with it.
    ///
    /// # Panics
    /// When PostgreSQL or Redis is unreachable, saying how to start it.
    pub async fn storage(self) -> (TestDatabase, Backends) {
        let database = self.database().await;
        match self {
            Self::Embedded => (database, Backends::in_process()),
            Self::Postgres => (database, fresh_redis_backends().await),
        }
    }

    /// A fresh database of this backend.
    ///
    /// # Panics
    /// When PostgreSQL is unreachable, saying how to start it.
    pub async fn database(self) -> TestDatabase {
        match self {
            Self::Embedded => TestDatabase::sqlite(),
            Self::Postgres => TestDatabase::postgres().await,
        }
    }
}

/// Runs each listed `async fn(Backend)` once per backend, as
/// `embedded::name` and `postgres::name`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $( #[tokio::test] async fn $name() { super::$name($crate::testing::Backend::Embedded).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name($crate::testing::Backend::Postgres).await } )*
        }
    };
}

/// A test's own database: a temporary SQLite file, or a PostgreSQL database
/// of its own. Dropping the guard removes it, so a test run leaves no
/// databases behind.
pub struct TestDatabase {
    url: String,
    /// The SQLite file's folder; `None` for PostgreSQL.
    folder: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A temporary SQLite database.
    pub fn sqlite() -> Self {
        let (folder, url) = fresh_sqlite_database();
        Self {
            url,
            folder: Some(folder),
        }
    }

    /// An empty PostgreSQL database of the test's own.
    ///
    /// # Panics
    /// When PostgreSQL is unreachable, with a message that says how to start it.
    pub async fn postgres() -> Self {
        Self {
            url: fresh_postgres_database().await,
            folder: None,
        }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    /// Drops a PostgreSQL database (closing the connections still open to
    /// it) on a thread of its own, since the test's runtime may be the
    /// current thread; the SQLite folder goes with its guard.
    fn drop(&mut self) {
        if self.folder.is_some() {
            return;
        }
        let url = std::mem::take(&mut self.url);
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database")
                .block_on(drop_postgres_database(&url));
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("the test database could not be dropped (see the message above)");
        }
    }
}

/// Redis backends whose keys and channels carry a fresh prefix.
///
/// # Panics
/// When Redis is unreachable, with a message that says how to start it.
pub async fn fresh_redis_backends() -> Backends {
    let url = redis_url();
    let prefix = format!("metrix_test:{}:", uuid::Uuid::new_v4().simple());
    match Backends::connect(Some(&SecretString::from(url.clone())), &prefix).await {
        Ok(backends) => backends,
        Err(error) => panic!(
            "this test needs Redis at {url} (set METRIX_TEST_REDIS_URL to change it) and could not connect: {error}. \
             Start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no"
        ),
    }
}

/// `message` with a bearer token, as a signed-in caller sends it.
pub fn authorized<T>(message: T, access_token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {access_token}")
            .parse()
            .expect("tokens are header-safe"),
    );
    request
}

/// Asserts a status code, showing the status on failure, and returns the status.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: tonic::Code) -> tonic::Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got success: {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

/// Calls `attempt` every 10 ms until it answers `Some`, and returns that;
/// panics naming `what` if it has not within `limit`. For effects that are
/// promised within a bound (a revocation reaching every verifier).
///
/// # Panics
/// When `limit` passes first.
pub async fn eventually<T, F, Fut>(limit: std::time::Duration, what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(answer) = attempt().await {
            return answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The field names of a status's BadRequest violations.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_details_bad_request()
        .map(|details| {
            details
                .field_violations
                .into_iter()
                .map(|violation| violation.field)
                .collect()
        })
        .unwrap_or_default()
}

/// A stand-in for the auth service in a service's own tests: an Ed25519
/// key whose public half the service's [`Authenticator`] trusts, tokens
/// signed with it exactly as auth signs them, and API keys it knows.
///
/// [`Authenticator`]: crate::authn::Authenticator
pub struct TestIssuer {
    signing_key: ed25519_dalek::SigningKey,
    key_id: String,
    api_keys: std::sync::Mutex<std::collections::HashMap<String, crate::authn::Principal>>,
}

/// The issuer and audience test tokens carry (the settings' defaults).
pub const TEST_TOKEN_ISSUER: &str = "metrix";

impl TestIssuer {
    /// A fresh issuer with a random key.
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            signing_key: ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
            key_id: format!("test-{}", uuid::Uuid::new_v4().simple()),
            api_keys: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// An authenticator that trusts this issuer's tokens and API keys.
    pub fn authenticator(self: &std::sync::Arc<Self>) -> crate::authn::Authenticator {
        let tokens = std::sync::Arc::new(crate::authn::TokenVerifier::new(
            self.clone(),
            TEST_TOKEN_ISSUER,
            TEST_TOKEN_ISSUER,
        ));
        crate::authn::Authenticator::new(tokens, Some(self.clone()))
    }

    /// An access token of a user of `organization_id` with `role`.
    pub fn user_token(&self, organization_id: &str, role: crate::authn::Role) -> String {
        self.sign(organization_id, &uuid::Uuid::now_v7().to_string(), role, &[], true)
    }

    /// A service token of an account of `organization_id` holding `scopes`.
    pub fn service_token(&self, organization_id: &str, scopes: &[crate::authn::Scope]) -> String {
        let subject = format!("svc_{}", uuid::Uuid::new_v4().simple());
        self.sign(organization_id, &subject, crate::authn::Role::Service, scopes, false)
    }

    /// A new API key of `organization_id` holding `scopes`.
    pub fn api_key(&self, organization_id: &str, scopes: &[crate::authn::Scope]) -> String {
        let api_key_id = uuid::Uuid::now_v7().to_string();
        let key = format!("mx_test_{}", uuid::Uuid::new_v4().simple());
        let principal = crate::authn::Principal {
            subject: api_key_id.clone(),
            organization_id: organization_id.to_owned(),
            role: crate::authn::Role::CompanyUser,
            scopes: scopes.to_vec(),
            credential: crate::authn::Credential::ApiKey { api_key_id },
        };
        self.api_keys
            .lock()
            .expect("no test panics while holding the key table")
            .insert(key.clone(), principal);
        key
    }

    fn sign(
        &self,
        organization_id: &str,
        subject: &str,
        role: crate::authn::Role,
        scopes: &[crate::authn::Scope],
        with_session: bool,
    ) -> String {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs();
        let claims = crate::authn::AccessClaims {
            iss: TEST_TOKEN_ISSUER.to_owned(),
            aud: TEST_TOKEN_ISSUER.to_owned(),
            sub: subject.to_owned(),
            org: organization_id.to_owned(),
            role,
            sid: with_session.then(|| uuid::Uuid::now_v7().to_string()),
            scope: crate::authn::Scope::join(scopes),
            iat: now,
            nbf: now,
            exp: now + 3_600,
            jti: uuid::Uuid::now_v7().to_string(),
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.key_id.clone());
        let der = self
            .signing_key
            .to_pkcs8_der()
            .expect("an Ed25519 key always has a PKCS#8 encoding");
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
        )
        .expect("test claims serialise and sign")
    }
}

#[async_trait::async_trait]
impl crate::authn::JwksSource for TestIssuer {
    async fn fetch(&self) -> Result<Vec<metrix_proto::auth::v1::JsonWebKey>, tonic::Status> {
        use base64::Engine as _;
        Ok(vec![metrix_proto::auth::v1::JsonWebKey {
            kty: "OKP".to_owned(),
            kid: self.key_id.clone(),
            alg: "EdDSA".to_owned(),
            r#use: "sig".to_owned(),
            crv: "Ed25519".to_owned(),
            x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.signing_key.verifying_key().as_bytes()),
        }])
    }
}

#[async_trait::async_trait]
impl crate::authn::ApiKeyVerifier for TestIssuer {
    async fn verify(&self, key: &str) -> Result<crate::authn::Principal, tonic::Status> {
        self.api_keys
            .lock()
            .expect("no test panics while holding the key table")
            .get(key)
            .cloned()
            .ok_or_else(|| tonic::Status::unauthenticated("invalid api key"))
    }
}
