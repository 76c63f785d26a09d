//! Two layers. [`assign_request_id`], the outermost, gives every call a
//! request id (accepted from `x-request-id` or created) and returns it.
//! [`observe`] runs inside the grpc-web translation, so it always sees native
//! gRPC: it opens a span carrying the request id and, when the response body
//! ends, records one metric and one log line with the gRPC code from the
//! trailers. Only methods the service serves get their own `rpc` label;
//! anything else counts as `unknown`, so no caller can grow the metrics.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderValue;
use http_body::Frame;
use tracing::Instrument;

/// The header (and gRPC metadata key) of the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id, also stored in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// What the layer needs to label its metrics.
#[derive(Clone)]
pub struct Observed {
    pub service: &'static str,
    /// Every served method's path, `/package.Service/Method`.
    pub known_methods: Arc<HashSet<String>>,
}

/// The methods every server offers: health and reflection.
pub const STANDARD_METHODS: [&str; 4] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The paths of every method of `services` in the descriptor set, plus
/// health and reflection.
pub fn known_methods(services: &[&str]) -> HashSet<String> {
    use prost::Message as _;
    let mut known: HashSet<String> = STANDARD_METHODS.into_iter().map(str::to_owned).collect();
    let Ok(descriptors) = prost_types::FileDescriptorSet::decode(metrix_proto::FILE_DESCRIPTOR_SET) else {
        return known;
    };
    for file in descriptors.file {
        let package = file.package.unwrap_or_default();
        for service in file.service {
            let full_name = format!("{package}.{}", service.name.unwrap_or_default());
            if services.contains(&full_name.as_str()) {
                known.extend(
                    service
                        .method
                        .into_iter()
                        .map(|method| format!("/{full_name}/{}", method.name.unwrap_or_default())),
                );
            }
        }
    }
    known
}

/// Ids longer than this, or with unusual characters, are replaced.
const MAX_REQUEST_ID_LENGTH: usize = 128;

fn accepted_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let acceptable = !text.is_empty()
        && text.len() <= MAX_REQUEST_ID_LENGTH
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'));
    acceptable.then(|| text.to_owned())
}

/// Gives the call a request id and returns it with the response.
pub async fn assign_request_id(mut request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(accepted_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    #[allow(
        clippy::expect_used,
        reason = "an accepted id is checked header-safe ASCII, a generated one is a UUID"
    )]
    let header = HeaderValue::from_str(&request_id).expect("request ids are checked or generated as header-safe ascii");
    request.headers_mut().insert(REQUEST_ID_HEADER, header.clone());
    request.extensions_mut().insert(RequestId(request_id));
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, header);
    response
}

/// Opens the call's span and records its outcome when the body ends.
pub async fn observe(State(observed): State<Observed>, request: Request, next: Next) -> Response {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let path = request.uri().path().to_owned();
    let rpc = if observed.known_methods.contains(&path) {
        path.clone()
    } else {
        "unknown".to_owned()
    };
    let span = tracing::info_span!("request", service = observed.service, request_id = %request_id, rpc = %path);
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let service = observed.service;
    on_grpc_outcome(response, move |code| {
        let elapsed = started.elapsed();
        metrics::counter!("metrix_rpc_requests_total", "service" => service, "rpc" => rpc.clone(), "code" => code.clone()).increment(1);
        metrics::histogram!("metrix_rpc_duration_seconds", "service" => service, "rpc" => rpc)
            .record(elapsed.as_secs_f64());
        let _entered = span.enter();
        tracing::info!(code = %code, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "request finished");
    })
}

/// Calls `finish` once with the gRPC code of a response (canonical name,
/// such as `OK` or `INVALID_ARGUMENT`) when its body ends: from the headers
/// of a trailers-only answer, else from the trailers; `CANCELLED` when the
/// body is dropped unfinished, `UNKNOWN` when it ends without a status.
pub fn on_grpc_outcome(response: Response, finish: impl FnOnce(String) + Send + 'static) -> Response {
    let header_code = response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let record = Record {
        header_code,
        finish: Some(Box::new(finish)),
    };
    response.map(|body| Body::new(ObservedBody { inner: body, record }))
}

type Finish = Box<dyn FnOnce(String) + Send>;

struct Record {
    /// The code when it came in the headers (a trailers-only answer).
    header_code: Option<String>,
    finish: Option<Finish>,
}

impl Record {
    fn finish(&mut self, trailer_code: Option<String>, body_completed: bool) {
        let Some(finish) = self.finish.take() else { return };
        let code = match (self.header_code.as_deref(), trailer_code.as_deref()) {
            (Some(code), _) | (None, Some(code)) => grpc_code_name(code),
            (None, None) if body_completed => "UNKNOWN".to_owned(),
            (None, None) => "CANCELLED".to_owned(),
        };
        finish(code);
    }
}

fn grpc_code_name(code: &str) -> String {
    let number: i32 = code.trim().parse().unwrap_or(2);
    let name = format!("{:?}", tonic::Code::from_i32(number));
    // `Code`'s Debug names are CamelCase; metrics and logs use the canonical
    // SCREAMING_SNAKE_CASE names.
    let mut canonical = String::with_capacity(name.len() + 4);
    for (index, character) in name.chars().enumerate() {
        if character.is_ascii_uppercase() && index > 0 {
            canonical.push('_');
        }
        canonical.push(character.to_ascii_uppercase());
    }
    canonical
}

pin_project_lite::pin_project! {
    struct ObservedBody {
        #[pin]
        inner: Body,
        record: Record,
    }

    impl PinnedDrop for ObservedBody {
        fn drop(this: Pin<&mut Self>) {
            let project = this.project();
            project.record.finish(None, false);
        }
    }
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let project = self.project();
        let polled = project.inner.poll_frame(context);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers
                        .get("grpc-status")
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned);
                    project.record.finish(code, true);
                }
            }
            Poll::Ready(None) => project.record.finish(None, true),
            Poll::Ready(Some(Err(_))) => project.record.finish(Some("13".to_owned()), true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_are_known() {
        let known = known_methods(&["metrix.auth.v1.AuthService"]);
        assert!(known.contains("/metrix.auth.v1.AuthService/SignIn"));
        assert!(known.contains("/grpc.health.v1.Health/Check"));
        assert!(!known.contains("/metrix.metrics.v1.MetricsService/TrackEvent"));
    }

    #[test]
    fn grpc_codes_get_their_canonical_names() {
        assert_eq!(grpc_code_name("0"), "OK");
        assert_eq!(grpc_code_name("3"), "INVALID_ARGUMENT");
        assert_eq!(grpc_code_name("16"), "UNAUTHENTICATED");
    }

    #[test]
    fn only_tidy_request_ids_are_accepted() {
        assert_eq!(
            accepted_request_id(&HeaderValue::from_static("abc-123")),
            Some("abc-123".to_owned())
        );
        assert_eq!(accepted_request_id(&HeaderValue::from_static("a b")), None);
        assert_eq!(
            accepted_request_id(&HeaderValue::from_str(&"x".repeat(200)).unwrap()),
            None
        );
    }
}
