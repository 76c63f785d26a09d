//! The gateway served for real in front of a stand-in upstream, which
//! counts the calls it gets and answers each with one fixed status: what
//! the edge refuses by itself (bodies over the limit whatever their framing,
//! NUL characters, nesting no service decodes) never reaches it, and its
//! statuses become the right REST answers.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use metrix_core::cache::Backends;
use metrix_core::config::Settings;
use metrix_core::server::Shutdown;
use metrix_gateway::{GatewayServer, GatewaySettings};
use metrix_proto::auth::v1::SignInRequest;
use metrix_proto::auth::v1::auth_service_client::AuthServiceClient;
use prost::Message as _;
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::{ErrorDetails, StatusExt as _};

/// The gateway's body limit in these tests.
const BODY_LIMIT: usize = 64 * 1024;

/// A gRPC server that answers every call with `answer`, counting calls
/// (but for the health checks the gateway makes of its upstreams on its own).
struct StandIn {
    url: String,
    calls: Arc<AtomicUsize>,
}

impl StandIn {
    async fn answering(answer: Status) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let router = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            if !uri.path().starts_with("/grpc.health.v1.Health/") {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            std::future::ready(answer.clone().into_http::<axum::body::Body>())
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let address = listener.local_addr().expect("bound");
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            url: format!("http://{address}"),
            calls,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A gateway whose every upstream is `upstream_url`.
async fn gateway(upstream_url: &str) -> SocketAddr {
    let body_limit = BODY_LIMIT.to_string();
    let environment: HashMap<String, String> = [
        ("METRIX_GATEWAY__LISTEN_ADDR", "127.0.0.1:0"),
        ("METRIX_GATEWAY__AUTH_URL", upstream_url),
        ("METRIX_GATEWAY__METRICS_URL", upstream_url),
        ("METRIX_GATEWAY__BENCHMARK_URL", upstream_url),
        ("METRIX_GATEWAY__BODY_LIMIT_BYTES", body_limit.as_str()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    let settings = GatewaySettings::load(&Settings::new(&environment)).expect("valid settings");
    let server = GatewayServer::build(settings, Backends::in_process(), Shutdown::new())
        .await
        .expect("the gateway starts");
    let address = server.local_addr();
    tokio::spawn(server.run_until_stopped());
    address
}

/// An HTTP/1.1 answer: status, headers (names in lowercase) and body.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or(Json::Null)
    }

    fn violated_fields(&self) -> Vec<String> {
        self.json()["details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|detail| detail["fieldViolations"].as_array().cloned().unwrap_or_default())
            .filter_map(|violation| violation["field"].as_str().map(str::to_owned))
            .collect()
    }
}

/// A request body, and how its length is told.
enum Sent {
    Nothing,
    /// With a `content-length`.
    Sized(Vec<u8>),
    /// Chunked: no length declared.
    Chunked(Vec<Vec<u8>>),
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body` over HTTP/1.1; the connection closes after the answer.
async fn http1(gateway: SocketAddr, head: &str, body: Sent) -> Answer {
    let mut stream = TcpStream::connect(gateway).await.expect("connects");
    let mut request = format!("{head}\r\nhost: {gateway}\r\nconnection: close\r\n").into_bytes();
    match body {
        Sent::Nothing => request.extend_from_slice(b"\r\n"),
        Sent::Sized(bytes) => {
            request.extend_from_slice(format!("content-length: {}\r\n\r\n", bytes.len()).as_bytes());
            request.extend_from_slice(&bytes);
        }
        Sent::Chunked(chunks) => {
            request.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            for chunk in chunks {
                request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                request.extend_from_slice(&chunk);
                request.extend_from_slice(b"\r\n");
            }
            request.extend_from_slice(b"0\r\n\r\n");
        }
    }
    // The gateway may answer (and close) before reading everything.
    let _ = stream.write_all(&request).await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received)).await;
    let split = received
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer head in {:?}", String::from_utf8_lossy(&received)));
    let head = String::from_utf8_lossy(&received[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: received[split + 4..].to_vec(),
    }
}

/// `bytes` chunked in pieces of at most 16 KiB, the last one a single
/// byte: a body one byte over the limit crosses it with its last piece, so
/// the gateway has read everything when it answers.
fn chunked(bytes: &[u8]) -> Sent {
    let (most, last) = bytes.split_at(bytes.len() - 1);
    Sent::Chunked(most.chunks(16 * 1024).chain([last]).map(<[u8]>::to_vec).collect())
}

/// One gRPC message with its length prefix.
fn framed(message: &[u8]) -> Vec<u8> {
    let mut body = vec![0];
    body.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    body.extend_from_slice(message);
    body
}

fn unavailable_for(seconds: u64) -> Status {
    Status::with_error_details(
        Code::Unavailable,
        "a dependency is unavailable, retry later",
        ErrorDetails::with_retry_info(Some(Duration::from_secs(seconds))),
    )
}

#[tokio::test]
async fn rest_bodies_over_the_limit_are_413_whatever_their_framing() {
    let upstream = StandIn::answering(unavailable_for(3)).await;
    let gateway = gateway(&upstream.url).await;
    let email = "x".repeat(BODY_LIMIT);
    let body = serde_json::to_vec(&json!({"email": email, "password": "p"})).expect("json");
    let over = &body[..BODY_LIMIT + 1];
    let answer = http1(
        gateway,
        "POST /v1/auth:signIn HTTP/1.1\r\ncontent-type: application/json",
        chunked(over),
    )
    .await;
    assert_eq!(answer.status, 413, "{:?}", answer.json());
    assert_eq!(answer.json()["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(
        answer.json()["message"],
        format!("the request body is larger than {BODY_LIMIT} bytes")
    );
    assert_eq!(upstream.calls(), 0);
}

#[tokio::test]
async fn grpc_messages_over_the_limit_are_resource_exhausted_before_any_upstream_call() {
    let upstream = StandIn::answering(unavailable_for(3)).await;
    let gateway = gateway(&upstream.url).await;
    let expected_message = format!("the request body is larger than {BODY_LIMIT} bytes");

    // Native gRPC over HTTP/2: tonic streams the body, declaring no length.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{gateway}"))
        .expect("a valid url")
        .connect()
        .await
        .expect("connects");
    let huge = SignInRequest {
        email: "x".repeat(BODY_LIMIT),
        ..Default::default()
    };
    let status = AuthServiceClient::new(channel.clone())
        .sign_in(huge.clone())
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.message(), expected_message);
    // The gateway's own services are bounded the same way.
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "x".repeat(BODY_LIMIT),
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.message(), expected_message);

    // grpc-web over HTTP/1.1, chunked.
    let body = framed(&huge.encode_to_vec());
    let answer = http1(
        gateway,
        "POST /metrix.auth.v1.AuthService/SignIn HTTP/1.1\r\ncontent-type: application/grpc-web+proto\r\nx-grpc-web: 1",
        chunked(&body[..BODY_LIMIT + 1]),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers.get("grpc-status").map(String::as_str), Some("8"));
    assert_eq!(upstream.calls(), 0);

    // Under the limit, the call goes through.
    let status = AuthServiceClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{gateway}"))
            .expect("a valid url")
            .connect_lazy(),
    )
    .sign_in(SignInRequest::default())
    .await
    .expect_err("the stand-in refuses");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test]
async fn unavailable_is_503_with_retry_after() {
    let upstream = StandIn::answering(unavailable_for(3)).await;
    let gateway = gateway(&upstream.url).await;
    let answer = http1(gateway, "GET /v1/users/me HTTP/1.1", Sent::Nothing).await;
    assert_eq!(answer.status, 503, "{:?}", answer.json());
    assert_eq!(answer.json()["status"], "UNAVAILABLE");
    assert_eq!(answer.headers.get("retry-after").map(String::as_str), Some("3"));

    // An upstream the gateway cannot reach at all.
    let unreachable = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let address = unreachable.local_addr().expect("bound");
    drop(unreachable);
    let gateway = self::gateway(&format!("http://{address}")).await;
    let answer = http1(gateway, "GET /v1/users/me HTTP/1.1", Sent::Nothing).await;
    assert_eq!(answer.status, 503, "{:?}", answer.json());
    assert_eq!(answer.json()["status"], "UNAVAILABLE");
    assert_eq!(answer.headers.get("retry-after").map(String::as_str), Some("1"));
}

#[tokio::test]
async fn a_nul_in_the_path_or_query_is_400_before_any_upstream_call() {
    let upstream = StandIn::answering(unavailable_for(3)).await;
    let gateway = gateway(&upstream.url).await;
    let answer = http1(gateway, "GET /v1/events/abc%00def HTTP/1.1", Sent::Nothing).await;
    assert_eq!(answer.status, 400, "{:?}", answer.json());
    assert_eq!(answer.violated_fields(), ["eventId"]);
    let answer = http1(gateway, "GET /v1/events?filter.userId=u%00 HTTP/1.1", Sent::Nothing).await;
    assert_eq!(answer.status, 400, "{:?}", answer.json());
    assert_eq!(answer.violated_fields(), ["filter.userId"]);
    assert_eq!(upstream.calls(), 0);
}

#[tokio::test]
async fn properties_nested_past_the_decoder_limit_are_400_naming_the_field() {
    let upstream = StandIn::answering(unavailable_for(3)).await;
    let gateway = gateway(&upstream.url).await;
    for objects in [40, 45, 49, 50, 60] {
        let properties = (0..objects).fold(json!("x"), |inner, _| json!({ "a": inner }));
        let body =
            serde_json::to_vec(&json!({"events": [{"eventType": "signup", "properties": properties}]})).expect("json");
        let answer = http1(
            gateway,
            "POST /v1/events:batch HTTP/1.1\r\ncontent-type: application/json",
            Sent::Sized(body),
        )
        .await;
        assert_eq!(answer.status, 400, "{objects} objects deep: {:?}", answer.json());
        assert_eq!(
            answer.violated_fields(),
            ["events[0].properties"],
            "{objects} objects deep"
        );
    }
    assert_eq!(upstream.calls(), 0);
}
