//! The REST entry point: find the route, transcode, call the upstream with
//! the caller's credentials and the edge's metadata, transcode the answer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use http::uri::PathAndQuery;
use prost::Message as _;
use prost_reflect::{DynamicMessage, ReflectMessage as _};
use tonic::Status;
use tonic::metadata::{MetadataMap, MetadataValue};

use super::routes::{Route, RouteMatch};
use super::{encoding, transcode};
use crate::Edge;
use crate::edge::{Protocol, read_body, too_large};
use crate::errors::{invalid_request, status_json, status_response, with_json_names};
use crate::grpc::RawCodec;

/// Headers passed upstream as gRPC metadata.
const FORWARDED_HEADERS: [&str; 5] = [
    "authorization",
    metrix_core::authn::API_KEY_HEADER,
    metrix_core::server::REQUEST_ID_HEADER,
    metrix_core::server::CLIENT_IP_HEADER,
    metrix_core::server::CLIENT_USER_AGENT_HEADER,
];

/// Serves one REST request.
pub async fn handle(edge: Arc<Edge>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let (route, bindings) = match edge.routes.find(&method, &path) {
        RouteMatch::Found(route, bindings) => (route, bindings),
        RouteMatch::MethodNotAllowed(allowed) => {
            let status = Status::new(tonic::Code::Unimplemented, format!("{method} is not allowed on {path}"));
            let mut response = status_response(&status, &edge.pool);
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            let allow = allowed.iter().map(http::Method::as_str).collect::<Vec<_>>().join(", ");
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(http::header::ALLOW, value);
            }
            return response;
        }
        RouteMatch::NotFound => {
            return status_response(&Status::not_found(format!("no route for {method} {path}")), &edge.pool);
        }
    };
    let (parts, body) = request.into_parts();
    let body = match read_body(body, edge.settings.body_limit).await {
        Ok(body) => body,
        Err(status) if status.code() == tonic::Code::ResourceExhausted => {
            return too_large(Protocol::Rest, edge.settings.body_limit);
        }
        Err(status) => return status_response(&status, &edge.pool),
    };
    let body = match encoding::decode(&parts.headers, body, edge.settings.body_limit) {
        Ok(body) => body,
        Err(error) => return error.response(&edge.pool),
    };
    let message = match transcode::request_message(route, &bindings, query.as_deref(), &body) {
        Ok(message) => message,
        Err(violations) => return invalid_request(violations, &edge.pool),
    };
    let service = route.service_name();
    let Some((upstream, channel)) = edge.upstreams.for_service(&service) else {
        return status_response(
            &Status::unimplemented(format!("no upstream serves {service}")),
            &edge.pool,
        );
    };
    let timeout = requested_timeout(&parts.headers)
        .map_or(edge.settings.timeout, |requested| requested.min(edge.settings.timeout));
    let mut grpc_request = tonic::Request::new(Bytes::from(message.encode_to_vec()));
    copy_metadata(&parts.headers, grpc_request.metadata_mut());
    #[allow(clippy::expect_used, reason = "route loading checked the service and method names")]
    let grpc_path = PathAndQuery::try_from(route.grpc_path()).expect("a service and method name form a valid path");
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(error) = grpc.ready().await {
        tracing::warn!(upstream, error = %metrix_core::error::error_chain(&error), "upstream unreachable");
        return status_response(
            &Status::unavailable(format!("the {upstream} service is unavailable")),
            &edge.pool,
        );
    }
    if route.method.is_server_streaming() {
        let event_stream = parts
            .headers
            .get(http::header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|accept| accept.contains("text/event-stream"));
        return match grpc.server_streaming(grpc_request, grpc_path, RawCodec).await {
            Ok(response) if is_streamed_file(&route.method.output()) => {
                streamed_file(edge.clone(), route.clone(), response.into_inner()).await
            }
            Ok(response) => stream_response(edge.clone(), route.clone(), response.into_inner(), event_stream),
            Err(status) => status_response(&with_json_names(status, &route.method.input()), &edge.pool),
        };
    }
    grpc_request.set_timeout(timeout);
    let started = Instant::now();
    let deadline_exceeded = || {
        status_response(
            &Status::deadline_exceeded("the call took longer than its deadline"),
            &edge.pool,
        )
    };
    match tokio::time::timeout(timeout, grpc.unary(grpc_request, grpc_path, RawCodec)).await {
        Err(_) => deadline_exceeded(),
        // The upstream enforces the same deadline and answers CANCELLED when
        // it fires there first; to the caller it is the deadline either way.
        Ok(Err(status)) if status.code() == tonic::Code::Cancelled && started.elapsed() >= timeout => {
            deadline_exceeded()
        }
        Ok(Err(status)) => status_response(&with_json_names(status, &route.method.input()), &edge.pool),
        Ok(Ok(response)) => match DynamicMessage::decode(route.method.output(), response.into_inner()) {
            Ok(message) => match file_download(&message) {
                Some(file) => file,
                None => (
                    [(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                    transcode::response_bytes(route, &message),
                )
                    .into_response(),
            },
            Err(error) => {
                tracing::error!(error = %error, rpc = route.grpc_path(), "upstream answer does not decode");
                status_response(&Status::internal("internal error"), &edge.pool)
            }
        },
    }
}

/// An answer shaped as a file — exactly the fields `content_type` and
/// `filename` (strings) and `content` (bytes), as DownloadReport's — is
/// served as the file itself: `content` is the body, with its type and an
/// attachment name, instead of JSON. Any RPC whose answer has this shape is
/// a download, with no gateway code of its own.
fn file_download(message: &DynamicMessage) -> Option<Response> {
    use prost_reflect::Value;
    let descriptor = message.descriptor();
    if !is_file_shaped(&descriptor) {
        return None;
    }
    let text_field = |name: &str| {
        let field = descriptor.get_field_by_name(name)?;
        match message.get_field(&field).as_ref() {
            Value::String(text) => Some(text.clone()),
            _ => None,
        }
    };
    let content_type = text_field("content_type")?;
    let filename = text_field("filename")?;
    let content_field = descriptor.get_field_by_name("content")?;
    let Value::Bytes(content) = message.get_field(&content_field).into_owned() else {
        return None;
    };
    let mut response = Response::new(Body::from(content));
    attach_file_headers(response.headers_mut(), &content_type, &filename);
    Some(response)
}

/// Whether answers of `descriptor` are sent as files: exactly the fields
/// `content_type` and `filename` (strings) and `content` (bytes).
pub fn is_file_shaped(descriptor: &prost_reflect::MessageDescriptor) -> bool {
    use prost_reflect::Kind;
    let kind_of = |name: &str| {
        descriptor
            .get_field_by_name(name)
            .filter(|field| !field.is_list() && !field.is_map())
            .map(|field| field.kind())
    };
    descriptor.fields().len() == 3
        && matches!(kind_of("content_type"), Some(Kind::String))
        && matches!(kind_of("filename"), Some(Kind::String))
        && matches!(kind_of("content"), Some(Kind::Bytes))
}

/// Whether a server stream of `descriptor` is a file sent in chunks, as
/// ExportEvents' is: its messages have the strings `content_type` and
/// `filename` and the text `data`, a part of the file.
pub fn is_streamed_file(descriptor: &prost_reflect::MessageDescriptor) -> bool {
    use prost_reflect::Kind;
    let kind_of = |name: &str| {
        descriptor
            .get_field_by_name(name)
            .filter(|field| !field.is_list() && !field.is_map())
            .map(|field| field.kind())
    };
    matches!(kind_of("content_type"), Some(Kind::String))
        && matches!(kind_of("filename"), Some(Kind::String))
        && matches!(kind_of("data"), Some(Kind::String | Kind::Bytes))
}

/// A streamed file as the file itself: the type and name come from the
/// first chunk (a failure before it is an ordinary error answer), then each
/// chunk's `data` is sent as it arrives, never gathered. A failure after
/// the first chunk aborts the body, so the client sees a truncated
/// transfer, not a shorter file that looks whole. The chunks' other fields
/// (such as a count) are not sent.
async fn streamed_file(edge: Arc<Edge>, route: Route, mut stream: tonic::Streaming<Bytes>) -> Response {
    use prost_reflect::Value;
    let output = route.method.output();
    let decode = move |bytes: Bytes| -> Result<(String, String, Bytes), Status> {
        let message = DynamicMessage::decode(output.clone(), bytes).map_err(|error| {
            tracing::error!(error = %error, "upstream stream item does not decode");
            Status::internal("internal error")
        })?;
        let text = |name: &str| match message.get_field_by_name(name).as_deref() {
            Some(Value::String(text)) => text.clone(),
            _ => String::new(),
        };
        let data = match message.get_field_by_name("data").as_deref() {
            Some(Value::String(text)) => Bytes::from(text.clone().into_bytes()),
            Some(Value::Bytes(bytes)) => bytes.clone(),
            _ => Bytes::new(),
        };
        Ok((text("content_type"), text("filename"), data))
    };
    let first = match stream.message().await {
        Ok(Some(bytes)) => decode(bytes),
        Ok(None) => Ok((String::new(), String::new(), Bytes::new())),
        Err(status) => Err(status),
    };
    let (content_type, filename, data) = match first {
        Ok(first) => first,
        Err(status) => return status_response(&with_json_names(status, &route.method.input()), &edge.pool),
    };
    let rest = stream.map(move |item| {
        item.and_then(&decode)
            .map(|(_, _, data)| data)
            .map_err(|status| std::io::Error::other(status.message().to_owned()))
    });
    let body = futures::stream::once(std::future::ready(Ok::<_, std::io::Error>(data))).chain(rest);
    let mut response = Response::new(Body::from_stream(body));
    attach_file_headers(response.headers_mut(), &content_type, &filename);
    response
}

/// `Content-Type` and an attachment `Content-Disposition` for a file answer.
fn attach_file_headers(headers: &mut HeaderMap, content_type: &str, filename: &str) {
    let safe_name: String = filename
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || matches!(character, '.' | '-' | '_') {
                character
            } else {
                '_'
            }
        })
        .collect();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{safe_name}\"")) {
        headers.insert(http::header::CONTENT_DISPOSITION, disposition);
    }
}

