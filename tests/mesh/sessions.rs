//! Sessions, roles and revocation across the mesh, attacked as the attacker
//! did: a signed-out, demoted, deactivated or reused session's access token
//! is tried on auth, metrics and benchmark (native gRPC, each verifying
//! locally) and through the gateway (REST), and must be refused everywhere
//! within two seconds.

use std::time::Duration;

use metrix_core::testing::{authorized, eventually};
use metrix_e2e::Mesh;
use metrix_proto::auth::v1::auth_service_client::AuthServiceClient;
use metrix_proto::auth::v1::{
    CreateApiKeyRequest, DeactivateUserRequest, GetCurrentUserRequest, InviteUserRequest, RefreshTokenRequest, Role,
    SignUpRequest, TokenPair, UpdateUserRoleRequest,
};
use metrix_proto::benchmark::v1::ListBenchmarkSourcesRequest;
use metrix_proto::benchmark::v1::benchmark_service_client::BenchmarkServiceClient;
use metrix_proto::metrics::v1::ListCompaniesRequest;
use metrix_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use serde_json::{Value as Json, json};
use tonic::Code;

/// The bound every service keeps.
const BOUND: Duration = Duration::from_secs(2);
const PASSWORD: &str = "correct horse battery";

fn http() -> reqwest::Client {
    // reqwest's rustls asks for a process-wide provider even for plain http.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().http1_only().build().expect("http client")
}

fn unique_email() -> String {
    format!("session-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// What each way into the mesh answers a token: a gRPC code per service
/// (called directly) and an HTTP status per REST route (through the gateway).
#[derive(Debug, PartialEq, Eq)]
struct Answers {
    auth: Code,
    metrics: Code,
    benchmark: Code,
    rest_auth: u16,
    rest_metrics: u16,
    rest_benchmark: u16,
}

impl Answers {
    fn all_accepted(&self) -> bool {
        *self
            == Answers {
                auth: Code::Ok,
                metrics: Code::Ok,
                benchmark: Code::Ok,
                rest_auth: 200,
                rest_metrics: 200,
                rest_benchmark: 200,
            }
    }

    fn all_unauthenticated(&self) -> bool {
        *self
            == Answers {
                auth: Code::Unauthenticated,
                metrics: Code::Unauthenticated,
                benchmark: Code::Unauthenticated,
                rest_auth: 401,
                rest_metrics: 401,
                rest_benchmark: 401,
            }
    }
}

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    result.map_or_else(|status| status.code(), |_| Code::Ok)
}

/// Tries `token` everywhere.
async fn answers(mesh: &Mesh, http: &reqwest::Client, token: &str) -> Answers {
    let mut auth = AuthServiceClient::connect(mesh.auth_url()).await.expect("auth");
    let mut metrics = MetricsServiceClient::connect(mesh.metrics_url())
        .await
        .expect("metrics");
    let mut benchmark = BenchmarkServiceClient::connect(mesh.benchmark_url())
        .await
        .expect("benchmark");
    let gateway = mesh.gateway_url();
    let rest = |path: &str| {
        let request = http.get(format!("{gateway}{path}")).bearer_auth(token);
        async move { request.send().await.expect("rest").status().as_u16() }
    };
    Answers {
        auth: code(auth.get_current_user(authorized(GetCurrentUserRequest {}, token)).await),
        metrics: code(
            metrics
                .list_companies(authorized(ListCompaniesRequest::default(), token))
                .await,
        ),
        benchmark: code(
            benchmark
                .list_benchmark_sources(authorized(ListBenchmarkSourcesRequest::default(), token))
                .await,
        ),
        rest_auth: rest("/v1/users/me").await,
        rest_metrics: rest("/v1/companies").await,
        rest_benchmark: rest("/v1/benchmarkSources").await,
    }
}

/// Waits until `token` is refused everywhere, within the bound.
async fn refused_everywhere(mesh: &Mesh, http: &reqwest::Client, token: &str, what: &str) {
    eventually(BOUND, what, || async {
        answers(mesh, http, token).await.all_unauthenticated().then_some(())
    })
    .await;
}

async fn post(http: &reqwest::Client, url: String, token: Option<&str>, body: Json) -> (u16, Json) {
    let mut request = http.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Json::Null))
}

