//! Server streams end: when the caller's access token expires, when its API
//! key is revoked, after the maximum lifetime; and a caller holds only so
//! many at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use metrix_core::authn::{
    AccessClaims, ApiKeyVerifier, Authenticator, JwksSource, Principal, Role, Scope, TokenVerifier,
};
use metrix_core::both_backends;
use metrix_core::testing::{TEST_TOKEN_ISSUER, TestIssuer};
use metrix_proto::auth::v1::JsonWebKey;
use metrix_proto::metrics::v1::*;
use tonic::{Code, Status, Streaming};

use crate::helpers::*;

/// The longest a test waits for a stream to end by itself.
const PATIENCE: Duration = Duration::from_secs(60);

/// Credentials the suite's issuer does not make: access tokens that expire
/// when a test says, and API keys a test revokes. Everything else is the
/// issuer's.
struct Credentials {
    issuer: Arc<TestIssuer>,
    signing_key: ed25519_dalek::SigningKey,
    key_id: String,
    revoked: Mutex<HashSet<String>>,
}

impl Credentials {
    fn new(issuer: &Arc<TestIssuer>) -> Arc<Self> {
        Arc::new(Self {
            issuer: issuer.clone(),
            signing_key: ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
            key_id: format!("short-{}", uuid::Uuid::new_v4().simple()),
            revoked: Mutex::default(),
        })
    }

    fn authenticator(self: &Arc<Self>) -> Authenticator {
        let tokens = Arc::new(TokenVerifier::new(self.clone(), TEST_TOKEN_ISSUER, TEST_TOKEN_ISSUER));
        Authenticator::new(tokens, Some(self.clone()))
    }

    /// A user's access token whose `exp` is `seconds` from now (negative:
    /// already past, within the verifier's leeway).
    fn user_token_expiring_in(&self, organization_id: &str, role: Role, seconds: i64) -> String {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs();
        let claims = AccessClaims {
            iss: TEST_TOKEN_ISSUER.to_owned(),
            aud: TEST_TOKEN_ISSUER.to_owned(),
            sub: uuid::Uuid::now_v7().to_string(),
            org: organization_id.to_owned(),
            role,
            sid: Some(uuid::Uuid::now_v7().to_string()),
            scope: String::new(),
            iat: now - 60,
            nbf: now - 60,
            exp: now.saturating_add_signed(seconds),
            jti: uuid::Uuid::now_v7().to_string(),
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.key_id.clone());
        let der = self.signing_key.to_pkcs8_der().expect("an Ed25519 key encodes");
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
        )
        .expect("test claims sign")
    }

    fn revoke(&self, key: &str) {
        self.revoked
            .lock()
            .expect("no test panics holding it")
            .insert(key.to_owned());
    }
}

#[async_trait::async_trait]
impl JwksSource for Credentials {
    async fn fetch(&self) -> Result<Vec<JsonWebKey>, Status> {
        use base64::Engine as _;
        let mut keys = self.issuer.fetch().await?;
        keys.push(JsonWebKey {
            kty: "OKP".to_owned(),
            kid: self.key_id.clone(),
            alg: "EdDSA".to_owned(),
            r#use: "sig".to_owned(),
            crv: "Ed25519".to_owned(),
            x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.signing_key.verifying_key().as_bytes()),
        });
        Ok(keys)
    }
}

#[async_trait::async_trait]
impl ApiKeyVerifier for Credentials {
    async fn verify(&self, key: &str) -> Result<Principal, Status> {
        if self.revoked.lock().expect("no test panics holding it").contains(key) {
            return Err(Status::unauthenticated("api key revoked"));
        }
        ApiKeyVerifier::verify(self.issuer.as_ref(), key).await
    }
}

/// The service with `overrides`, checking callers with [`Credentials`].
async fn spawn(backend: Backend, overrides: &[(&str, &str)]) -> (TestApp, Arc<Credentials>) {
    let mut made = None;
    let app = spawn_app_authenticating(backend, overrides, |issuer| {
        let credentials = Credentials::new(issuer);
        let authenticator = credentials.authenticator();
        made = Some(credentials);
        authenticator
    })
    .await;
    (app, made.expect("the authenticator was made"))
}

/// The status a stream ends with, skipping its messages; panics if it ends
/// cleanly or outlasts [`PATIENCE`].
async fn ending<T>(mut stream: Streaming<T>) -> (Status, usize) {
    let mut messages = 0;
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => messages += 1,
                Some(Err(status)) => return status,
                None => panic!("the stream ended without a status after {messages} messages"),
            }
        }
    })
    .await;
    (ended.expect("the stream ends by itself"), messages)
}

