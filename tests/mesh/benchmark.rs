//! The benchmark service in the mesh: peer data read from the real metrics
//! service, answers through the gateway over REST and native gRPC, a report
//! downloaded as a file, and slices refreshed when new KPIs arrive.

use metrix_e2e::{Mesh, percentile, published_peer_value, retained};
use metrix_proto::benchmark::v1::benchmark_service_client::BenchmarkServiceClient;
use metrix_proto::benchmark::v1::{RankCompanyRequest, RankingStatus};
use serde_json::{Value as Json, json};

pub(crate) fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().http1_only().build().expect("http client")
}

pub(crate) async fn send(request: reqwest::RequestBuilder) -> (u16, Json) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Json::Null))
}

/// Signs up a founder and returns the access token.
pub(crate) async fn founder(http: &reqwest::Client, gateway: &str, organization: &str) -> String {
    let (status, signed_up) = send(http.post(format!("{gateway}/v1/auth:signUp")).json(&json!({
        "email": format!("{}@example.com", uuid::Uuid::new_v4().simple()),
        "password": "correct horse battery",
        "organizationName": organization
    })))
    .await;
    assert_eq!(status, 200, "{signed_up}");
    signed_up["tokens"]["accessToken"].as_str().expect("token").to_owned()
}

/// Creates a fintech company with ARR in the $1–5M band and an NDR value.
async fn company_with_ndr(http: &reqwest::Client, gateway: &str, token: &str, name: &str, ndr: f64) -> String {
    let (status, created) = send(http.post(format!("{gateway}/v1/companies")).bearer_auth(token).json(
        &json!({"name": name, "sectorId": "fintech", "businessModel": "BUSINESS_MODEL_B2B_SAAS", "countryCode": "DE"}),
    ))
    .await;
    assert_eq!(status, 200, "{created}");
    let company_id = created["company"]["companyId"].as_str().expect("id").to_owned();
    record(http, gateway, token, &company_id, ndr).await;
    company_id
}

async fn record(http: &reqwest::Client, gateway: &str, token: &str, company_id: &str, ndr: f64) {
    let (status, recorded) = send(http.post(format!("{gateway}/v1/kpis")).bearer_auth(token).json(
        &json!({"kpiValues": [
            {"companyId": company_id, "metricId": "arr", "period": "2026-Q2", "value": 2_000_000},
            {"companyId": company_id, "metricId": "ndr", "period": "2026-Q2", "value": ndr}
        ]}),
    ))
    .await;
    assert_eq!(status, 200, "{recorded}");
}