fn token_pair(body: &Json) -> TokenPair {
    TokenPair {
        access_token: body["tokens"]["accessToken"].as_str().expect("access token").to_owned(),
        refresh_token: body["tokens"]["refreshToken"]
            .as_str()
            .expect("refresh token")
            .to_owned(),
        ..Default::default()
    }
}

/// A founder (ADMIN of a new organisation) signed up through the edge.
async fn founder(mesh: &Mesh, http: &reqwest::Client) -> TokenPair {
    let (status, body) = post(
        http,
        format!("{}/v1/auth:signUp", mesh.gateway_url()),
        None,
        json!({"email": unique_email(), "password": PASSWORD, "organizationName": "Session Co"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    token_pair(&body)
}

/// A user invited into the founder's organisation with `role`: their id,
/// email and first session.
async fn member(mesh: &Mesh, founder: &TokenPair, role: Role) -> (String, String, TokenPair) {
    let mut auth = AuthServiceClient::connect(mesh.auth_url()).await.expect("auth");
    let email = unique_email();
    let invitation = auth
        .invite_user(authorized(
            InviteUserRequest {
                email: email.clone(),
                role: role.into(),
            },
            &founder.access_token,
        ))
        .await
        .expect("invite")
        .into_inner();
    let joined = auth
        .sign_up(SignUpRequest {
            email: email.clone(),
            password: PASSWORD.into(),
            invitation_token: invitation.invitation_token,
            ..Default::default()
        })
        .await
        .expect("join")
        .into_inner();
    (
        joined.user.expect("user").user_id,
        email,
        joined.tokens.expect("tokens"),
    )
}

#[tokio::test]
async fn a_signed_out_session_is_refused_by_every_service_and_the_edge() {
    let mesh = Mesh::start().await;
    let http = http();
    let tokens = founder(&mesh, &http).await;
    let before = answers(&mesh, &http, &tokens.access_token).await;
    assert!(before.all_accepted(), "{before:?}");

    let (status, body) = post(
        &http,
        format!("{}/v1/auth:signOut", mesh.gateway_url()),
        None,
        json!({"refreshToken": tokens.refresh_token}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    refused_everywhere(
        &mesh,
        &http,
        &tokens.access_token,
        "a signed-out session's access token",
    )
    .await;
}

#[tokio::test]
async fn a_demoted_admin_cannot_act_as_one_anywhere() {
    let mesh = Mesh::start().await;
    let http = http();
    let founder = founder(&mesh, &http).await;
    let (user_id, _, stale) = member(&mesh, &founder, Role::Admin).await;
    assert!(answers(&mesh, &http, &stale.access_token).await.all_accepted());
    let mut auth = AuthServiceClient::connect(mesh.auth_url()).await.expect("auth");
    auth.update_user_role(authorized(
        UpdateUserRoleRequest {
            user_id: user_id.clone(),
            role: Role::CompanyUser.into(),
        },
        &founder.access_token,
    ))
    .await
    .expect("demote");

    // At once: re-promoting themselves and minting a key that would outlive
    // the token, over gRPC and REST.
    let promote = auth
        .update_user_role(authorized(
            UpdateUserRoleRequest {
                user_id: user_id.clone(),
                role: Role::Admin.into(),
            },
            &stale.access_token,
        ))
        .await;
    assert_eq!(code(promote), Code::PermissionDenied);
    let key = auth
        .create_api_key(authorized(
            CreateApiKeyRequest {
                display_name: "backdoor".into(),
                scopes: vec!["read".into()],
                expire_time: None,
            },
            &stale.access_token,
        ))
        .await;
    assert_eq!(code(key), Code::PermissionDenied);
    let (status, body) = post(
        &http,
        format!("{}/v1/api-keys", mesh.gateway_url()),
        Some(&stale.access_token),
        json!({"displayName": "backdoor", "scopes": ["read"]}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(
        &http,
        format!("{}/v1/users/{user_id}:updateRole", mesh.gateway_url()),
        Some(&stale.access_token),
        json!({"role": "ROLE_ADMIN"}),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // Every other service refuses the token whose role claim is now a lie…
    eventually(BOUND, "the demotion reaches metrics and benchmark", || async {
        let answers = answers(&mesh, &http, &stale.access_token).await;
        (answers.metrics == Code::Unauthenticated
            && answers.benchmark == Code::Unauthenticated
            && answers.rest_metrics == 401
            && answers.rest_benchmark == 401)
            .then_some(())
    })
    .await;
    // …and a refreshed one carries the new role and works where it may.
    let refreshed = auth
        .refresh_token(RefreshTokenRequest {
            refresh_token: stale.refresh_token,
        })
        .await
        .expect("the session goes on")
        .into_inner()
        .tokens
        .expect("tokens");
    let me = auth
        .get_current_user(authorized(GetCurrentUserRequest {}, &refreshed.access_token))
        .await
        .expect("signed in")
        .into_inner();
    assert_eq!(me.user.expect("user").role(), Role::CompanyUser);
    assert!(answers(&mesh, &http, &refreshed.access_token).await.all_accepted());
}

#[tokio::test]
async fn a_deactivated_user_is_refused_everywhere_and_cannot_sign_in() {
    let mesh = Mesh::start().await;
    let http = http();
    let founder = founder(&mesh, &http).await;
    let (user_id, email, first) = member(&mesh, &founder, Role::Analyst).await;
    let (status, body) = post(
        &http,
        format!("{}/v1/auth:signIn", mesh.gateway_url()),
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let second = token_pair(&body);
    for session in [&first, &second] {
        assert!(answers(&mesh, &http, &session.access_token).await.all_accepted());
    }

    let (status, body) = post(
        &http,
        format!("{}/v1/users/{user_id}:deactivate", mesh.gateway_url()),
        Some(&founder.access_token),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revokedSessionCount"], 2, "{body}");

    for session in [&first, &second] {
        refused_everywhere(&mesh, &http, &session.access_token, "a deactivated user's session").await;
        let (status, body) = post(
            &http,
            format!("{}/v1/auth/tokens:refresh", mesh.gateway_url()),
            None,
            json!({"refreshToken": session.refresh_token}),
        )
        .await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, body) = post(
        &http,
        format!("{}/v1/auth:signIn", mesh.gateway_url()),
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    // The organisation goes on.
    assert!(answers(&mesh, &http, &founder.access_token).await.all_accepted());
    let mut auth = AuthServiceClient::connect(mesh.auth_url()).await.expect("auth");
    let again = auth
        .deactivate_user(authorized(DeactivateUserRequest { user_id }, &founder.access_token))
        .await
        .expect("idempotent")
        .into_inner();
    assert_eq!(again.revoked_session_count, 0);
}

#[tokio::test]
async fn a_refresh_retry_gets_the_same_pair_and_a_reuse_ends_the_session_everywhere() {
    let mesh = Mesh::start().await;
    let http = http();
    let first = founder(&mesh, &http).await;
    let refresh = |refresh_token: String| {
        let http = http.clone();
        let url = format!("{}/v1/auth/tokens:refresh", mesh.gateway_url());
        async move { post(&http, url, None, json!({"refreshToken": refresh_token})).await }
    };
    let (status, answered) = refresh(first.refresh_token.clone()).await;
    assert_eq!(status, 200, "{answered}");
    // The answer was lost; the client retries with the same token and gets
    // the same pair, not a second live branch of the session.
    let (status, retried) = refresh(first.refresh_token.clone()).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["tokens"], answered["tokens"]);
    let second = token_pair(&answered);
    assert!(answers(&mesh, &http, &second.access_token).await.all_accepted());

    // The successor is used; the first token coming back now is a reuse
    // (the client that lost the answer never had the successor): the
    // session ends, and its access tokens stop working everywhere.
    let (status, third) = refresh(second.refresh_token.clone()).await;
    assert_eq!(status, 200, "{third}");
    let third = token_pair(&third);
    let (status, reused) = refresh(first.refresh_token).await;
    assert_eq!(status, 401, "{reused}");
    for access_token in [&second.access_token, &third.access_token] {
        refused_everywhere(&mesh, &http, access_token, "a reused session's access token").await;
    }
    let (status, body) = refresh(third.refresh_token).await;
    assert_eq!(status, 401, "the whole family is revoked: {body}");
}
