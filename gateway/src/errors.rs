//! gRPC statuses as REST answers: the HTTP status from the shared table and a
//! JSON body `{code, status, message, details}` whose details (such as
//! `google.rpc.BadRequest` field violations) are decoded generically from the
//! descriptor set.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use metrix_core::error::{ErrorKind, FieldViolation};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use serde_json::{Map, Value as Json};
use tonic::{Code, Status};

/// `google.rpc.Status`, as carried in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// The canonical name of a code, such as `INVALID_ARGUMENT`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The JSON body of a status, details decoded with `pool`.
pub fn status_json(status: &Status, pool: &DescriptorPool) -> Json {
    let mut details = Vec::new();
    if let Ok(rpc_status) = RpcStatus::decode(status.details()) {
        for any in rpc_status.details {
            let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
            let decoded = pool
                .get_message_by_name(type_name)
                .and_then(|descriptor| DynamicMessage::decode(descriptor, any.value.as_slice()).ok())
                .map(|message| crate::rest::transcode::message_json(&message));
            let mut object = match decoded {
                Some(Json::Object(object)) => object,
                _ => Map::new(),
            };
            object.insert("@type".to_owned(), Json::String(any.type_url.clone()));
            details.push(Json::Object(object));
        }
    }
    serde_json::json!({
        "code": status.code() as i32,
        "status": code_name(status.code()),
        "message": status.message(),
        "details": details,
    })
}

/// The REST answer of a status, its HTTP status from the shared table.
/// RESOURCE_EXHAUSTED and UNAVAILABLE (a service down, or unreachable from
/// the gateway: 503 either way) say when to retry in `Retry-After`: the
/// status's `RetryInfo` when it has one, else one second.
pub fn status_response(status: &Status, pool: &DescriptorPool) -> Response {
    let http_status = StatusCode::from_u16(ErrorKind::from_grpc_code(status.code()).http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (http_status, axum::Json(status_json(status, pool))).into_response();
    if matches!(status.code(), Code::ResourceExhausted | Code::Unavailable) {
        let retry_after = retry_after_seconds(status).unwrap_or(1);
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after));
    }
    response
}

fn retry_after_seconds(status: &Status) -> Option<u64> {
    use tonic_types::StatusExt as _;
    let delay = status.get_details_retry_info()?.retry_delay?;
    Some(delay.as_secs() + u64::from(delay.subsec_nanos() > 0))
}

/// An upstream's status as a REST client reads it: the fields its
/// violations name are spelt with the JSON names of `input` (the request
/// message), as the client sent them — `filter.time_range` becomes
/// `filter.timeRange`, `kpi_values[3].period` `kpiValues[3].period`. gRPC
/// clients get the proto names; a part that names no field (`body`, a map
/// key) is kept as it is.
pub fn with_json_names(status: Status, input: &MessageDescriptor) -> Status {
    use tonic_types::StatusExt as _;
    if status.code() != Code::InvalidArgument {
        return status;
    }
    let mut details = status.get_error_details();
    let Some(mut violations) = details
        .bad_request()
        .map(|bad_request| bad_request.field_violations.clone())
    else {
        return status;
    };
    let mut message = status.message().to_owned();
    let mut renamed = false;
    for violation in &mut violations {
        let json = json_path(input, &violation.field);
        if json != violation.field {
            message = message.replacen(&violation.field, &json, 1);
            violation.field = json;
            renamed = true;
        }
    }
    if !renamed {
        return status;
    }
    details.set_bad_request(violations);
    Status::with_error_details(status.code(), message, details)
}

/// `path` (proto names, dots, `[index]` or `[key]`) with each field's JSON name.
fn json_path(input: &MessageDescriptor, path: &str) -> String {
    let mut message = Some(input.clone());
    let mut parts = Vec::new();
    for part in path.split('.') {
        let (name, subscript) = part.split_once('[').map_or((part, ""), |(name, rest)| (name, rest));
        let field = message.as_ref().and_then(|message| message.get_field_by_name(name));
        let Some(field) = field else {
            message = None;
            parts.push(part.to_owned());
            continue;
        };
        parts.push(if subscript.is_empty() {
            field.json_name().to_owned()
        } else {
            format!("{}[{subscript}", field.json_name())
        });
        message = match field.kind() {
            prost_reflect::Kind::Message(nested) if field.is_map() => match nested.map_entry_value_field().kind() {
                prost_reflect::Kind::Message(value) => Some(value),
                _ => None,
            },
            prost_reflect::Kind::Message(nested) => Some(nested),
            _ => None,
        };
    }
    parts.join(".")
}

/// A 400 naming the bad fields, before any upstream is called.
pub fn invalid_request(violations: Vec<FieldViolation>, pool: &DescriptorPool) -> Response {
    status_response(&metrix_core::error::invalid_argument(violations), pool)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic_types::{ErrorDetails, StatusExt as _};

    use super::*;

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(metrix_proto::FILE_DESCRIPTOR_SET).expect("descriptors")
    }

    #[test]
    fn rest_answers_name_fields_by_their_json_names() {
        let pool = pool();
        let input = |name: &str| pool.get_message_by_name(name).expect("a request message");
        let events = input("metrix.metrics.v1.ListEventsRequest");
        assert_eq!(json_path(&events, "filter.time_range"), "filter.timeRange");
        assert_eq!(json_path(&events, "page_token"), "pageToken");
        assert_eq!(json_path(&events, "body"), "body");
        let record = input("metrix.metrics.v1.RecordKpisRequest");
        assert_eq!(json_path(&record, "kpi_values[3].period"), "kpiValues[3].period");
        let calculate = input("metrix.metrics.v1.CalculateKpiRequest");
        assert_eq!(json_path(&calculate, "inputs[gross_margin]"), "inputs[gross_margin]");

        let status = metrix_core::error::invalid_argument(vec![FieldViolation::new(
            "filter.time_range",
            "must start before it ends",
        )]);
        let renamed = with_json_names(status, &events);
        assert_eq!(renamed.code(), Code::InvalidArgument);
        assert!(renamed.message().contains("filter.timeRange"), "{}", renamed.message());
        let details = renamed.get_error_details();
        let fields: Vec<&str> = details
            .bad_request()
            .expect("a BadRequest")
            .field_violations
            .iter()
            .map(|violation| violation.field.as_str())
            .collect();
        assert_eq!(fields, ["filter.timeRange"]);
    }

    fn retry_after(response: &Response) -> Option<&str> {
        response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
    }

    #[test]
    fn unavailable_is_503_with_a_retry_after() {
        let response = status_response(&Status::unavailable("the auth service is unavailable"), &pool());
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after(&response), Some("1"));
        let advised = Status::with_error_details(
            Code::Unavailable,
            "a dependency is unavailable, retry later",
            ErrorDetails::with_retry_info(Some(Duration::from_millis(2500))),
        );
        let response = status_response(&advised, &pool());
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after(&response), Some("3"), "RetryInfo, rounded up");
    }

    #[test]
    fn statuses_follow_the_shared_table() {
        for kind in ErrorKind::ALL {
            let response = status_response(&Status::new(kind.grpc_code(), "x"), &pool());
            assert_eq!(response.status().as_u16(), kind.http_status(), "{kind:?}");
            let retries = matches!(kind, ErrorKind::ResourceExhausted | ErrorKind::Unavailable);
            assert_eq!(retry_after(&response).is_some(), retries, "{kind:?}");
        }
    }
}
