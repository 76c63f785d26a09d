//! Google sign-in against a fake OpenID provider served by the test itself:
//! an RS256 key set, and a token endpoint that checks PKCE like Google does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use metrix_proto::auth::v1::{GetAuthUrlRequest, HandleOAuthCallbackRequest, SignInWithIdTokenRequest};
use serde_json::json;
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::helpers::{Backend, TestApp, assert_code, spawn_app_with, unique_email, violated_fields};
use metrix_core::both_backends;

const ISSUER: &str = "https://fake-provider.test";
const CLIENT_ID: &str = "metrix-test-client";
const CLIENT_SECRET: &str = "fake-client-secret";
const REDIRECT_URI: &str = "http://localhost:8080/oauth/callback";

/// What the provider remembers about an issued code.
#[derive(Clone)]
struct Grant {
    challenge: String,
    nonce: String,
    subject: String,
    email: String,
}

#[derive(Clone, Default)]
struct FakeProvider {
    grants: Arc<Mutex<HashMap<String, Grant>>>,
}

fn id_token(claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("fake-provider-key".into());
    let key = EncodingKey::from_rsa_der(include_bytes!("fixtures/provider_rsa.der"));
    jsonwebtoken::encode(&header, &claims, &key).expect("the fixture key signs")
}

fn standard_claims(subject: &str, email: &str, nonce: Option<&str>) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    json!({
        "iss": ISSUER, "aud": CLIENT_ID, "sub": subject, "email": email, "email_verified": true,
        "name": "Grace Hopper", "iat": now, "exp": now + 3600, "nonce": nonce,
    })
}

async fn token_endpoint(State(provider): State<FakeProvider>, body: String) -> impl IntoResponse {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    if field("grant_type") != "authorization_code"
        || field("client_id") != CLIENT_ID
        || field("client_secret") != CLIENT_SECRET
        || field("redirect_uri") != REDIRECT_URI
    {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_client"})));
    }
    let Some(grant) = provider.grants.lock().expect("lock").remove(&field("code")) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"})));
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(field("code_verifier").as_bytes()));
    if challenge != grant.challenge {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "pkce"})),
        );
    }
    let token = id_token(standard_claims(&grant.subject, &grant.email, Some(&grant.nonce)));
    (
        StatusCode::OK,
        Json(json!({"access_token": "ya29.fake", "id_token": token, "token_type": "Bearer", "expires_in": 3599})),
    )
}

async fn jwks_endpoint() -> Json<serde_json::Value> {
    let jwk: serde_json::Value = serde_json::from_str(include_str!("fixtures/provider_jwk.json")).expect("fixture jwk");
    Json(json!({ "keys": [jwk] }))
}

async fn start_provider() -> (FakeProvider, SocketAddr) {
    let provider = FakeProvider::default();
    let router = Router::new()
        .route("/token", post(token_endpoint))
        .route("/jwks", get(jwks_endpoint))
        .with_state(provider.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (provider, address)
}

async fn app_with_provider(backend: Backend) -> (TestApp, FakeProvider) {
    let (provider, address) = start_provider().await;
    let authorization = format!("http://{address}/authorize");
    let token = format!("http://{address}/token");
    let jwks = format!("http://{address}/jwks");
    let app = spawn_app_with(
        backend,
        &[
            ("METRIX_AUTH__GOOGLE__CLIENT_ID", CLIENT_ID),
            ("METRIX_AUTH__GOOGLE__CLIENT_SECRET", CLIENT_SECRET),
            ("METRIX_AUTH__GOOGLE__ISSUERS", ISSUER),
            ("METRIX_AUTH__GOOGLE__AUTHORIZATION_ENDPOINT", &authorization),
            ("METRIX_AUTH__GOOGLE__TOKEN_ENDPOINT", &token),
            ("METRIX_AUTH__GOOGLE__JWKS_URI", &jwks),
            ("METRIX_AUTH__GOOGLE__REDIRECT_URIS", REDIRECT_URI),
        ],
    )
    .await;
    (app, provider)
}

/// What the browser keeps between the redirect and the callback.
struct Authorization {
    code: String,
    state: String,
    verifier: String,
}

/// Runs the browser's part: makes a PKCE verifier, asks for the URL with its
/// challenge, "consents" at the provider (which issues a code bound to the
/// challenge), and keeps code, state and verifier.
async fn authorize(app: &TestApp, provider: &FakeProvider, subject: &str, email: &str) -> Authorization {
    let verifier = format!(
        "verifier-{}-{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let response = app
        .client
        .clone()
        .get_auth_url(GetAuthUrlRequest {
            redirect_uri: String::new(),
            code_challenge: challenge.clone(),
        })
        .await
        .expect("auth url")
        .into_inner();
    let url = url::Url::parse(&response.authorization_url).expect("a url");
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["redirect_uri"], REDIRECT_URI);
    assert_eq!(query["code_challenge"], challenge);
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["state"], response.state);
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    let grant = Grant {
        challenge,
        nonce: query["nonce"].clone(),
        subject: subject.into(),
        email: email.into(),
    };
    provider.grants.lock().expect("lock").insert(code.clone(), grant);
    Authorization {
        code,
        state: response.state,
        verifier,
    }
}

