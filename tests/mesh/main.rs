//! End-to-end: the mesh as a client outside it sees it.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

mod anonymity;
mod benchmark;
mod contracts;
mod gateway;
mod grpc_web_client;
mod metrics;
mod sessions;

use futures::StreamExt as _;
use metrix_e2e::Mesh;
use metrix_proto::auth::v1::auth_service_client::AuthServiceClient;
use metrix_proto::auth::v1::{GetCurrentUserRequest, SignUpRequest, SignUpResponse};
use prost::Message as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

/// The gateway answers `grpc.health.v1` for every service it routes with
/// that service's health at its upstream, as grpcurl and load balancers ask.
#[tokio::test]
async fn the_gateway_reports_the_health_of_the_services_it_routes() {
    let mesh = Mesh::start().await;
    let channel = tonic::transport::Endpoint::from_shared(mesh.gateway_url())
        .expect("a url")
        .connect()
        .await
        .expect("connects");
    let mut health = HealthClient::new(channel);
    for service in [
        "metrix.auth.v1.AuthService",
        "metrix.metrics.v1.MetricsService",
        "metrix.metrics.v1.TrackingService",
        "metrix.benchmark.v1.BenchmarkService",
    ] {
        // The first check runs as the gateway starts; allow it a few rounds.
        let mut last = None;
        for _ in 0..50 {
            let answer = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await;
            if let Ok(answer) = &answer
                && answer.get_ref().status() == ServingStatus::Serving
            {
                last = None;
                break;
            }
            last = Some(format!("{answer:?}"));
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            last.is_none(),
            "{service} never reported SERVING through the gateway: {last:?}"
        );
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "metrix.nothing.v1.Nothing".into(),
        })
        .await
        .expect_err("an unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn every_service_reports_serving_and_lists_itself_through_reflection() {
    let mesh = Mesh::start().await;
    let channel = tonic::transport::Endpoint::from_shared(mesh.auth_url())
        .expect("a url")
        .connect()
        .await
        .expect("connects");
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "metrix.auth.v1.AuthService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health answers")
            .into_inner();
        assert_eq!(status.status(), ServingStatus::Serving, "{service:?}");
    }

    // grpcurl speaks reflection v1alpha.
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let response = responses.next().await.expect("one answer").expect("not an error");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a list: {response:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
    for expected in [
        "metrix.auth.v1.AuthService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        !names.iter().any(|name| name.starts_with("metrix.metrics")),
        "only served services are advertised: {names:?}"
    );
}

/// Frames a protobuf message as grpc-web does: flag byte, big-endian length, body.
fn grpc_web_frame(message: &impl prost::Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(body.len()).expect("small message").to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

#[tokio::test]
async fn a_browser_signs_up_over_grpc_web_and_its_token_works_over_native_grpc() {
    let mesh = Mesh::start().await;
    let email = format!("web-{}@example.com", uuid::Uuid::new_v4().simple());
    let request = SignUpRequest {
        email: email.clone(),
        password: "correct horse battery".into(),
        organization_name: "Web Co".into(),
        ..Default::default()
    };
    // reqwest's rustls asks for a process-wide provider even for plain http.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().http1_only().build().expect("http client");
    let response = http
        .post(format!("{}/metrix.auth.v1.AuthService/SignUp", mesh.auth_url()))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("x-request-id", "e2e-grpc-web-1")
        .body(grpc_web_frame(&request))
        .send()
        .await
        .expect("grpc-web request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-request-id"],
        "e2e-grpc-web-1",
        "the request id comes back"
    );
    assert_eq!(response.headers()["content-type"], "application/grpc-web+proto");
    let body = response.bytes().await.expect("body");
    assert_eq!(body[0], 0, "the first frame is data");
    let length = u32::from_be_bytes(body[1..5].try_into().expect("four bytes")) as usize;
    let signed_up = SignUpResponse::decode(&body[5..5 + length]).expect("a SignUpResponse");
    let trailers = String::from_utf8_lossy(&body[5 + length + 5..]).to_lowercase();
    assert!(trailers.contains("grpc-status:0"), "trailers: {trailers}");

    let token = signed_up.tokens.expect("tokens").access_token;

    // A successful grpc-web call is counted with its real code (grpc-web
    // carries trailers in the body; the services observe native gRPC).
    let validate = metrix_proto::auth::v1::ValidateTokenRequest {
        access_token: token.clone(),
    };
    let validated = http
        .post(format!("{}/metrix.auth.v1.AuthService/ValidateToken", mesh.auth_url()))
        .header("content-type", "application/grpc-web+proto")
        .body(grpc_web_frame(&validate))
        .send()
        .await
        .expect("grpc-web request");
    assert_eq!(validated.status(), 200);
    let _ = validated.bytes().await.expect("body");
    let metrics = http
        .get(format!("{}/metrics", mesh.auth_url()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"rpc="/metrix.auth.v1.AuthService/ValidateToken",code="OK""#),
        "grpc-web success not counted as OK:\n{metrics}"
    );
    let mut client = AuthServiceClient::connect(mesh.auth_url()).await.expect("connects");
    let mut call = tonic::Request::new(GetCurrentUserRequest {});
    call.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("header-safe"));
    let me = client
        .get_current_user(call)
        .await
        .expect("native grpc with the token")
        .into_inner();
    assert_eq!(me.user.expect("user").email, email);
}