#[tokio::test]
async fn peers_from_metrics_are_benchmarked_ranked_and_reported_through_the_edge() {
    let mesh = Mesh::start().await;
    let http = http();
    let gateway = mesh.gateway_url();
    // Seven peers, each in an organisation of its own, and a founder in
    // another.
    let recorded = [96.0, 101.0, 104.0, 108.0, 111.0, 115.0, 121.0];
    let mut peer_ids = Vec::new();
    let mut peer_tokens = Vec::new();
    for (index, ndr) in recorded.into_iter().enumerate() {
        let peer_token = founder(&http, &gateway, &format!("Peer {index} Ltd")).await;
        peer_ids.push(company_with_ndr(&http, &gateway, &peer_token, &format!("Peer {index}"), ndr).await);
        peer_tokens.push(peer_token);
    }
    let token = founder(&http, &gateway, "Ledgerly").await;
    let company_id = company_with_ndr(&http, &gateway, &token, "Ledgerly", 118.0).await;
    let published = |ids: &[String], values: &[f64]| -> Vec<f64> {
        ids.iter()
            .zip(values)
            .map(|(id, value)| published_peer_value(id, "ndr", *value))
            .collect()
    };

    // REST, as an outsider: eight organisations, so figures but no tails,
    // equal to numpy's on the noise-infused values.
    let outsider = founder(&http, &gateway, "Onlooker").await;
    let mut ids = peer_ids.clone();
    ids.push(company_id.clone());
    let mut values = recorded.to_vec();
    values.push(118.0);
    let expected = retained(&published(&ids, &values));
    let url = format!("{gateway}/v1/benchmarks/ndr?revenueBandId=arr_1m_5m&sectorId=fintech&period=2026-Q2");
    let (status, benchmark) = send(http.get(&url).bearer_auth(&outsider)).await;
    assert_eq!(status, 200, "{benchmark}");
    let statistics = &benchmark["results"][0]["statistics"];
    assert_eq!(statistics["n"], expected.len(), "{statistics}");
    assert_eq!(statistics["suppression"]["status"], "SUPPRESSION_STATUS_TAILS_OMITTED");
    let p50 = statistics["p50"].as_f64().expect("a median");
    assert!(
        (p50 - percentile(&expected, 50.0)).abs() < 1e-9,
        "{p50} vs {expected:?}"
    );
    assert!(statistics.get("p10").is_none(), "{statistics}");
    assert!(
        statistics.get("min").is_none() && statistics.get("max").is_none(),
        "{statistics}"
    );

    // Bad input is a 400 naming the field.
    let (status, refused) = send(
        http.get(format!("{gateway}/v1/benchmarks/ndr?revenueBandId=huge"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["details"][0]["fieldViolations"][0]["field"], "revenueBandId");

    // Native gRPC through the gateway: the founder's company against its
    // seven peers (its own organisation excluded).
    let mut client = BenchmarkServiceClient::connect(gateway.clone())
        .await
        .expect("connects");
    let mut call = tonic::Request::new(RankCompanyRequest {
        company_id: company_id.clone(),
        period: "2026-Q2".into(),
        metric_ids: vec!["ndr".into()],
        ..Default::default()
    });
    call.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("header-safe"));
    let ranking = client.rank_company(call).await.expect("ranked").into_inner();
    let ndr = &ranking.rankings[0];
    assert_eq!(ndr.status, RankingStatus::Ranked as i32);
    let peers = retained(&published(&peer_ids, &recorded));
    assert_eq!(
        ndr.peer_statistics.as_ref().map(|statistics| statistics.n),
        Some(peers.len() as i32)
    );
    // scipy.stats.percentileofscore(peers, 118, kind="weak")
    let weak = 100.0 * peers.iter().filter(|peer| **peer <= 118.0).count() as f64 / peers.len() as f64;
    let rank = ndr.percentile_rank.expect("ranked");
    assert!((rank - weak).abs() < 1e-9, "{rank} vs {weak}");

    // Another organisation's company is refused.
    let (status, _) = send(
        http.get(format!("{gateway}/v1/companies/{}/ranking", peer_ids[0]))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 403);

    // A report, downloaded as an HTML file with its charts.
    let (status, generated) = send(
        http.post(format!("{gateway}/v1/reports"))
            .bearer_auth(&token)
            .json(&json!({"companyId": company_id, "templateId": "retention", "period": "2026-Q2"})),
    )
    .await;
    assert_eq!(status, 200, "{generated}");
    let report_id = generated["report"]["id"].as_str().expect("id").to_owned();
    let download = http
        .get(format!(
            "{gateway}/v1/reports/{report_id}/download?format=REPORT_FORMAT_HTML"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), 200);
    assert_eq!(
        download.headers()["content-type"].to_str().expect("ascii"),
        "text/html; charset=utf-8"
    );
    assert_eq!(
        download.headers()["content-disposition"].to_str().expect("ascii"),
        format!("attachment; filename=\"metrix-report-{report_id}.html\"")
    );
    let html = download.text().await.expect("html");
    assert!(html.starts_with("<!doctype html>") && html.contains("<svg"), "{html}");

    // A new value announced by metrics refreshes the slice.
    record(&http, &gateway, &peer_tokens[0], &peer_ids[0], 125.0).await;
    values[0] = 125.0;
    let expected = retained(&published(&ids, &values));
    let expected_mean = expected.iter().sum::<f64>() / expected.len() as f64;
    let mut mean = f64::NAN;
    for _ in 0..50 {
        let (_, answer) = send(http.get(&url).bearer_auth(&outsider)).await;
        mean = answer["results"][0]["statistics"]["mean"].as_f64().unwrap_or(f64::NAN);
        if (mean - expected_mean).abs() < 1e-9 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        (mean - expected_mean).abs() < 1e-9,
        "the cached slice was refreshed: {mean} vs {expected_mean}"
    );
}
