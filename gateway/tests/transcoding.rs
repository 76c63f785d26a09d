//! Snapshot tests of REST transcoding for representative RPCs: path, query
//! and body binding; 64-bit integers, enums, timestamps, repeated fields,
//! maps, `Struct`, `FieldMask`; errors with field violations; and the
//! OpenAPI document. Snapshots live in `tests/snapshots/`; run with
//! `UPDATE_SNAPSHOTS=1` to accept a deliberate change, then review the diff.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::PathBuf;

use http::Method;
use metrix_gateway::errors::status_json;
use metrix_gateway::rest::transcode::{message_json, request_message, response_json};
use metrix_gateway::rest::{RouteMatch, RouteTable};
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::{Value as Json, json};

fn pool() -> DescriptorPool {
    DescriptorPool::decode(metrix_proto::FILE_DESCRIPTOR_SET).expect("the descriptor set decodes")
}

/// Compares `actual` with the stored snapshot `name`, or stores it.
fn assert_snapshot(name: &str, actual: &Json) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.json"));
    let rendered = format!("{}\n", serde_json::to_string_pretty(actual).expect("json renders"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &rendered).expect("snapshot written");
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}: run with UPDATE_SNAPSHOTS=1 and review it",
            path.display()
        )
    });
    assert_eq!(
        stored, rendered,
        "snapshot {name} changed: run with UPDATE_SNAPSHOTS=1 to accept, then review the diff"
    );
}

/// The request message a REST call becomes (or its field violations).
fn transcode(method: Method, path_and_query: &str, body: Json) -> Json {
    let pool = pool();
    let routes = RouteTable::from_pool(&pool, "metrix.").expect("routes");
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let RouteMatch::Found(route, bindings) = routes.find(&method, path) else {
        panic!("no route for {method} {path}")
    };
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).expect("json")
    };
    match request_message(route, &bindings, query, &body) {
        Ok(message) => json!({"rpc": route.grpc_path(), "message": message_json(&message)}),
        Err(violations) => json!({
            "rpc": route.grpc_path(),
            "violations": violations.iter().map(|violation| json!({"field": violation.field, "description": violation.description})).collect::<Vec<_>>(),
        }),
    }
}

/// The JSON a response message (given in JSON) is answered with.
fn respond(method: Method, path: &str, response: Json) -> Json {
    let pool = pool();
    let routes = RouteTable::from_pool(&pool, "metrix.").expect("routes");
    let RouteMatch::Found(route, _) = routes.find(&method, path) else {
        panic!("no route for {method} {path}")
    };
    let message = DynamicMessage::deserialize(route.method.output(), response).expect("a valid response");
    response_json(route, &message)
}

#[test]
fn a_body_field_and_a_nested_path_variable_bind_together() {
    // PATCH /v1/companies/{company.company_id} with body "company" and the
    // update mask in the query. The body may repeat the path's id, but only
    // with the same value.
    let actual = transcode(
        Method::PATCH,
        "/v1/companies/c-42?updateMask=name,foundingYear",
        json!({"name": "Acme Analytics", "foundingYear": 2019, "businessModel": "BUSINESS_MODEL_B2B_SAAS", "companyId": "c-42"}),
    );
    assert_snapshot("update_company_request", &actual);
    let conflicting = transcode(
        Method::PATCH,
        "/v1/companies/c-42",
        json!({"name": "Acme Analytics", "companyId": "c-43"}),
    );
    assert_snapshot("update_company_conflicting_id", &conflicting);
}

#[test]
fn structs_timestamps_and_enums_in_a_body() {
    let actual = transcode(
        Method::POST,
        "/v1/events",
        json!({
            "event": {
                "eventId": "evt-1",
                "appId": "web",
                "userId": "u-7",
                "eventType": "signup",
                "eventName": "Signed up",
                "properties": {"plan": "pro", "seats": 5, "trial": true, "referrer": null, "tags": ["a", "b"], "utm": {"source": "ads"}},
                "timestamp": "2026-11-21T10:15:30.250+01:00",
                "sentAt": "2026-11-21T09:15:31Z"
            },
            "asynchronous": true
        }),
    );
    assert_snapshot("track_event_request", &actual);
}

