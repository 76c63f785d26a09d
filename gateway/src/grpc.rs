//! Native gRPC (and grpc-web, translated in front of it) passed through to
//! the upstream that serves the service, streaming included; and the raw
//! codec the REST side uses to call upstreams with dynamic messages.

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::{Buf, BufMut, Bytes};
use http::HeaderValue;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tower::ServiceExt as _;

use crate::Edge;

/// Forwards a gRPC call to its upstream unchanged, adding the edge's
/// metadata. The request is read whole first, within the body limit, so a
/// message too large is RESOURCE_EXHAUSTED before any upstream is called:
/// every method of the contracts takes exactly one request message (none
/// streams from the client). The answer (headers, messages and trailers)
/// streams through.
pub async fn proxy(edge: std::sync::Arc<Edge>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let service = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let Some((upstream, channel)) = edge.upstreams.for_service(&service) else {
        return Status::unimplemented(format!("unknown service {service}"))
            .into_http::<Body>()
            .into_response();
    };
    let (mut parts, body) = request.into_parts();
    let body = match crate::edge::read_body(body, edge.settings.body_limit).await {
        Ok(body) => body,
        Err(status) => return status.into_http::<Body>().into_response(),
    };
    // Unary calls get the edge's timeout unless the client asked for less;
    // streams (live dashboards) run as long as the client keeps them.
    let unary = edge.unary_methods.contains(&path);
    if unary && !parts.headers.contains_key("grpc-timeout") {
        let value = format!("{}m", edge.settings.timeout.as_millis());
        #[allow(clippy::expect_used, reason = "digits and a unit letter are a valid header value")]
        let value = HeaderValue::from_str(&value).expect("a number and a unit is a valid header");
        parts.headers.insert("grpc-timeout", value);
    }
    let upstream_request = http::Request::from_parts(parts, tonic::body::Body::new(Body::from(body)));
    let call = channel.oneshot(upstream_request);
    let answered = if unary {
        match tokio::time::timeout(edge.settings.timeout, call).await {
            Ok(answered) => answered,
            Err(_) => {
                return Status::deadline_exceeded("the call took longer than its deadline")
                    .into_http::<Body>()
                    .into_response();
            }
        }
    } else {
        call.await
    };
    match answered {
        Ok(response) => response.map(Body::new),
        Err(error) => {
            tracing::warn!(upstream, error = %metrix_core::error::error_chain(&error), "upstream unreachable");
            Status::unavailable(format!("the {upstream} service is unavailable"))
                .into_http::<Body>()
                .into_response()
        }
    }
}

/// Passes encoded messages through untouched: the REST side encodes and
/// decodes with dynamic messages itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// The encoder half of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

/// The decoder half of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, destination: &mut EncodeBuf<'_>) -> Result<(), Status> {
        destination.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, source: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(source.copy_to_bytes(source.remaining())))
    }
}