async fn watch_events(
    app: &TestApp,
    request: tonic::Request<WatchEventsRequest>,
) -> Result<Streaming<WatchEventsResponse>, Status> {
    app.client()
        .watch_events(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn a_dashboard_stream_ends_when_its_access_token_expires(backend: Backend) {
    let (app, credentials) = spawn(backend, &[]).await;
    let organization = new_organization();
    let token = credentials.user_token_expiring_in(&organization, Role::CompanyUser, 2);
    let stream = app
        .client()
        .watch_dashboard(authorized(
            WatchDashboardRequest {
                range_preset: RangePreset::Day as i32,
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("the token is valid when the stream opens")
        .into_inner();
    let (status, messages) = ending(stream).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("expired"), "{status:?}");
    assert!(messages >= 1, "the dashboard was sent while the token held");
}

async fn an_export_ends_when_its_access_token_has_expired(backend: Backend) {
    let (app, credentials) = spawn(backend, &[]).await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    app.client()
        .track_events(with_api_key(
            TrackEventsRequest {
                events: vec![Event {
                    event_id: "e-1".to_owned(),
                    app_id: "web".to_owned(),
                    event_type: "click".to_owned(),
                    ..Default::default()
                }],
                asynchronous: false,
            },
            &key,
        ))
        .await
        .expect("tracked");
    // Expired five seconds ago: the verifier's leeway still lets the call
    // in, but the stream sends nothing past the token's `exp`.
    let token = credentials.user_token_expiring_in(&organization, Role::CompanyUser, -5);
    let stream = app
        .client()
        .export_events(authorized(
            ExportEventsRequest {
                filter: None,
                format: ExportFormat::Ndjson as i32,
            },
            &token,
        ))
        .await
        .expect("the call is let in within the leeway")
        .into_inner();
    let (status, messages) = ending(stream).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(messages, 0, "nothing is exported past the token's expiry");
}

async fn an_event_stream_ends_when_its_api_key_is_revoked(backend: Backend) {
    let (app, credentials) = spawn(backend, &[("METRIX_METRICS__STREAM_REVERIFY_SECONDS", "1")]).await;
    let organization = new_organization();
    let revoked = app.issuer.api_key(&organization, &[Scope::Read]);
    let kept = app.issuer.api_key(&organization, &[Scope::Read]);
    let doomed = watch_events(&app, with_api_key(WatchEventsRequest::default(), &revoked))
        .await
        .expect("the key is valid when the stream opens");
    let mut survivor = watch_events(&app, with_api_key(WatchEventsRequest::default(), &kept))
        .await
        .expect("opens");
    credentials.revoke(&revoked);
    let (status, _) = ending(doomed).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("no longer accepted"), "{status:?}");
    // The other key's stream is still open: nothing has ended it.
    assert!(
        tokio::time::timeout(Duration::from_millis(1_500), survivor.next())
            .await
            .is_err(),
        "a valid key's stream stays open"
    );
}

async fn streams_end_after_the_maximum_lifetime(backend: Backend) {
    let (app, _) = spawn(backend, &[("METRIX_METRICS__MAX_STREAM_SECONDS", "1")]).await;
    let organization = new_organization();
    let stream = watch_events(
        &app,
        authorized(WatchEventsRequest::default(), &app.admin(&organization)),
    )
    .await
    .expect("opens");
    let (status, _) = ending(stream).await;
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(status.message().contains("reconnect"), "{status:?}");
}

async fn a_caller_holds_at_most_the_allowed_streams(backend: Backend) {
    let (app, _) = spawn(backend, &[("METRIX_METRICS__MAX_STREAMS_PER_CALLER", "2")]).await;
    let organization = new_organization();
    let flooder = app.user(&organization, Role::CompanyUser);
    let open = || watch_events(&app, authorized(WatchEventsRequest::default(), &flooder));
    let first = open().await.expect("first");
    let _second = open().await.expect("second");
    assert_code(open().await, Code::ResourceExhausted);
    let export = app
        .client()
        .export_events(authorized(ExportEventsRequest::default(), &flooder))
        .await;
    assert_code(export.map(|_| ()), Code::ResourceExhausted);
    // Another caller of the organisation is not held back.
    let _colleague = watch_events(
        &app,
        authorized(WatchEventsRequest::default(), &app.user(&organization, Role::Analyst)),
    )
    .await
    .expect("another caller's stream");
    // Closing a stream frees its place (once the server hears of it).
    drop(first);
    let reopened = tokio::time::timeout(PATIENCE, async {
        loop {
            match open().await {
                Ok(stream) => return stream,
                Err(status) if status.code() == Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(status) => panic!("unexpected status {status:?}"),
            }
        }
    })
    .await;
    assert!(reopened.is_ok(), "a closed stream's place is freed");
}

both_backends!(
    a_dashboard_stream_ends_when_its_access_token_expires,
    an_export_ends_when_its_access_token_has_expired,
    an_event_stream_ends_when_its_api_key_is_revoked,
    streams_end_after_the_maximum_lifetime,
    a_caller_holds_at_most_the_allowed_streams,
);