fn callback(authorization: &Authorization) -> HandleOAuthCallbackRequest {
    HandleOAuthCallbackRequest {
        code: authorization.code.clone(),
        state: authorization.state.clone(),
        code_verifier: authorization.verifier.clone(),
    }
}

async fn the_code_flow_signs_up_then_signs_in(backend: Backend) {
    let (app, provider) = app_with_provider(backend).await;
    let mut client = app.client.clone();
    let email = unique_email();
    let authorization = authorize(&app, &provider, "google-subject-1", &email).await;
    let first = client
        .handle_o_auth_callback(callback(&authorization))
        .await
        .expect("callback")
        .into_inner();
    assert!(first.new_user);
    let user = first.user.expect("user");
    assert_eq!(user.email, email);
    assert_eq!(user.sign_in_methods, ["google"]);
    assert!(first.tokens.expect("tokens").access_token.len() > 20);

    let replay = assert_code(
        client.handle_o_auth_callback(callback(&authorization)).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&replay), ["state"]);

    let again = authorize(&app, &provider, "google-subject-1", &email).await;
    let second = client
        .handle_o_auth_callback(callback(&again))
        .await
        .expect("callback")
        .into_inner();
    assert!(!second.new_user);
    assert_eq!(second.user.expect("user").user_id, user.user_id);
}

/// Login CSRF: an attacker's code and state, lured into a victim's browser,
/// come without the attacker's verifier and fail.
async fn a_callback_without_the_initiating_verifier_fails(backend: Backend) {
    let (app, provider) = app_with_provider(backend).await;
    let attackers = authorize(&app, &provider, "attacker", &unique_email()).await;
    let victims_browser = Authorization {
        code: attackers.code.clone(),
        state: attackers.state.clone(),
        verifier: format!(
            "victim-{}-{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ),
    };
    let refused = assert_code(
        app.client
            .clone()
            .handle_o_auth_callback(callback(&victims_browser))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&refused), ["code_verifier"]);
    let missing = assert_code(
        app.client
            .clone()
            .get_auth_url(GetAuthUrlRequest {
                redirect_uri: String::new(),
                code_challenge: String::new(),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&missing), ["code_challenge"]);
}

async fn a_code_redeemed_without_the_right_verifier_fails(backend: Backend) {
    let (app, provider) = app_with_provider(backend).await;
    let authorization = authorize(&app, &provider, "google-subject-2", &unique_email()).await;
    provider
        .grants
        .lock()
        .expect("lock")
        .get_mut(&authorization.code)
        .expect("grant")
        .challenge = "not-the-challenge".into();
    assert_code(
        app.client
            .clone()
            .handle_o_auth_callback(callback(&authorization))
            .await,
        Code::Unauthenticated,
    );
}

async fn id_tokens_are_checked_before_anyone_signs_in(backend: Backend) {
    let (app, _provider) = app_with_provider(backend).await;
    let mut client = app.client.clone();
    let email = unique_email();
    // A password account with the same address is not taken over: its
    // email was never proven, so whoever created it may not own it.
    app.sign_up(&email).await;
    assert_code(
        client
            .sign_in_with_id_token(SignInWithIdTokenRequest {
                id_token: id_token(standard_claims("google-subject-3", &email, Some("n-1"))),
                nonce: "n-1".into(),
            })
            .await,
        Code::FailedPrecondition,
    );
    let fresh_email = unique_email();
    let accepted = client
        .sign_in_with_id_token(SignInWithIdTokenRequest {
            id_token: id_token(standard_claims("google-subject-5", &fresh_email, Some("n-3"))),
            nonce: "n-3".into(),
        })
        .await
        .expect("id token sign-in")
        .into_inner();
    assert!(accepted.new_user);
    assert_eq!(accepted.user.expect("user").sign_in_methods, ["google"]);

    let mut wrong_audience = standard_claims("google-subject-4", &unique_email(), None);
    wrong_audience["aud"] = json!("someone-elses-client");
    let mut wrong_issuer = standard_claims("google-subject-4", &unique_email(), None);
    wrong_issuer["iss"] = json!("https://evil.test");
    let mut unverified = standard_claims("google-subject-4", &unique_email(), None);
    unverified["email_verified"] = json!(false);
    let mut expired = standard_claims("google-subject-4", &unique_email(), None);
    expired["exp"] = json!(1_000_000_000);
    for (claims, nonce, what) in [
        (wrong_audience, "", "audience"),
        (wrong_issuer, "", "issuer"),
        (unverified, "", "unverified email"),
        (expired, "", "expired"),
        (
            standard_claims("google-subject-4", &unique_email(), Some("n-2")),
            "n-other",
            "nonce",
        ),
    ] {
        let result = client
            .sign_in_with_id_token(SignInWithIdTokenRequest {
                id_token: id_token(claims),
                nonce: nonce.into(),
            })
            .await;
        assert_eq!(result.expect_err(what).code(), Code::Unauthenticated, "{what}");
    }
}

both_backends!(
    the_code_flow_signs_up_then_signs_in,
    a_callback_without_the_initiating_verifier_fails,
    a_code_redeemed_without_the_right_verifier_fails,
    id_tokens_are_checked_before_anyone_signs_in,
);