#[test]
fn repeated_messages_maps_and_doubles() {
    let actual = transcode(
        Method::POST,
        "/v1/dataPoints",
        json!({"dataPoints": [
            {"name": "api.latency", "type": "DATA_POINT_TYPE_TIMING", "value": 12.5, "unit": "ms", "tags": {"route": "/v1/events", "region": "eu-west-1"}, "timestamp": "2026-11-21T09:00:00Z"},
            {"name": "signups", "type": "DATA_POINT_TYPE_COUNTER", "value": 3}
        ]}),
    );
    assert_snapshot("record_data_points_request", &actual);
}

#[test]
fn nested_and_repeated_query_parameters() {
    let actual = transcode(
        Method::GET,
        "/v1/events?filter.eventTypes=signup&filter.eventTypes=login&filter.user_id=u-7&filter.timeRange.startTime=2026-11-01T00:00:00Z&pageSize=25",
        Json::Null,
    );
    assert_snapshot("list_events_request", &actual);
}

#[test]
fn bad_fields_are_reported_by_name() {
    let unknown = transcode(
        Method::POST,
        "/v1/auth:signUp",
        json!({"emial": "ada@example.com", "password": 12}),
    );
    let query = transcode(Method::GET, "/v1/events?filter.colour=red&pageSize=lots", Json::Null);
    let types = transcode(
        Method::POST,
        "/v1/dataPoints",
        json!({"dataPoints": [{"name": "x", "type": "DATA_POINT_TYPE_BOGUS", "timestamp": "yesterday"}]}),
    );
    assert_snapshot(
        "violations",
        &json!({"unknown_body_fields": unknown, "bad_query": query, "bad_values": types}),
    );
}

#[test]
fn responses_use_the_canonical_json_mapping() {
    // int64 as strings, enums by name, timestamps in UTC with Z, defaults omitted.
    let counts = respond(
        Method::GET,
        "/v1/events:count",
        json!({"totalCount": 9007199254740993u64, "countsByType": [{"eventType": "signup", "count": 7}, {"eventType": "login", "count": 0}]}),
    );
    let user = respond(
        Method::GET,
        "/v1/users/me",
        json!({"user": {"userId": "u-1", "email": "ada@example.com", "role": "ROLE_ADMIN", "signInMethods": ["password"], "createTime": "2026-11-21T10:15:30.250+01:00"}}),
    );
    // The key set is the whole message: a standard JWKS document.
    let jwks = respond(
        Method::GET,
        "/.well-known/jwks.json",
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1", "x": "abc", "use": "sig"}]}),
    );
    assert_snapshot(
        "responses",
        &json!({"count_events": counts, "get_current_user": user, "jwks": jwks}),
    );
}

#[test]
fn errors_carry_decoded_details() {
    let status = metrix_core::error::invalid_argument(vec![
        metrix_core::error::FieldViolation::new("email", "must be an email address such as name@example.com"),
        metrix_core::error::FieldViolation::new("password", "must be at least 12 characters"),
    ]);
    let limited = metrix_core::error::resource_exhausted(
        "too many sign-in attempts, try again later",
        std::time::Duration::from_millis(1500),
    );
    assert_snapshot(
        "errors",
        &json!({"invalid_argument": status_json(&status, &pool()), "resource_exhausted": status_json(&limited, &pool())}),
    );
}

#[test]
fn the_openapi_document_is_stable() {
    let pool = pool();
    let routes = RouteTable::from_pool(&pool, "metrix.").expect("routes");
    assert_snapshot("openapi", &metrix_gateway::openapi::document(&pool, &routes));
}
