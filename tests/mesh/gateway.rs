//! The edge, driven as its clients drive it: curl-like REST JSON, grpc-web
//! and native gRPC through one address.

use metrix_e2e::Mesh;
use metrix_proto::auth::v1::auth_service_client::AuthServiceClient;
use metrix_proto::auth::v1::{GetCurrentUserRequest, GetCurrentUserResponse};
use prost::Message as _;
use serde_json::{Value as Json, json};

fn http() -> reqwest::Client {
    // reqwest's rustls asks for a process-wide provider even for plain http.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().http1_only().build().expect("http client")
}

fn unique_email() -> String {
    format!("edge-{}@example.com", uuid::Uuid::new_v4().simple())
}

async fn post_json(http: &reqwest::Client, url: String, body: Json) -> (u16, reqwest::header::HeaderMap, Json) {
    let response = http.post(url).json(&body).send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Json::Null);
    (status, headers, body)
}

#[tokio::test]
async fn rest_sign_up_then_the_token_works_over_grpc_web_and_native_grpc() {
    let mesh = Mesh::start().await;
    let http = http();
    let email = unique_email();
    let (status, _, signed_up) = post_json(
        &http,
        format!("{}/v1/auth:signUp", mesh.gateway_url()),
        json!({"email": email, "password": "correct horse battery", "organizationName": "Edge Co"}),
    )
    .await;
    assert_eq!(status, 200, "{signed_up}");
    assert_eq!(signed_up["user"]["role"], "ROLE_ADMIN", "enums by name");
    assert!(
        signed_up["user"]["createTime"]
            .as_str()
            .expect("timestamp")
            .ends_with('Z'),
        "RFC 3339 in UTC"
    );
    let (status, _, signed_in) = post_json(
        &http,
        format!("{}/v1/auth:signIn", mesh.gateway_url()),
        json!({"email": email, "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(status, 200, "{signed_in}");
    let token = signed_in["tokens"]["accessToken"].as_str().expect("token").to_owned();

    // REST GET with the token.
    let me: Json = http
        .get(format!("{}/v1/users/me", mesh.gateway_url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(me["user"]["email"], email);

    // grpc-web through the gateway.
    let body = GetCurrentUserRequest {}.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(&body);
    let response = http
        .post(format!(
            "{}/metrix.auth.v1.AuthService/GetCurrentUser",
            mesh.gateway_url()
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .bearer_auth(&token)
        .body(frame)
        .send()
        .await
        .expect("grpc-web request");
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.expect("body");
    let length = u32::from_be_bytes(bytes[1..5].try_into().expect("four bytes")) as usize;
    let current = GetCurrentUserResponse::decode(&bytes[5..5 + length]).expect("a response message");
    assert_eq!(current.user.expect("user").email, email);

    // Native gRPC through the gateway.
    let mut client = AuthServiceClient::connect(mesh.gateway_url()).await.expect("connects");
    let mut request = tonic::Request::new(GetCurrentUserRequest {});
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("header-safe"));
    let current = client
        .get_current_user(request)
        .await
        .expect("native grpc through the gateway")
        .into_inner();
    assert_eq!(current.user.expect("user").email, email);
    let mut anonymous = AuthServiceClient::connect(mesh.gateway_url()).await.expect("connects");
    let refused = anonymous
        .get_current_user(GetCurrentUserRequest {})
        .await
        .expect_err("no credentials");
    assert_eq!(
        refused.code(),
        tonic::Code::Unauthenticated,
        "the service, not the gateway, checks credentials"
    );
}

#[tokio::test]
async fn bad_requests_get_json_errors_naming_the_field() {
    let mesh = Mesh::start().await;
    let http = http();
    let (status, _, body) = post_json(
        &http,
        format!("{}/v1/auth:signUp", mesh.gateway_url()),
        json!({"emial": "x", "password": 5}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "INVALID_ARGUMENT");
    let violations = &body["details"][0]["fieldViolations"];
    assert_eq!(violations[0]["field"], "emial");
    assert_eq!(violations[1]["field"], "password");

    // The service's own validation comes back the same way.
    let (status, _, body) = post_json(
        &http,
        format!("{}/v1/auth:signUp", mesh.gateway_url()),
        json!({"email": "not-an-email", "password": "correct horse battery", "organizationName": "X"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["details"][0]["@type"], "type.googleapis.com/google.rpc.BadRequest");
    assert_eq!(body["details"][0]["fieldViolations"][0]["field"], "email");

    let missing = http
        .get(format!("{}/v1/nowhere", mesh.gateway_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 404);
    let wrong_verb = http
        .delete(format!("{}/v1/users/me", mesh.gateway_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong_verb.status(), 405);
    assert_eq!(wrong_verb.headers()["allow"], "GET");

    let unauthenticated = http
        .get(format!("{}/v1/users/me", mesh.gateway_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(unauthenticated.status(), 401);

    let huge = "x".repeat(1024 * 1024 + 1);
    let (status, _, body) = post_json(
        &http,
        format!("{}/v1/auth:signIn", mesh.gateway_url()),
        json!({"email": huge}),
    )
    .await;
    assert_eq!(status, 413, "{body}");
}

#[tokio::test]
async fn cors_allows_configured_origins_only() {
    let mesh = Mesh::start_with(&[("METRIX_GATEWAY__CORS_ORIGINS", "https://app.metrix.example")]).await;
    let http = http();
    let preflight = |origin: &'static str| {
        http.request(
            reqwest::Method::OPTIONS,
            format!("{}/metrix.auth.v1.AuthService/SignIn", mesh.gateway_url()),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,x-user-agent,authorization",
        )
        .send()
    };
    let allowed = preflight("https://app.metrix.example").await.expect("preflight");
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.metrix.example"
    );
    let allowed_headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_owned();
    for header in [
        "x-grpc-web",
        "x-user-agent",
        "authorization",
        "grpc-timeout",
        "x-api-key",
        "x-request-id",
    ] {
        assert!(
            allowed_headers.contains(header),
            "{header} not allowed: {allowed_headers}"
        );
    }
    let foreign = preflight("https://evil.example").await.expect("preflight");
    assert_eq!(foreign.status(), 403);
    assert!(!foreign.headers().contains_key("access-control-allow-origin"));

    let simple = http
        .get(format!("{}/healthz", mesh.gateway_url()))
        .header("origin", "https://app.metrix.example")
        .send()
        .await
        .expect("request");
    let exposed = simple.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ascii")
        .to_owned();
    for header in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(header), "{header} not exposed: {exposed}");
    }
    assert_eq!(simple.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn sign_in_floods_are_rate_limited_with_retry_after() {
    let mesh = Mesh::start_with(&[("METRIX_GATEWAY__RATE_LIMIT_AUTH_PER_IP", "3")]).await;
    let http = http();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let response = http
            .post(format!("{}/v1/auth:signIn", mesh.gateway_url()))
            .json(&json!({"email": unique_email(), "password": "wrong wrong wrong"}))
            .send()
            .await
            .expect("request");
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let body: Json = response.json().await.expect("json");
            assert_eq!(body["status"], "RESOURCE_EXHAUSTED");
        }
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    assert!(
        retry_after
            .and_then(|seconds| seconds.parse::<u64>().ok())
            .is_some_and(|seconds| seconds >= 1)
    );
    // Other routes keep their own (larger) budget.
    let jwks = http
        .get(format!("{}/.well-known/jwks.json", mesh.gateway_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(jwks.status(), 200);
}

#[tokio::test]
async fn an_unreachable_upstream_is_503_with_retry_after_and_a_blown_deadline_504() {
    let unreachable = Mesh::start_with(&[("METRIX_GATEWAY__AUTH_URL", "http://127.0.0.1:9")]).await;
    let http = http();
    let (status, headers, body) = post_json(
        &http,
        format!("{}/v1/auth:signIn", unreachable.gateway_url()),
        json!({"email": unique_email(), "password": "x"}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "UNAVAILABLE");
    assert_eq!(headers["retry-after"], "1");
    let ready = http
        .get(format!("{}/readyz", unreachable.gateway_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(ready.status(), 503);

    let mesh = Mesh::start().await;
    let response = http
        .post(format!("{}/v1/auth:signUp", mesh.gateway_url()))
        .header("grpc-timeout", "1n")
        .json(&json!({"email": unique_email(), "password": "correct horse battery", "organizationName": "Slow Co"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 504);
    let body: Json = response.json().await.expect("json");
    assert_eq!(body["status"], "DEADLINE_EXCEEDED");
    let ready = http
        .get(format!("{}/readyz", mesh.gateway_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn the_openapi_document_and_docs_are_served() {
    let mesh = Mesh::start().await;
    let http = http();
    let document: Json = http
        .get(format!("{}/openapi.json", mesh.gateway_url()))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/v1/auth:signUp"]["post"].is_object());
    assert!(document["components"]["securitySchemes"]["bearerAuth"].is_object());
    let docs = http
        .get(format!("{}/docs", mesh.gateway_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.expect("html").contains("/docs/app.js"));
}

fn nested_properties(objects: usize) -> Json {
    (0..objects).fold(json!("x"), |inner, _| json!({ "a": inner }))
}

/// Nesting past the decoders' limit is INVALID_ARGUMENT naming the field,
/// over REST and native gRPC, through the gateway and straight to the
/// service; a message over the size limit is RESOURCE_EXHAUSTED; a NUL in a
/// path id is a 400 naming it.
#[tokio::test]
async fn limits_answer_the_documented_codes_over_rest_and_native_grpc() {
    use metrix_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
    use metrix_proto::metrics::v1::{Event, TrackEventsRequest};
    let mesh = Mesh::start().await;
    let http = http();
    let (status, _, signed_up) = post_json(
        &http,
        format!("{}/v1/auth:signUp", mesh.gateway_url()),
        json!({"email": unique_email(), "password": "correct horse battery", "organizationName": "Deep Co"}),
    )
    .await;
    assert_eq!(status, 200, "{signed_up}");
    let token = signed_up["tokens"]["accessToken"].as_str().expect("token").to_owned();

    for objects in [34, 45, 50, 60] {
        let response = http
            .post(format!("{}/v1/events:batch", mesh.gateway_url()))
            .bearer_auth(&token)
            .json(
                &json!({"events": [{"appId": "web", "eventType": "signup", "properties": nested_properties(objects)}]}),
            )
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400, "{objects} objects deep");
        let body: Json = response.json().await.expect("json");
        assert_eq!(
            body["details"][0]["fieldViolations"][0]["field"], "events[0].properties",
            "{objects}"
        );
    }

    let track = |properties: Option<prost_types::Struct>| {
        let mut request = tonic::Request::new(TrackEventsRequest {
            events: vec![Event {
                app_id: "web".to_owned(),
                event_type: "signup".to_owned(),
                properties,
                ..Default::default()
            }],
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().expect("header-safe"));
        request
    };
    for url in [mesh.gateway_url(), mesh.metrics_url()] {
        let mut client = MetricsServiceClient::connect(url.clone()).await.expect("connects");
        for objects in [34, 45, 50] {
            let properties = metrix_metrics::events::json_to_struct(&nested_properties(objects));
            let status = client.track_events(track(properties)).await.expect_err("too deep");
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{url} {objects}: {status:?}"
            );
            assert_eq!(metrix_core::testing::violated_fields(&status), ["events.properties"]);
        }
        let blob = metrix_metrics::events::json_to_struct(&json!({"blob": "y".repeat(5 * 1024 * 1024)}));
        let status = client.track_events(track(blob)).await.expect_err("too large");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{url}: {status:?}");
    }

    let response = http
        .get(format!("{}/v1/events/abc%00def", mesh.gateway_url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let body: Json = response.json().await.expect("json");
    assert_eq!(body["details"][0]["fieldViolations"][0]["field"], "eventId");
}

/// ExportEvents over REST is the file itself, streamed: CSV or NDJSON with
/// its type and an attachment name, not JSON messages wrapping chunks; a
/// refusal before the first chunk is the usual JSON error.
#[tokio::test]
async fn a_rest_export_is_the_file_itself() {
    let mesh = Mesh::start().await;
    let http = http();
    let (status, _, signed_up) = post_json(
        &http,
        format!("{}/v1/auth:signUp", mesh.gateway_url()),
        json!({"email": unique_email(), "password": "correct horse battery", "organizationName": "Export Co"}),
    )
    .await;
    assert_eq!(status, 200, "{signed_up}");
    let token = signed_up["tokens"]["accessToken"].as_str().expect("token").to_owned();
    let events: Vec<Json> = (0..3)
        .map(|index| json!({"eventId": format!("export-{index}"), "appId": "web", "eventType": "signup", "userId": format!("u-{index}")}))
        .collect();
    let tracked = http
        .post(format!("{}/v1/events:batch", mesh.gateway_url()))
        .bearer_auth(&token)
        .json(&json!({ "events": events }))
        .send()
        .await
        .expect("request");
    assert_eq!(tracked.status(), 200);

    let export = |format: &str| {
        http.get(format!("{}/v1/events:export?format={format}", mesh.gateway_url()))
            .bearer_auth(&token)
            .send()
    };
    let csv = export("EXPORT_FORMAT_CSV").await.expect("request");
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.headers()["content-type"], "text/csv");
    let disposition = csv.headers()["content-disposition"].to_str().expect("ASCII").to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"events-") && disposition.ends_with("Z.csv\""),
        "{disposition}"
    );
    let text = csv.text().await.expect("body");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three rows: {text}");
    assert!(lines[0].starts_with("event_id,"), "{text}");
    assert!(lines[1..].iter().all(|line| line.starts_with("export-")), "{text}");

    let ndjson = export("EXPORT_FORMAT_NDJSON").await.expect("request");
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let text = ndjson.text().await.expect("body");
    let ids: Vec<String> = text
        .lines()
        .map(|line| serde_json::from_str::<Json>(line).expect("one JSON object a line")["eventId"].to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{text}");

    let refused = export("NOT_A_FORMAT").await.expect("request");
    assert_eq!(refused.status(), 400);
    let body: Json = refused.json().await.expect("a JSON error");
    assert_eq!(body["status"], "INVALID_ARGUMENT", "{body}");
}

/// A gzip-encoded REST body, as tracking SDKs send their batches, is read
/// as the JSON it holds; another coding is 415 saying which one is taken;
/// a compression bomb is refused before it is inflated past its bounds.
#[tokio::test]
async fn gzip_request_bodies_are_inflated_within_bounds() {
    use std::io::Write as _;
    let gzip = |data: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("compress");
        encoder.finish().expect("compress")
    };
    let mesh = Mesh::start().await;
    let http = http();
    let sign_up = json!({"email": unique_email(), "password": "correct horse battery", "organizationName": "Gzip Co"});
    let post = |body: Vec<u8>, encoding: &'static str| {
        http.post(format!("{}/v1/auth:signUp", mesh.gateway_url()))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(body)
            .send()
    };
    let accepted = post(gzip(sign_up.to_string().as_bytes()), "gzip")
        .await
        .expect("request");
    assert_eq!(accepted.status(), 200, "{:?}", accepted.text().await);

    let refused = post(sign_up.to_string().into_bytes(), "br").await.expect("request");
    assert_eq!(refused.status(), 415);
    assert_eq!(refused.headers()["accept-encoding"], "gzip");

    // Half a megabyte of spaces around a small object: a thousand to one.
    let mut padded = sign_up.to_string().into_bytes();
    padded.extend(std::iter::repeat_n(b' ', 512 * 1024));
    let bomb = post(gzip(&padded), "gzip").await.expect("request");
    assert_eq!(bomb.status(), 400);
    let body: Json = bomb.json().await.expect("json");
    assert_eq!(body["details"][0]["fieldViolations"][0]["field"], "body", "{body}");

    let corrupt = post(b"not gzip".to_vec(), "gzip").await.expect("request");
    assert_eq!(corrupt.status(), 400);
}
