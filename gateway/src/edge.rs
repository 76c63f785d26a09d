//! What the edge adds to every call, whatever its protocol: the caller's
//! address and user agent as metadata (believing `x-forwarded-for` only from
//! trusted proxies), a bound on the request body, security headers, rate
//! limits, and per-route metrics and log lines.
//!
//! Over 400 lines with its tests: these are the layers of the request path
//! in the order `lib.rs` stacks them, over one `Edge` state, and read best
//! top to bottom as the path a request takes.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hmac::Mac as _;
use http_body::Frame;
use ipnet::IpNet;
use metrix_core::cache::{Quota, RateDecision};
use metrix_core::server::{CLIENT_IP_HEADER, CLIENT_USER_AGENT_HEADER, RequestId};
use secrecy::{ExposeSecret, SecretString};
use tonic::Status;

use crate::Edge;
use crate::errors::status_response;
use crate::rest::RouteMatch;

/// How a call reached the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Native gRPC.
    Grpc,
    /// grpc-web (binary or text).
    GrpcWeb,
    /// REST JSON (and every plain HTTP path).
    Rest,
}

impl Protocol {
    /// The protocol of a request, from its content type.
    pub fn of(headers: &HeaderMap) -> Self {
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if content_type.starts_with("application/grpc-web") {
            Protocol::GrpcWeb
        } else if content_type.starts_with("application/grpc") {
            Protocol::Grpc
        } else {
            Protocol::Rest
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::GrpcWeb => "grpc-web",
            Protocol::Rest => "rest",
        }
    }
}

/// The caller's address as the edge established it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

/// The caller's address: the peer's, or, when the peer is a trusted proxy,
/// the nearest address in `x-forwarded-for` that is not itself trusted.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|network| network.contains(ip));
    let peer = peer?;
    if !trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|part| part.trim().parse().ok())
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|ip| !trusted(ip))
        .or(forwarded.first())
        .copied()
        .or(Some(peer))
}

/// Tags the protocol, replaces any client-sent `x-metrix-*` metadata with
/// what the edge knows, refuses bodies declared too large, and adds
/// security headers to the answer.
pub async fn prepare(State(edge): State<Arc<Edge>>, mut request: Request, next: Next) -> Response {
    let protocol = Protocol::of(request.headers());
    request.extensions_mut().insert(protocol);
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let ip = client_ip(peer, request.headers(), &edge.settings.trusted_proxies);
    request.extensions_mut().insert(ClientIp(ip));
    let user_agent = request.headers().get(http::header::USER_AGENT).cloned();
    let headers = request.headers_mut();
    headers.remove(CLIENT_IP_HEADER);
    headers.remove(CLIENT_USER_AGENT_HEADER);
    if let Some(value) = ip.and_then(|ip| HeaderValue::from_str(&ip.to_string()).ok()) {
        headers.insert(CLIENT_IP_HEADER, value);
    }
    if let Some(user_agent) = user_agent {
        headers.insert(CLIENT_USER_AGENT_HEADER, user_agent);
    }
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    let mut response = if declared.is_some_and(|length| length > edge.settings.body_limit) {
        too_large(protocol, edge.settings.body_limit)
    } else {
        next.run(request).await
    };
    add_security_headers(response.headers_mut());
    response
}

/// Bounds every request body to the limit as it arrives, whatever its
/// framing (a chunked body, an HTTP/2 stream with no length): past it the
/// body fails with [`body_too_large`], which REST answers as 413 and tonic
/// and the proxy as RESOURCE_EXHAUSTED. Runs inside the grpc-web
/// translation, so a grpc-web body is counted as the gRPC it becomes.
pub async fn bound_body(State(edge): State<Arc<Edge>>, request: Request, next: Next) -> Response {
    let limit = edge.settings.body_limit;
    next.run(request.map(|body| Body::new(LimitedBody::new(body, limit))))
        .await
}

/// RESOURCE_EXHAUSTED for a request body over `limit` bytes.
pub fn body_too_large(limit: usize) -> Status {
    Status::resource_exhausted(format!("the request body is larger than {limit} bytes"))
}

/// The answer to a request body over `limit` bytes: 413 for REST (the
/// caller must send less, not retry later), RESOURCE_EXHAUSTED for gRPC.
pub fn too_large(protocol: Protocol, limit: usize) -> Response {
    let status = body_too_large(limit);
    match protocol {
        Protocol::Rest => {
            let body = serde_json::json!({
                "code": status.code() as i32,
                "status": crate::errors::code_name(status.code()),
                "message": status.message(),
                "details": [],
            });
            (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response()
        }
        Protocol::Grpc | Protocol::GrpcWeb => grpc_error(protocol, status),
    }
}

/// Reads a whole request body, failing with [`body_too_large`] past `limit`
/// bytes (counted as they arrive, so chunked bodies are bounded too), or
/// with CANCELLED when the client stops sending it.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, Status> {
    axum::body::to_bytes(Body::new(LimitedBody::new(body, limit)), usize::MAX)
        .await
        .map_err(|error| {
            Status::try_from_error(error.into())
                .unwrap_or_else(|_| Status::cancelled("the request body did not arrive whole"))
        })
}