/// How every other service authenticates callers: tokens verified locally
/// against auth's published keys, API keys through auth with the service's
/// own service-account token.
#[tokio::test]
async fn another_service_verifies_tokens_and_api_keys_through_auth() {
    use std::sync::Arc;

    use metrix_core::authn::{
        ApiKeyVerifier as _, Authentication, Authenticator, RemoteApiKeyVerifier, RemoteJwks, Role, Scope,
        ServiceTokenSource, TokenVerifier,
    };
    use metrix_core::config::ServiceCredentials;
    use metrix_proto::auth::v1::CreateApiKeyRequest;

    let mesh = Mesh::start().await;
    let channel = tonic::transport::Endpoint::from_shared(mesh.auth_url())
        .expect("a url")
        .connect()
        .await
        .expect("connects");
    let mut auth = AuthServiceClient::new(channel.clone());
    let email = format!("svc-{}@example.com", uuid::Uuid::new_v4().simple());
    let signed_up = auth
        .sign_up(SignUpRequest {
            email,
            password: "correct horse battery".into(),
            organization_name: "Svc Co".into(),
            ..Default::default()
        })
        .await
        .expect("sign up")
        .into_inner();
    let admin_token = signed_up.tokens.expect("tokens").access_token;
    let organization_id = signed_up.user.expect("user").organization_id;
    fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().expect("header-safe"));
        request
    }
    let key = auth
        .create_api_key(bearer(
            CreateApiKeyRequest {
                display_name: "webhook".into(),
                scopes: vec!["events:write".into()],
                expire_time: None,
            },
            &admin_token,
        ))
        .await
        .expect("api key")
        .into_inner()
        .key;
    // Services run with a platform service account, as created by
    // `metrix auth create-service-account --scopes api-keys:verify`.
    let (account, client_secret) = metrix_auth::app::create_service_account(
        &mesh.auth_state.store,
        &organization_id,
        "metrics",
        &[Scope::ApiKeysVerify],
    )
    .await
    .expect("service account");

    let tokens = Arc::new(TokenVerifier::new(
        Arc::new(RemoteJwks::new(channel.clone())),
        "metrix",
        "metrix",
    ));
    let claims = tokens
        .verify(&admin_token)
        .await
        .expect("verified with the remote key set");
    assert_eq!(claims.role, Role::Admin);
    assert_eq!(claims.org, organization_id);

    let credentials = ServiceCredentials {
        client_id: account.client_id,
        client_secret: client_secret.into(),
    };
    let service_token = Arc::new(ServiceTokenSource::new(channel.clone(), credentials));
    let api_keys = Arc::new(RemoteApiKeyVerifier::new(channel, service_token));
    let principal = api_keys.verify(&key).await.expect("the key verifies");
    assert_eq!(principal.organization_id, organization_id);
    assert_eq!(principal.scopes, [Scope::EventsWrite]);
    assert_eq!(
        api_keys.verify("mx_not-a-key").await.expect_err("forged").code(),
        tonic::Code::Unauthenticated
    );

    let authenticator = Authenticator::new(tokens, Some(api_keys));
    let mut headers = tonic::codegen::http::HeaderMap::new();
    headers.insert("x-api-key", key.parse().expect("header-safe"));
    match authenticator.authenticate(&headers).await {
        Authentication::Authenticated(principal) => assert!(principal.require_scope(Scope::EventsWrite).is_ok()),
        other => panic!("the api key was not accepted: {other:?}"),
    }
    headers.clear();
    headers.insert("authorization", "Bearer not.a.jwt".parse().expect("header-safe"));
    assert!(matches!(
        authenticator.authenticate(&headers).await,
        Authentication::Refused(_)
    ));
}
