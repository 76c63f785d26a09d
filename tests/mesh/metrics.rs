//! The metrics service through the edge: a founder's organisation creates a
//! company, an ingestion server records KPIs with an API key over REST, and
//! the values come back over grpc-web and native gRPC.

use metrix_e2e::Mesh;
use metrix_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use metrix_proto::metrics::v1::{ListKpisRequest, ListKpisResponse};
use prost::Message as _;
use serde_json::{Value as Json, json};

fn http() -> reqwest::Client {
    // reqwest's rustls asks for a process-wide provider even for plain http.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().http1_only().build().expect("http client")
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Json) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Json::Null))
}

#[tokio::test]
async fn kpis_recorded_over_rest_with_an_api_key_read_back_over_grpc_web_and_grpc() {
    let mesh = Mesh::start().await;
    let http = http();
    let gateway = mesh.gateway_url();
    let email = format!("founder-{}@example.com", uuid::Uuid::new_v4().simple());
    let (status, signed_up) = send(http.post(format!("{gateway}/v1/auth:signUp")).json(&json!({
        "email": email, "password": "correct horse battery", "organizationName": "Ledgerly"
    })))
    .await;
    assert_eq!(status, 200, "{signed_up}");
    let token = signed_up["tokens"]["accessToken"].as_str().expect("token").to_owned();

    let (status, created) = send(
        http.post(format!("{gateway}/v1/companies"))
            .bearer_auth(&token)
            .json(&json!({"name": "Ledgerly", "sectorId": "fintech", "businessModel": "BUSINESS_MODEL_B2B_SAAS", "countryCode": "DE", "foundingYear": 2021})),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let company_id = created["company"]["companyId"].as_str().expect("id").to_owned();

    let (status, key) = send(
        http.post(format!("{gateway}/v1/api-keys"))
            .bearer_auth(&token)
            .json(&json!({"displayName": "finance sync", "scopes": ["metrics:write"]})),
    )
    .await;
    assert_eq!(status, 200, "{key}");
    let api_key = key["key"].as_str().expect("key").to_owned();

    // A bad batch is refused whole, naming the field.
    let (status, refused) = send(
        http.post(format!("{gateway}/v1/kpis"))
            .header("x-api-key", &api_key)
            .json(&json!({"kpiValues": [
                {"companyId": company_id, "metricId": "arr", "period": "2026-Q1", "value": 2400000},
                {"companyId": company_id, "metricId": "arr", "period": "2026-Q9", "value": 1}
            ]})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["details"][0]["fieldViolations"][0]["field"], "kpiValues[1].period",
        "REST answers name fields as REST clients send them"
    );

    let (status, recorded) = send(
        http.post(format!("{gateway}/v1/kpis"))
            .header("x-api-key", &api_key)
            .json(&json!({"kpiValues": [
                {"companyId": company_id, "metricId": "arr", "period": "2026-Q1", "value": 2400000},
                {"companyId": company_id, "metricId": "ndr", "period": "2026-Q1", "value": 112.5}
            ]})),
    )
    .await;
    assert_eq!(status, 200, "{recorded}");
    assert_eq!(recorded["createdCount"], "2", "int64 as a string");

    let (status, company) = send(
        http.get(format!("{gateway}/v1/companies/{company_id}"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200, "{company}");
    assert_eq!(company["company"]["revenueBandId"], "arr_1m_5m");

    // grpc-web, as a browser dashboard reads them.
    let request = ListKpisRequest {
        company_id: company_id.clone(),
        ..Default::default()
    };
    let body = request.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(&body);
    let response = http
        .post(format!("{gateway}/metrix.metrics.v1.MetricsService/ListKpis"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .bearer_auth(&token)
        .body(frame)
        .send()
        .await
        .expect("grpc-web");
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.expect("body");
    assert_eq!(bytes[0], 0, "a data frame first");
    let length = u32::from_be_bytes(bytes[1..5].try_into().expect("four bytes")) as usize;
    let listed = ListKpisResponse::decode(&bytes[5..5 + length]).expect("a ListKpisResponse");
    assert_eq!(listed.kpi_values.len(), 2);

    // Native gRPC through the gateway's passthrough.
    let mut client = MetricsServiceClient::connect(gateway.clone()).await.expect("connects");
    let mut call = tonic::Request::new(ListKpisRequest {
        company_id,
        metric_ids: vec!["ndr".into()],
        ..Default::default()
    });
    call.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("header-safe"));
    let ndr = client.list_kpis(call).await.expect("native gRPC").into_inner();
    assert_eq!(ndr.kpi_values[0].value, 112.5);
}