/// A body that fails with [`body_too_large`] once more than `limit` bytes
/// have arrived; tonic, and [`read_body`], answer that status as it is.
struct LimitedBody {
    inner: Body,
    limit: usize,
    received: usize,
}

impl LimitedBody {
    fn new(inner: Body, limit: usize) -> Self {
        Self {
            inner,
            limit,
            received: 0,
        }
    }
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            self.received = self.received.saturating_add(data.len());
            if self.received > self.limit {
                return Poll::Ready(Some(Err(Box::new(body_too_large(self.limit)))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn add_security_headers(headers: &mut HeaderMap) {
    let pairs = [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("strict-transport-security", "max-age=63072000; includeSubDomains"),
        (
            "content-security-policy",
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
        ("cross-origin-opener-policy", "same-origin"),
    ];
    for (name, value) in pairs {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
}

/// A gRPC status as a trailers-only answer in the request's own content type
/// (grpc-web clients read the status from the headers too).
fn grpc_error(protocol: Protocol, status: Status) -> Response {
    let mut response = status.into_http::<axum::body::Body>().into_response();
    if protocol == Protocol::GrpcWeb {
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc-web+proto"),
        );
    }
    response
}

/// The methods whose abuse is credential stuffing: limited harder per address.
const SIGN_IN_METHODS: [&str; 7] = [
    "metrix.auth.v1.AuthService.SignUp",
    "metrix.auth.v1.AuthService.SignIn",
    "metrix.auth.v1.AuthService.GetAuthUrl",
    "metrix.auth.v1.AuthService.HandleOAuthCallback",
    "metrix.auth.v1.AuthService.SignInWithIdToken",
    "metrix.auth.v1.AuthService.RefreshToken",
    "metrix.auth.v1.AuthService.IssueServiceToken",
];

/// The RPC a request calls, over any protocol.
fn method_of(edge: &Edge, request: &Request) -> Option<String> {
    match request
        .extensions()
        .get::<Protocol>()
        .copied()
        .unwrap_or(Protocol::Rest)
    {
        Protocol::Grpc | Protocol::GrpcWeb => {
            let path = request.uri().path().trim_start_matches('/');
            Some(path.replacen('/', ".", 1))
        }
        Protocol::Rest => match edge.routes.find(request.method(), request.uri().path()) {
            RouteMatch::Found(route, _) => Some(route.method.full_name().to_owned()),
            _ => None,
        },
    }
}

/// Rate limits per client address, harder on the sign-in class, and per
/// credential (API key or bearer token) when one is presented.
pub async fn rate_limit(State(edge): State<Arc<Edge>>, request: Request, next: Next) -> Response {
    let protocol = request
        .extensions()
        .get::<Protocol>()
        .copied()
        .unwrap_or(Protocol::Rest);
    let ip = request.extensions().get::<ClientIp>().and_then(|client| client.0);
    let limits = edge.settings.rate_limits;
    let mut checks: Vec<(String, Quota)> = Vec::new();
    if let Some(ip) = ip {
        let ip = metrix_core::client::rate_limit_unit(ip);
        checks.push((format!("gateway:ip:{ip}"), Quota::per_minute(limits.per_ip_per_minute)));
        let method = method_of(&edge, &request);
        if method.is_some_and(|method| SIGN_IN_METHODS.contains(&method.as_str())) {
            checks.push((
                format!("gateway:sign-in:ip:{ip}"),
                Quota::per_minute(limits.auth_per_ip_per_minute),
            ));
        }
    }
    let credential = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .or_else(|| request.headers().get(metrix_core::authn::API_KEY_HEADER))
        .map(|value| credential_key(&edge.settings.rate_limit_key, value.as_bytes()));
    if let Some(credential) = credential {
        checks.push((
            format!("gateway:credential:{credential}"),
            Quota::per_minute(limits.per_credential_per_minute),
        ));
    }
    for (key, quota) in checks {
        match edge.rate_limiter.check(&key, quota).await {
            Ok(RateDecision::Allowed) => {}
            Ok(RateDecision::Limited { retry_after }) => {
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let status = metrix_core::error::resource_exhausted("rate limit exceeded, retry later", retry_after);
                let mut response = match protocol {
                    Protocol::Rest => status_response(&status, &edge.pool),
                    Protocol::Grpc | Protocol::GrpcWeb => grpc_error(protocol, status),
                };
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
                return response;
            }
            // A rate limiter outage must not take the platform down with it.
            Err(error) => {
                tracing::warn!(error = %metrix_core::error::error_chain(&error), "rate limiter unavailable, allowing")
            }
        }
    }
    next.run(request).await
}

/// The name of a credential's rate-limit bucket: HMAC-SHA256 of the
/// credential under the shared rate-limit key (its first 128 bits, in hex).
/// Every gateway configured with the same key names a credential alike, so
/// instances sharing Redis count it together, across restarts too; without
/// the key the name says nothing of the credential. A collision would only
/// merge two callers' budgets.
fn credential_key(key: &SecretString, credential: &[u8]) -> String {
    let mut mac = metrix_core::mac::hmac_sha256(key.expose_secret().as_bytes());
    mac.update(credential);
    let digest = mac.finalize().into_bytes();
    digest[..16].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Counts and logs each call by route, protocol and outcome. Runs inside the
/// grpc-web translation, so gRPC outcomes come from real trailers.
pub async fn observe(State(edge): State<Arc<Edge>>, request: Request, next: Next) -> Response {
    let protocol = request
        .extensions()
        .get::<Protocol>()
        .copied()
        .unwrap_or(Protocol::Rest);
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let path = request.uri().path().to_owned();
    let route = match protocol {
        Protocol::Grpc | Protocol::GrpcWeb => {
            if edge.known_methods.contains(&path) {
                path.clone()
            } else {
                "unknown".to_owned()
            }
        }
        Protocol::Rest => match edge.routes.find(request.method(), &path) {
            RouteMatch::Found(route, _) => format!("{} {}", route.http_method, route.template.as_str()),
            _ if LOCAL_PATHS.contains(&path.as_str()) => path.clone(),
            _ => "unknown".to_owned(),
        },
    };
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let record = move |status: String| {
        let elapsed = started.elapsed();
        let protocol = protocol.label();
        metrics::counter!("metrix_gateway_requests_total", "route" => route.clone(), "protocol" => protocol, "status" => status.clone()).increment(1);
        metrics::histogram!("metrix_gateway_request_duration_seconds", "route" => route.clone(), "protocol" => protocol).record(elapsed.as_secs_f64());
        tracing::info!(request_id = %request_id, protocol, method = %method, path = %path, route = %route, status = %status, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "request finished");
    };
    match protocol {
        Protocol::Grpc | Protocol::GrpcWeb => metrix_core::server::on_grpc_outcome(response, record),
        Protocol::Rest => {
            record(response.status().as_u16().to_string());
            response
        }
    }
}

/// The gateway's own plain paths.
pub const LOCAL_PATHS: [&str; 6] = [
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/docs",
    "/docs/app.js",
    "/docs/style.css",
];

/// Refuses a CORS preflight from an origin that is not configured, with a
/// 403 that says so (browsers would fail it anyway, but without a reason).
pub async fn refuse_foreign_preflight(State(edge): State<Arc<Edge>>, request: Request, next: Next) -> Response {
    let preflight = request.method() == http::Method::OPTIONS
        && request
            .headers()
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight
        && let Some(origin) = request
            .headers()
            .get(http::header::ORIGIN)
            .and_then(|value| value.to_str().ok())
    {
        let origins = &edge.settings.cors_origins;
        if !origins.iter().any(|allowed| allowed == "*" || allowed == origin) {
            let body = serde_json::json!({
                "code": tonic::Code::PermissionDenied as i32,
                "status": "PERMISSION_DENIED",
                "message": format!("origin {origin} is not allowed"),
                "details": [],
            });
            return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", forwarded.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        let spoofed = headers("203.0.113.9, 10.0.0.7");
        assert_eq!(
            client_ip(Some(stranger), &spoofed, &trusted),
            Some(stranger),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            client_ip(Some(proxy), &spoofed, &trusted),
            Some("203.0.113.9".parse().unwrap()),
            "the nearest untrusted hop"
        );
        let chain = headers("192.0.2.1, 203.0.113.9");
        assert_eq!(
            client_ip(Some(proxy), &chain, &trusted),
            Some("203.0.113.9".parse().unwrap()),
            "a client cannot prepend a fake hop"
        );
        assert_eq!(client_ip(Some(proxy), &HeaderMap::new(), &trusted), Some(proxy));
    }

    #[test]
    fn credential_buckets_are_hmac_sha256_under_the_shared_key() {
        // RFC 4231, test case 2: the same name in every process that holds the key.
        let key = SecretString::from("Jefe");
        assert_eq!(
            credential_key(&key, b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c7"
        );
        let other = SecretString::from("another gateway fleet's key");
        assert_ne!(
            credential_key(&other, b"what do ya want for nothing?"),
            credential_key(&key, b"what do ya want for nothing?")
        );
    }

    #[test]
    fn protocols_follow_the_content_type() {
        let mut headers = HeaderMap::new();
        assert_eq!(Protocol::of(&headers), Protocol::Rest);
        headers.insert(http::header::CONTENT_TYPE, "application/grpc-web-text".parse().unwrap());
        assert_eq!(Protocol::of(&headers), Protocol::GrpcWeb);
        headers.insert(http::header::CONTENT_TYPE, "application/grpc+proto".parse().unwrap());
        assert_eq!(Protocol::of(&headers), Protocol::Grpc);
    }
}