/// The client's `grpc-timeout` (`100m`, `5S`, …), if it sent one.
pub fn requested_timeout(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    let (amount, unit) = text.split_at(text.len().checked_sub(1)?);
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

fn copy_metadata(headers: &HeaderMap, metadata: &mut MetadataMap) {
    for name in FORWARDED_HEADERS {
        if let Some(value) = headers.get(name).and_then(|value| value.to_str().ok())
            && let Ok(value) = MetadataValue::try_from(value)
        {
            metadata.insert(name, value);
        }
    }
}

/// A server stream as Server-Sent Events (browsers) or newline-delimited
/// JSON; an error mid-stream ends it with an `error` event or line.
fn stream_response(edge: Arc<Edge>, route: Route, stream: tonic::Streaming<Bytes>, event_stream: bool) -> Response {
    let output = route.method.output();
    let frames = stream.map(move |item| {
        let (event, json) = match item.map(|bytes| DynamicMessage::decode(output.clone(), bytes)) {
            Ok(Ok(message)) => ("message", transcode::response_json(&route, &message)),
            Ok(Err(error)) => {
                tracing::error!(error = %error, "upstream stream item does not decode");
                ("error", status_json(&Status::internal("internal error"), &edge.pool))
            }
            Err(status) => ("error", status_json(&status, &edge.pool)),
        };
        let text = if event_stream {
            format!("event: {event}\ndata: {json}\n\n")
        } else if event == "error" {
            format!("{}\n", serde_json::json!({ "error": json }))
        } else {
            format!("{json}\n")
        };
        Ok::<_, Infallible>(Bytes::from(text))
    });
    let content_type = if event_stream {
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    let mut response = Response::new(Body::from_stream(frames));
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", HeaderValue::from_static("250m"));
        assert_eq!(requested_timeout(&headers), Some(Duration::from_millis(250)));
        headers.insert("grpc-timeout", HeaderValue::from_static("3S"));
        assert_eq!(requested_timeout(&headers), Some(Duration::from_secs(3)));
        headers.insert("grpc-timeout", HeaderValue::from_static("soon"));
        assert_eq!(requested_timeout(&headers), None);
    }
}
